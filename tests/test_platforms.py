"""Xenium, Visium HD, MERSCOPE and SpatialData input (gist.io.read_xenium / read_visium_hd /
read_merscope / read_spatialdata): folders written in their documented layouts, cells on their own
pixels, clear errors, then extraction and a short training run on each. The real exports are read in
tests/test_real_exports.py."""

import json

import numpy as np
import pandas as pd
import pytest

from layouts import disks, scattered_positions, write_merscope, write_visium_hd, write_xenium
from gist.errors import GistInputError
from gist.io import get_image, read_merscope, read_spatialdata, read_visium_hd, read_xenium
from gist.io.platforms import platform_of
from gist.pp.patches import crop_patch

pytest.importorskip("spatialdata_io", reason="spatialdata-io (requirements.txt) is not installed")


def centre_values(image: np.ndarray, coords: np.ndarray, window: int = 9) -> np.ndarray:
    """The red value at the centre of each cell's patch."""
    return np.array([crop_patch(image, x, y, window, "constant")[window // 2, window // 2, 0] for x, y in coords])


@pytest.fixture
def xenium(tmp_path):
    root = tmp_path / "xenium_run"
    return root, write_xenium(root)


def test_xenium_cells_land_on_their_pixels(xenium):
    root, truth = xenium
    adata = read_xenium(root)
    assert platform_of(root) == "xenium"
    assert adata.n_obs == 200 and list(adata.var_names) == truth["genes"]  # control probes left out
    np.testing.assert_array_equal(adata.X.toarray(), truth["counts"])
    np.testing.assert_allclose(adata.obsm["spatial"], truth["pixels"], atol=1e-6)
    assert (adata.obs["sample"] == "xenium_run").all()
    image = get_image(adata)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert centre_values(image, adata.obsm["spatial"]).min() > 200  # each patch is centred on its cell's disk
    assert np.median(image[..., 0]) < 20
    # channel choice: the boundary stain alone (noise) is no brighter at the cells than elsewhere
    boundary = get_image(adata, channels=[1])
    assert abs(centre_values(boundary, adata.obsm["spatial"]).mean() - boundary[..., 0].mean()) < 30
    assert (boundary[..., 0] == boundary[..., 2]).all()  # one channel: grayscale


def test_xenium_wrong_pixel_size_and_missing_file_are_named(xenium):
    root, _ = xenium
    specs = json.loads((root / "experiment.xenium").read_text())
    (root / "experiment.xenium").write_text(json.dumps(specs | {"pixel_size": 0.1}))
    with pytest.raises(GistInputError, match="outside the 256 x 256 px image.*pixel_size 0.1"):
        read_xenium(root)
    (root / "experiment.xenium").write_text(json.dumps(specs | {"pixel_size": "n/a"}))
    with pytest.raises(GistInputError, match="no numeric 'pixel_size'"):
        read_xenium(root)
    (root / "experiment.xenium").write_text(json.dumps(specs))
    (root / "cells.parquet").unlink()
    with pytest.raises(GistInputError, match="Xenium cells.parquet not found"):
        read_xenium(root)


def test_xenium_without_zarr_is_read_directly_with_the_same_cells(xenium):
    root, truth = xenium
    full = read_xenium(root)
    (root / "cells.zarr.zip").unlink()
    direct = read_xenium(root)
    assert list(direct.obs_names) == list(full.obs_names) and list(direct.var_names) == truth["genes"]
    np.testing.assert_array_equal(direct.X.toarray(), full.X.toarray())
    np.testing.assert_allclose(direct.obsm["spatial"], truth["pixels"], atol=1e-6)
    meta = direct.uns["spatial"]["xenium_run"]["metadata"]
    assert meta["image_path"].endswith("morphology_focus.ome.tif") and meta["image_shape"] == [256, 256]
    assert centre_values(get_image(direct), direct.obsm["spatial"]).min() > 200  # the DAPI disks, from the file
    (root / "morphology_focus.ome.tif").unlink()
    bare = read_xenium(root)
    np.testing.assert_allclose(bare.obsm["spatial"], truth["pixels"], atol=1e-6)
    assert "image_path" not in bare.uns["spatial"]["xenium_run"]["metadata"]
    with pytest.raises(GistInputError, match="cells.zarr.zip.*he_image"):
        read_xenium(root, image_key="he_image")


def test_visium_hd_without_feature_slice_matches_spatialdata_io(tmp_path):
    root = tmp_path / "outs"
    write_visium_hd(root)
    full = read_visium_hd(root, bin_size=8)
    (root / "sectionHD_feature_slice.h5").unlink()
    direct = read_visium_hd(root, bin_size=8, dataset_id="sectionHD")
    order = direct.obs_names.get_indexer(full.obs_names)
    np.testing.assert_array_equal(direct.X.toarray()[order], full.X.toarray())
    np.testing.assert_allclose(direct.obsm["spatial"][order], full.obsm["spatial"], atol=1e-9)
    np.testing.assert_allclose(direct.obsm["spatial_sectionHD"][order], full.obsm["spatial_sectionHD"], atol=1e-9)
    for key in ("image_path", "image_shape"):
        assert direct.uns["spatial"]["sectionHD"]["metadata"][key] == full.uns["spatial"]["sectionHD"]["metadata"][key]
    assert direct.uns["spatial"]["sectionHD"]["scalefactors"]["spot_diameter_fullres"] == pytest.approx(16 * 0.2)
    bins = read_visium_hd(root / "binned_outputs" / "square_008um")  # the bin folder alone: sample from outs/
    assert bins.obs["sample"].iloc[0] == "outs"
    np.testing.assert_allclose(bins.obsm["spatial"], direct.obsm["spatial"])


def test_merscope_cells_land_on_the_mosaic(tmp_path):
    root = tmp_path / "region_0"
    truth = write_merscope(root)
    assert platform_of(root) == "merscope"
    adata = read_merscope(root)
    assert list(adata.obs_names) == truth["ids"] and list(adata.var_names) == truth["genes"]  # blanks left out
    np.testing.assert_array_equal(adata.X.toarray(), truth["counts"])
    assert list(adata.obsm["blank_counts"].columns) == ["Blank-0", "Blank-1"]
    np.testing.assert_allclose(adata.obsm["spatial"], truth["pixels"], atol=1e-6)
    np.testing.assert_allclose(adata.obsm["spatial_um"], truth["microns"], atol=1e-9)
    image = get_image(adata)
    assert image.shape == (256, 256, 3) and centre_values(image, adata.obsm["spatial"]).min() > 200
    assert np.median(image[..., 0]) < 20
    with pytest.raises(GistInputError, match="outside the 256 x 256 px image.*micron_to_mosaic_pixel_transform"):
        np.savetxt(root / "images" / "micron_to_mosaic_pixel_transform.csv", np.diag([100.0, 100.0, 1.0]))
        read_merscope(root)


def test_visium_hd_bins_land_on_the_hires_image(tmp_path):
    root = tmp_path / "outs"
    truth = write_visium_hd(root)
    assert platform_of(root) == "visium_hd"
    adata = read_visium_hd(root, bin_size=8)
    order = pd.Index(truth["barcodes"]).get_indexer(adata.obs_names)
    np.testing.assert_array_equal(adata.X.toarray(), truth["counts"][order])
    np.testing.assert_allclose(adata.obsm["spatial"], truth["hires"][order], atol=1e-6)
    np.testing.assert_allclose(adata.obsm["spatial_sectionHD"], truth["fullres"][order], atol=1e-6)
    entry = adata.uns["spatial"]["sectionHD"]
    assert entry["scalefactors"]["spot_diameter_fullres"] == pytest.approx(16 * 0.2)  # one bin, in hires pixels
    assert centre_values(get_image(adata), adata.obsm["spatial"], 3).min() == 255
    with pytest.raises(GistInputError, match=r"bin size 16 um not found.*square_008um"):
        read_visium_hd(root, bin_size=16)


def _blob_store(tmp_path, scale: float):
    """A SpatialData store: an image at 1/scale of the global frame, circles and a table of counts."""
    import spatialdata as sd
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Scale

    pixels = scattered_positions(60, 128, 6, 8.0, seed=2)
    image = np.stack([disks((128, 128), pixels, 2.5, 250.0)] * 3).astype(np.uint8)
    element = Image2DModel.parse(image, dims=("c", "y", "x"), transformations={"global": Scale([scale, scale], axes=("x", "y"))})
    circles = ShapesModel.parse(pixels * scale, geometry=0, radius=np.full(60, 2.0), index=np.arange(60))
    rng = np.random.default_rng(0)
    import anndata as ad

    counts = rng.poisson(3.0, size=(60, 12)).astype(np.float32)
    table = ad.AnnData(counts, obs=pd.DataFrame({"region": pd.Categorical(["cells"] * 60), "cell": np.arange(60)},
                                               index=[f"c{i}" for i in range(60)]))
    table = TableModel.parse(table, region="cells", region_key="region", instance_key="cell")
    store = tmp_path / "blobs.zarr"
    sd.SpatialData(images={"he": element}, shapes={"cells": circles}, tables={"table": table}).write(store)
    return store, pixels, counts


def test_spatialdata_store_honours_the_image_scale(tmp_path):
    store, pixels, counts = _blob_store(tmp_path, scale=2.0)
    assert platform_of(store) == "spatialdata"
    adata = read_spatialdata(store)
    np.testing.assert_allclose(adata.obsm["spatial"], pixels, atol=1e-6)  # global / 2 = the image's pixels
    np.testing.assert_allclose(adata.obsm["spatial_global"], pixels * 2.0, atol=1e-6)
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    meta = adata.uns["spatial"]["blobs"]["metadata"]
    assert meta["image_element"] == "he" and not adata.uns["spatial"]["blobs"]["images"]  # read again from the store
    assert centre_values(get_image(adata), adata.obsm["spatial"], 3).min() > 200
    with pytest.raises(GistInputError, match="no table 'counts'"):
        read_spatialdata(store, table_key="counts")


def test_each_platform_extracts_and_trains(tmp_path):
    from gist.cli import extract_main, train_main

    xen = tmp_path / "xen"
    write_xenium(xen, n_cells=120)
    hd = tmp_path / "hd"
    write_visium_hd(hd, side=11)
    store, _, _ = _blob_store(tmp_path, scale=0.5)
    mer = tmp_path / "mer"
    write_merscope(mer)
    for name, path in (("xenium", xen), ("visium_hd", hd), ("spatialdata", store), ("merscope", mer)):
        out = tmp_path / f"features_{name}"
        assert extract_main(["--data", str(path), "--extractor", "stats", "--out", str(out), "--no_progress"]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        (sample, record), = manifest["samples"].items()
        assert record["img_dim"] > 0 and record["edges"] > 0, name
        ckpt = tmp_path / f"ckpt_{name}"
        assert train_main(["--data", str(out), "--save_path", str(ckpt), "--epochs", "3", "--ensemble", "1",
                           "--hidden", "16", "4", "--no_progress"]) == 0
        assert (ckpt / "final_0.pth").is_file(), name
