import pytest
import torch

from gist.tl.model import TransImg, dims_from_state_dict, gist_loss

G, D, H, Z = 37, 11, 512, 30
PAPER_OPTIONS = {"use_img_loss": False, "fused_img_head": False, "standardize_img": False, "hops": None, "n_pcs": None,
                 "contrast": False, "neighbour_input": None}


def _conv(i, o):
    return {"lin_key.weight": (o, i), "lin_key.bias": (o,), "lin_query.weight": (o, i), "lin_query.bias": (o,),
            "lin_value.weight": (o, i), "lin_value.bias": (o,), "lin_skip.weight": (o, i), "lin_skip.bias": (o,)}


def _expected(use_img_loss):
    """The original TransImg's keys and shapes, written out from its description."""
    layers = {
        "conv1": (G, H), "conv2": (H, Z), "conv3": (Z, H), "conv4": (H, G),
        "imgconv1": (D, H), "imgconv2": (H, Z), "imgconv3": (Z, H), "imgconv4": (H, D if use_img_loss else G),
        "neck": (2 * Z, Z), "neck2": (Z, Z), "c3": (Z, H), "c4": (H, G),
    }
    table = {f"{name}.{k}": v for name, (i, o) in layers.items() for k, v in _conv(i, o).items()}
    table |= {"norm1.weight": (H,), "norm1.bias": (H,), "norm2.weight": (Z,), "norm2.bias": (Z,)}
    return table


def _original_class():
    """The original's ``TransImg.__init__`` as published (PyG ``TransformerConv`` and PyG
    ``LayerNorm``; ``imgconv4`` reconstructs expression), for key and shape parity."""
    from torch_geometric.nn import LayerNorm, TransformerConv

    class OriginalTransImg(torch.nn.Module):
        def __init__(self, hidden_dims):
            super().__init__()
            in_dim, img_dim, num_hidden, out_dim = hidden_dims
            self.conv1 = TransformerConv(in_dim, num_hidden)
            self.conv2 = TransformerConv(num_hidden, out_dim)
            self.conv3 = TransformerConv(out_dim, num_hidden)
            self.conv4 = TransformerConv(num_hidden, in_dim)
            self.imgconv1 = TransformerConv(img_dim, num_hidden)
            self.imgconv2 = TransformerConv(num_hidden, out_dim)
            self.imgconv3 = TransformerConv(out_dim, num_hidden)
            self.imgconv4 = TransformerConv(num_hidden, in_dim)
            self.neck = TransformerConv(out_dim * 2, out_dim)
            self.neck2 = TransformerConv(out_dim, out_dim)
            self.c3 = TransformerConv(out_dim, num_hidden)
            self.c4 = TransformerConv(num_hidden, in_dim)
            self.norm1 = LayerNorm(num_hidden)
            self.norm2 = LayerNorm(out_dim)

    return OriginalTransImg


def test_original_state_dict_loads_strictly_with_equal_shapes():
    original = _original_class()([G, D, H, Z]).state_dict()
    ours = TransImg([G, D, H, Z])
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in original.items()}
    ours.load_state_dict(original, strict=True)
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in original.items())
    assert dims_from_state_dict(original) == ([G, D, H, Z], PAPER_OPTIONS)


@pytest.mark.parametrize("use_img_loss", [False, True])
def test_state_dict_keys_and_shapes_match_the_original(use_img_loss):
    model = TransImg([G, D, H, Z], use_img_loss=use_img_loss)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == _expected(use_img_loss)
    original = {k: torch.randn(s) for k, s in _expected(use_img_loss).items()}
    TransImg([G, D, H, Z], use_img_loss=use_img_loss).load_state_dict(original, strict=True)
    assert dims_from_state_dict(original) == ([G, D, H, Z], PAPER_OPTIONS | {"use_img_loss": use_img_loss})


def test_forward_shapes_and_loss():
    torch.manual_seed(0)
    n = 25
    x, img = torch.rand(n, G), torch.rand(n, D)
    edge_index = torch.randint(0, n, (2, 80))
    model = TransImg([G, D, H, Z])
    out = model(x, img, edge_index)
    assert [tuple(t.shape) for t in out[:6]] == [(n, Z), (n, Z), (n, Z), (n, G), (n, G), (n, G)]
    assert out.fused_img_recon is None
    loss = gist_loss(out, x, img)
    manual = 0.1 * ((out[3] - x) ** 2).mean() + 0.1 * ((out[4] - x) ** 2).mean() + ((out[5] - x) ** 2).mean()
    assert torch.allclose(loss, manual)
    out_img = TransImg([G, D, H, Z], use_img_loss=True)(x, img, edge_index)
    assert tuple(out_img[4].shape) == (n, D)


def test_gene_branch_alone():
    model = TransImg([G, 0, H, Z])
    keys = {k.split(".")[0] for k in model.state_dict()}
    assert keys == {"conv1", "conv2", "conv3", "conv4", "norm1", "norm2"}
    x, edge_index = torch.rand(10, G), torch.randint(0, 10, (2, 30))
    out = model(x, None, edge_index)
    h2, img2, c2, h4, img4, c4, c4_img = out
    assert img2 is None and img4 is None and c4_img is None and c2 is h2 and c4 is h4
    assert torch.allclose(gist_loss(out, x, None), ((h4 - x) ** 2).mean())
    assert dims_from_state_dict(model.state_dict()) == ([G, 0, H, Z], PAPER_OPTIONS)


