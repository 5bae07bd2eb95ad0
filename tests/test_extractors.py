"""Foundation-model extractors with random weights saved to a file and loaded back as a user would."""

import re

import pytest
import torch

from gist.errors import GistInputError
from gist.pp.extractors import REGISTRY, create_extractor, embed_patches


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Random weights of each architecture, saved once."""
    folder = tmp_path_factory.mktemp("weights")
    paths, models = {}, {}
    for name in ("uni", "ctranspath", "virchow2"):
        torch.manual_seed(0)
        model = REGISTRY[name].build().eval()
        paths[name] = folder / f"{name}.pth"
        torch.save(model.state_dict(), paths[name])
        models[name] = model if name != "virchow2" else None  # keep memory low
    return paths, models


@pytest.mark.parametrize("name, dim", [("uni", 1024), ("ctranspath", 768), ("virchow2", 2560)])
def test_weights_load_strictly_and_give_the_documented_width(saved, name, dim):
    paths, _ = saved
    extractor = create_extractor(name, paths[name])
    patches = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        out = extractor(patches)
    assert out.shape == (2, dim) and torch.isfinite(out).all()


def test_loaded_model_equals_the_saved_one_and_batching_changes_nothing(saved):
    paths, models = saved
    extractor = create_extractor("uni", paths["uni"])
    patches = torch.rand(3, 3, 224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        direct = models["uni"]((patches - mean) / std)
    batched = embed_patches(extractor, list(patches), batch_size=2, progress=False)
    torch.testing.assert_close(batched, direct, rtol=1e-4, atol=1e-4)


def test_ctranspath_accepts_the_original_transpath_layout(saved, tmp_path):
    paths, models = saved
    state = torch.load(paths["ctranspath"], weights_only=True)
    old = {}
    for key, value in state.items():  # old timm: downsample at the end of the previous stage
        key = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        old[key] = value
    old["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    torch.save({"model": old}, tmp_path / "ctranspath.pth")
    extractor = create_extractor("ctranspath", tmp_path / "ctranspath.pth")
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        expected = create_extractor("ctranspath", paths["ctranspath"])(x)
        torch.testing.assert_close(extractor(x), expected)


def test_clear_errors_for_missing_unreadable_and_mismatched_weights(saved, tmp_path):
    paths, _ = saved
    with pytest.raises(GistInputError, match="needs its weights"):
        create_extractor("uni", None)
    with pytest.raises(GistInputError, match="weights file not found"):
        create_extractor("uni", tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(GistInputError, match="junk.pth is unreadable"):
        create_extractor("uni", tmp_path / "junk.pth")
    with pytest.raises(GistInputError, match=r"do not match the ctranspath architecture: \d+ missing key"):
        create_extractor("ctranspath", paths["uni"])
    with pytest.raises(GistInputError, match="unknown extractor 'resnet'"):
        create_extractor("resnet", paths["uni"])


@pytest.fixture(scope="module")
def small_vit(tmp_path_factory):
    """timm's vit_small_patch16_224 with random weights, saved as a lab's local file would be."""
    import timm

    torch.manual_seed(1)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).eval()
    path = tmp_path_factory.mktemp("timm") / "vit_small.safetensors"
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(path))
    return model, path


def test_any_timm_model_loads_through_weights_and_matches_timm(small_vit, tmp_path):
    import numpy as np

    from gist.pp.patches import PatchDataset

    model, path = small_vit
    extractor = create_extractor("timm:vit_small_patch16_224", path)
    assert extractor.dim == 384 and extractor.input_size == 224
    # its normalisation is timm's pretrained_cfg of that architecture (0.5, not ImageNet's)
    torch.testing.assert_close(extractor.mean.flatten(), torch.tensor([0.5, 0.5, 0.5]))
    image = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    dataset = PatchDataset(image, np.array([[100.0, 120.0], [200.0, 80.0], [150.0, 150.0]]), 64, extractor.input_size)
    ours = embed_patches(extractor, dataset, batch_size=2, progress=False)
    patches = torch.stack([dataset[i] for i in range(len(dataset))])
    with torch.inference_mode():
        direct = model((patches - 0.5) / 0.5)
    torch.testing.assert_close(ours, direct, rtol=1e-4, atol=1e-4)


def test_timm_pooling_and_kwargs(small_vit):
    import timm

    model, path = small_vit
    patches = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        tokens = model.forward_features((patches - 0.5) / 0.5)
        both = create_extractor("timm:vit_small_patch16_224", path, pool="cls+mean")(patches)
        mean = create_extractor("timm:vit_small_patch16_224", path, pool="mean")(patches)
    assert both.shape == (2, 768)
    torch.testing.assert_close(both[:, 384:], tokens[:, 1:].mean(dim=1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(both[:, :384], tokens[:, 0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(mean, tokens[:, 1:].mean(dim=1), rtol=1e-4, atol=1e-4)
    # keyword arguments reach timm: LayerScale adds gamma weights, which these weights lack
    with pytest.raises(GistInputError, match="do not match the timm:vit_small_patch16_224 architecture.*missing"):
        create_extractor("timm:vit_small_patch16_224", path, kwargs={"init_values": 1e-5})
    with pytest.raises(GistInputError, match="timm knows no architecture 'vit_tiny_nonsense'"):
        create_extractor("timm:vit_tiny_nonsense", path)
    with pytest.raises(GistInputError, match="apply to timm:<architecture>"):
        create_extractor("uni", path, pool="mean")
    assert timm.get_pretrained_cfg("vit_small_patch16_224") is not None


def test_extract_cli_takes_a_timm_model(small_vit, tmp_path, demo_small):
    import anndata as ad
    import json

    from gist.cli import extract_main

    _, path = small_vit
    data = tmp_path / "demo.h5ad"
    one = demo_small[0][:40].copy()
    one.uns["spatial"] = {k: v for k, v in one.uns["spatial"].items()}
    ad.AnnData(one.X, obs=one.obs, var=one.var, obsm={"spatial": one.obsm["spatial"]}).write_h5ad(data)
    image = tmp_path / "image.png"
    import cv2

    from gist.io import get_image

    cv2.imwrite(str(image), get_image(demo_small[0])[..., ::-1])
    out = tmp_path / "features"
    code = extract_main(["--data", str(data), "--image", str(image), "--extractor", "timm:vit_small_patch16_224",
                         "--weights", str(path), "--pool", "cls+mean", "--out", str(out), "--no_progress",
                         "--num_workers", "0"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert next(iter(manifest["samples"].values()))["img_dim"] == 768
    assert manifest["config"]["extractor"] == "timm:vit_small_patch16_224" and manifest["config"]["pool"] == "cls+mean"
    with pytest.raises(SystemExit) as exit_info:
        extract_main(["--data", str(data), "--extractor", "resnet", "--out", str(out)])
    assert exit_info.value.code == 2
