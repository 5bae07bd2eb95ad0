import numpy as np
import pytest
import torch

from gist.errors import GistInputError
from gist.io.image import check_inside
from gist.pp.patches import DevicePatches, PatchDataset, crop_patch


def _image(h=50, w=60):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_interior_patch_is_the_plain_crop():
    image = _image()
    np.testing.assert_array_equal(crop_patch(image, 30, 25, 10), image[20:30, 25:35])


@pytest.mark.parametrize("col, row", [(0, 0), (59, 49), (2, 40), (57, 3)])
def test_edge_patches_are_centred_and_full_size(col, row):
    image = _image()
    patch = crop_patch(image, col, row, 20, pad="reflect")
    assert patch.shape == (20, 20, 3)
    # the image pixel at the cell centre sits at the patch centre, whatever the edge
    np.testing.assert_array_equal(patch[10, 10], image[row, col])
    constant = crop_patch(image, col, row, 20, pad="constant")
    np.testing.assert_array_equal(constant[10, 10], image[row, col])
    assert (constant == 0).all(axis=2).any()  # the outside is zero


def test_reflect_mirrors_the_border():
    image = _image()
    patch = crop_patch(image, 0, 25, 10, pad="reflect")  # 5 columns left of the image
    np.testing.assert_array_equal(patch[:, 4], image[20:30, 1])  # numpy 'reflect' skips the edge pixel
    np.testing.assert_array_equal(patch[:, 5], image[20:30, 0])


def test_cell_outside_the_image_is_refused_with_the_count_and_size():
    image = _image()
    assert (crop_patch(image, -100, -100, 16) == 0).all()  # the crop itself never fails
    check_inside(np.array([[5.0, 5.0], [0.0, 0.0]]), image.shape, "s1")
    with pytest.raises(GistInputError, match=r"1 of 2 cell\(s\) lie outside the 60 x 50 px image"):
        check_inside(np.array([[5.0, 5.0], [-100.0, 10.0]]), image.shape, "s1")


def test_dataset_items_are_resized_unit_range_tensors():
    image = _image(300, 300)
    ds = PatchDataset(image, np.array([[0.0, 0.0], [150.0, 150.0], [299.0, 10.0]]), patch_size=240, out_size=224)
    items = [ds[i] for i in range(len(ds))]
    assert all(t.shape == (3, 224, 224) and t.dtype == torch.float32 for t in items)
    assert all(0.0 <= float(t.min()) and float(t.max()) <= 1.0 for t in items)


@pytest.mark.parametrize("pad", ["reflect", "constant"])
@pytest.mark.parametrize("out_size", [224, 60])
def test_device_patches_match_the_loader_patches(pad, out_size):
    """Patches cut and resized on the device (GPU path) equal the CPU loader's, edges included."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(500, 600, 3), dtype=np.uint8)
    coords = np.column_stack([rng.uniform(0, 600, 40), rng.uniform(0, 500, 40)])
    coords[:3] = [[598.6, 499.2], [3.6, 250.0], [300.0, 1.0]]  # windows that leave the image
    size = 240 if out_size == 224 else 60
    loader = torch.stack([PatchDataset(image, coords, size, out_size, pad)[i] for i in range(len(coords))])
    device = torch.cat(list(DevicePatches(image, coords, size, out_size, pad, "cpu").batches(16)))
    assert device.shape == loader.shape == (40, 3, out_size, out_size)
    tolerance = 0.0 if size == out_size else 0.01  # bilinear: cv2 and torch round differently
    assert (device - loader).abs().max() <= tolerance + 1e-6
    assert (device - loader).abs().mean() < 2e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_patches_on_cuda_equal_the_cpu_ones():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    coords = rng.uniform(0, 300, size=(20, 2))
    cpu = torch.cat(list(DevicePatches(image, coords, 240, 224, "reflect", "cpu").batches(8)))
    gpu = torch.cat(list(DevicePatches(image, coords, 240, 224, "reflect", "cuda").batches(8))).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-5)