def test_fused_image_head_and_standardisation():
    """The gist recipe's extensions: c4_img reconstructs the (standardised) image from the fused
    branch, and the image scaling travels in the state dict."""
    torch.manual_seed(0)
    n = 25
    x, img = torch.rand(n, G), 5 + 3 * torch.rand(n, D)
    edge_index = torch.randint(0, n, (2, 80))
    model = TransImg([G, D, H, Z], fused_img_head=True, standardize_img=True)
    model.set_image_scaling(img)
    z = model.standardize(img)
    assert torch.allclose(z.mean(0), torch.zeros(D), atol=1e-5) and torch.allclose(z.std(0, unbiased=False), torch.ones(D), atol=1e-4)
    out = model(x, img, edge_index)
    assert tuple(out.fused_img_recon.shape) == (n, D)
    paper_terms = 0.1 * ((out.gene_recon - x) ** 2).mean() + 0.1 * ((out.img_recon - x) ** 2).mean() + ((out.fused_recon - x) ** 2).mean()
    assert torch.allclose(gist_loss(out, x, z), paper_terms + ((out.fused_img_recon - z) ** 2).mean())
    state = model.state_dict()
    assert {"c4_img.lin_key.weight", "img_center", "img_scale"} <= set(state)
    dims, options = dims_from_state_dict(state)
    assert dims == [G, D, H, Z] and options == PAPER_OPTIONS | {"fused_img_head": True, "standardize_img": True}
    again = TransImg(dims, **options)
    again.load_state_dict(state, strict=True)
    assert torch.allclose(again(x, img, edge_index).fused_z, out.fused_z)
    with pytest.raises(ValueError, match="need image features"):
        TransImg([G, 0, H, Z], fused_img_head=True)


@pytest.mark.parametrize("img_dim", [12, 0])
def test_encode_is_the_fused_latent_of_forward(img_dim):
    torch.manual_seed(0)
    model = TransImg([20, img_dim, 16, 4], fused_img_head=bool(img_dim), standardize_img=bool(img_dim)).eval()
    x, img = torch.rand(30, 20), torch.rand(30, img_dim)
    edges = torch.randint(0, 30, (2, 120))
    with torch.no_grad():
        assert torch.allclose(model.encode(x, img if img_dim else None, edges),
                              model(x, img if img_dim else None, edges).fused_z, atol=1e-6)


def _chain(n: int):
    """A path graph 0 - 1 - ... - n-1 (both directions), as PyG edges."""
    src = torch.arange(n - 1)
    return torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])


@pytest.mark.parametrize("img_dim", [0, D])
@pytest.mark.parametrize("hops", [0, 1, 2])
def test_hops_bound_what_a_cells_latent_sees(img_dim, hops):
    torch.manual_seed(0)
    model = TransImg([G, img_dim, 32, 8], hops=hops).eval()
    n = 9
    x, img, edges = torch.rand(n, G), torch.rand(n, img_dim) if img_dim else None, _chain(n)
    base = model.encode(x, img, edges)
    for far in range(n):
        moved = x.clone()
        moved[far] += 1.0
        changed = not torch.allclose(model.encode(moved, img, edges)[4], base[4], atol=1e-6)
        assert changed == (abs(far - 4) <= hops), (far, hops)
    assert model.depth == hops
    # the setting travels with the checkpoint
    dims, options = dims_from_state_dict(model.state_dict())
    assert options["hops"] == hops and TransImg(dims, **options).load_state_dict(model.state_dict(), strict=True)


def test_all_hops_is_the_original_four_rings():
    torch.manual_seed(0)
    model = TransImg([G, 0, 32, 8]).eval()
    x, edges = torch.rand(12, G), _chain(12)
    base = model.encode(x, None, edges)[6]
    moved = x.clone()
    moved[4] += 1.0  # two rings away: seen by the original's 2-layer encoder
    assert not torch.allclose(model.encode(moved, None, edges)[6], base)
    assert model.depth == 4 and "message_hops" not in model.state_dict()


def test_principal_component_input_maps_back_to_genes():
    torch.manual_seed(0)
    basis = torch.randn(5, G)
    x = torch.randn(200, 5) @ basis + torch.rand(G)  # expression of rank 5 around a mean
    model = TransImg([G, D, 32, 8], n_pcs=5)
    model.set_pca(x)
    pcs = model.project(x)
    assert pcs.shape == (200, 5)
    torch.testing.assert_close(model.to_genes(pcs), x, rtol=1e-4, atol=1e-4)  # the span holds all of x
    torch.testing.assert_close(pcs.mean(0), torch.zeros(5), rtol=0, atol=1e-4)
    out = model(x, torch.rand(200, D), _chain(200))
    assert out.fused_recon.shape == (200, 5) and model.conv1.in_channels == 5
    assert model.to_genes(out.fused_recon).shape == (200, G)
    dims, options = dims_from_state_dict(model.state_dict())
    assert dims == [G, D, 32, 8] and options["n_pcs"] == 5
    again = TransImg(dims, **options)
    again.load_state_dict(model.state_dict(), strict=True)
    torch.testing.assert_close(again.project(x), pcs)
