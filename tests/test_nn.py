"""gist.tl.nn.TransformerConv computes what PyG's TransformerConv computes, faster."""

import pytest
import torch

from gist.tl.nn import Graph, TransformerConv, edge_softmax


def _pyg(fan_in, fan_out):
    from torch_geometric.nn import TransformerConv as PygConv

    return PygConv(fan_in, fan_out)


@pytest.mark.parametrize("fan_in,fan_out", [(37, 512), (512, 37), (30, 30), (64, 128), (128, 64)])
def test_outputs_and_gradients_equal_pyg(fan_in, fan_out):
    n = 60
    gen = torch.Generator().manual_seed(3)
    # repeated edges, self loops and 5 cells without incoming edges, as PyG allows
    edge_index = torch.randint(0, n - 5, (2, 400), generator=gen)
    edge_index = torch.cat([edge_index, edge_index[:, :20], torch.arange(10).repeat(2, 1)], dim=1)
    torch.manual_seed(1)
    pyg = _pyg(fan_in, fan_out)
    torch.manual_seed(1)
    ours = TransformerConv(fan_in, fan_out)
    assert pyg.state_dict().keys() == ours.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(pyg.state_dict().values(), ours.state_dict().values()))
    x = torch.randn(n, fan_in, requires_grad=True)
    want, got = pyg(x, edge_index), ours(x, Graph(edge_index, n))
    assert torch.allclose(want, got, atol=1e-5, rtol=1e-4)
    assert torch.allclose(want[-5:], pyg.lin_skip(x[-5:]), atol=1e-6)  # no incoming edge: the skip alone
    weights = torch.randn(n, fan_out)
    grads_want = torch.autograd.grad((want * weights).sum(), [x, *pyg.parameters()])
    grads_got = torch.autograd.grad((got * weights).sum(), [x, *ours.parameters()])
    names = ["x"] + [name for name, _ in pyg.named_parameters()]
    for name, a, b in zip(names, grads_want, grads_got):
        if name == "lin_key.bias":  # its true gradient is 0 (it cancels in the softmax): both are rounding noise
            assert a.abs().max() < 1e-4 and b.abs().max() < 1e-4
        else:
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-3), name


def test_graph_layout_and_transpose():
    edge_index = torch.tensor([[1, 2, 0, 3, 1], [0, 0, 1, 2, 0]])  # (source, target), edge 1->0 twice
    g = Graph(edge_index, 4)
    assert g.num_edges == 5
    assert g.crow.tolist() == [0, 3, 4, 5, 5]
    values = torch.arange(1.0, 6.0)
    dense = g.matrix(values).to_dense()
    expected = torch.zeros(4, 4)
    for (s, t), v in zip(zip(g.src.tolist(), g.dst.tolist()), values):
        expected[t, s] += v
    assert torch.equal(dense, expected)
    assert torch.equal(g.matrix_t(values).to_dense(), expected.t())
    scores = torch.randn(5)
    alpha = edge_softmax(scores, g)
    sums = torch.zeros(4).index_add(0, g.dst, alpha)
    assert torch.allclose(sums[:3], torch.ones(3)) and sums[3] == 0


def test_bad_edge_index_is_refused():
    with pytest.raises(ValueError, match="outside"):
        Graph(torch.tensor([[0, 5], [1, 0]]), 3)
    with pytest.raises(ValueError, match="shape"):
        Graph(torch.tensor([0, 1, 2]), 3)
