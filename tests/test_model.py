import pytest
import torch

from gist.model import TransImg, dims_from_state_dict, gist_loss

G, D, H, Z = 37, 11, 512, 30


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
    table |= {"norm1.weight": (H,), "norm1.bias": (H,), "norm2.weight": (H,), "norm2.bias": (H,)}
    return table


@pytest.mark.parametrize("use_img_loss", [False, True])
def test_state_dict_keys_and_shapes_match_the_original(use_img_loss):
    model = TransImg([G, D, H, Z], use_img_loss=use_img_loss)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == _expected(use_img_loss)
    original = {k: torch.randn(s) for k, s in _expected(use_img_loss).items()}
    TransImg([G, D, H, Z], use_img_loss=use_img_loss).load_state_dict(original, strict=True)
    assert dims_from_state_dict(original) == ([G, D, H, Z], use_img_loss)


def test_forward_shapes_and_loss():
    torch.manual_seed(0)
    n = 25
    x, img = torch.rand(n, G), torch.rand(n, D)
    edge_index = torch.randint(0, n, (2, 80))
    model = TransImg([G, D, H, Z])
    out = model(x, img, edge_index)
    assert [tuple(t.shape) for t in out] == [(n, Z), (n, Z), (n, Z), (n, G), (n, G), (n, G)]
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
    h2, img2, c2, h4, img4, c4 = model(x, None, edge_index)
    assert img2 is None and img4 is None and c2 is h2 and c4 is h4
    assert torch.allclose(gist_loss((h2, img2, c2, h4, img4, c4), x, None), ((h4 - x) ** 2).mean())
    assert dims_from_state_dict(model.state_dict()) == ([G, 0, H, Z], False)
