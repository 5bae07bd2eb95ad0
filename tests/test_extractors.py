"""Foundation-model extractors with random weights saved to a file and loaded back as a user would."""

import re

import pytest
import torch

from gist.errors import GistInputError
from gist.extractors import REGISTRY, create_extractor, embed_patches


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
