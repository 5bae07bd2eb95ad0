"""The readers on real exports (../shared/data/platforms, see its SOURCES.md): each reader's cells
land where the source's own coordinate columns say, its counts are the source matrix's, and each
file a reader needs gives one clear error naming it when it is missing. Every test skips with a
reason when the data are absent."""

import gzip
import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io

from conftest import shared_path
from gist.errors import GistInputError
from gist.io import image_coordinates, read_cosmx, read_merscope, read_visium, read_visium_hd, read_xenium
from gist.io.image import image_shape
from gist.io.platforms import platform_of


def _copy(name: str, tmp_path):
    """A writable copy of a platform folder."""
    dst = tmp_path / name.replace("/", "_")
    shutil.copytree(shared_path("platforms", name), dst)
    return dst


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)


def _one_line_error(call, *needles: str) -> str:
    with pytest.raises(GistInputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


# ---------------------------------------------------------------- Xenium (no cells.zarr.zip, no image)


def _xenium_h5_counts(path) -> tuple[list[str], list[str], np.ndarray]:
    """Barcodes, gene names and the cells x genes counts of a 10x HDF5, read from its arrays."""
    with h5py.File(path) as f:
        g = f["matrix"]
        n_genes, n_cells = (int(v) for v in g["shape"][()])
        dense = np.zeros((n_cells, n_genes))
        indptr, indices, data = g["indptr"][()].astype(int), g["indices"][()].astype(int), g["data"][()]
        for cell in range(n_cells):
            span = slice(indptr[cell], indptr[cell + 1])
            dense[cell, indices[span]] = data[span]
        return [b.decode() for b in g["barcodes"][()]], [b.decode() for b in g["features/name"][()]], dense


def test_xenium_without_zarr_places_cells_at_cells_parquet_centroids():
    root = shared_path("platforms", "xenium")
    assert not (root / "cells.zarr.zip").exists() and platform_of(root) == "xenium"
    adata = read_xenium(root)
    pixel_size = json.loads((root / "experiment.xenium").read_text())["pixel_size"]
    cells = pd.read_parquet(root / "cells.parquet").set_index("cell_id")
    ids = adata.obs_names.astype(int)
    np.testing.assert_allclose(adata.obsm["spatial"] * pixel_size, cells.loc[ids, ["x_centroid", "y_centroid"]],
                               rtol=1e-9)
    barcodes, genes, counts = _xenium_h5_counts(root / "cell_feature_matrix.h5")
    assert list(adata.obs_names) == barcodes and list(adata.var_names) == genes
    np.testing.assert_array_equal(_dense(adata.X), counts)
    assert counts.sum() > 0
    entry = adata.uns["spatial"]["xenium"]["metadata"]
    assert "image_path" not in entry and entry["pixel_size_um"] == pixel_size


def test_xenium_falls_back_to_cells_csv_gz_and_the_mtx_folder(tmp_path):
    root = _copy("xenium", tmp_path)
    barcodes, genes, counts = _xenium_h5_counts(root / "cell_feature_matrix.h5")
    folder = root / "cell_feature_matrix"
    folder.mkdir()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as f:
        scipy.io.mmwrite(f, scipy.sparse.coo_matrix(counts.T.astype(int)))
    pd.DataFrame({0: [f"id{i}" for i in range(len(genes))], 1: genes, 2: "Gene Expression"}).to_csv(
        folder / "features.tsv.gz", sep="\t", header=False, index=False)
    pd.Series(barcodes).to_csv(folder / "barcodes.tsv.gz", header=False, index=False)
    (root / "cell_feature_matrix.h5").unlink()
    (root / "cells.parquet").unlink()
    adata = read_xenium(root)
    np.testing.assert_array_equal(_dense(adata.X), counts)
    # cells.csv.gz holds other cells than cells.parquet (SOURCES.md): these are its centroids
    csv = pd.read_csv(root / "cells.csv.gz").set_index("cell_id")
    expected = csv.loc[adata.obs_names.astype(int), ["x_centroid", "y_centroid"]].to_numpy()
    np.testing.assert_allclose(adata.obsm["spatial"] * 0.2125, expected, rtol=1e-9)
    assert expected[:, 0].min() > 1800  # not the parquet's cells near x = 840 um
    assert "Unnamed: 0" not in adata.obs


@pytest.mark.parametrize("remove, needles", [
    (("cell_feature_matrix.h5",), ("Xenium cell-feature matrix not found", "cell_feature_matrix.h5")),
    (("cells.parquet", "cells.csv.gz"), ("Xenium cells.parquet not found", "cells.csv.gz")),
    (("experiment.xenium",), ("Xenium specification not found", "experiment.xenium")),
])
def test_xenium_missing_files_are_named(tmp_path, remove, needles):
    root = _copy("xenium", tmp_path)
    for name in remove:
        (root / name).unlink()
    _one_line_error(lambda: read_xenium(root), *needles)


# ---------------------------------------------------------------- Visium outs/ with only the mtx folder


def _visium_source(outs):
    positions = pd.read_csv(outs / "spatial" / "tissue_positions_list.csv", header=None, index_col=0)
    folder = outs / "raw_feature_bc_matrix"
    counts = scipy.io.mmread(folder / "matrix.mtx").toarray().T  # barcodes x genes
    barcodes = pd.read_csv(folder / "barcodes.tsv", header=None)[0].tolist()
    genes = pd.read_csv(folder / "features.tsv", sep="\t", header=None)[1].tolist()
    return positions, pd.DataFrame(counts, index=barcodes, columns=genes)


def test_visium_raw_mtx_folder_keeps_the_spots_in_tissue_at_their_pixels():
    outs = shared_path("platforms", "visium_outs_mtx", "section1", "outs")
    assert platform_of(outs) == "visium"
    adata = read_visium(outs)
    positions, counts = _visium_source(outs)
    in_tissue = positions.index[positions[1] == 1]
    assert adata.n_obs == len(in_tissue) == 22 and set(adata.obs_names) == set(in_tissue)
    # columns 5 and 4 of the headerless v1 file: pxl_col_in_fullres, pxl_row_in_fullres
    np.testing.assert_array_equal(adata.obsm["spatial"], positions.loc[adata.obs_names, [5, 4]].to_numpy(float))
    np.testing.assert_array_equal(_dense(adata.X), counts.loc[adata.obs_names, list(adata.var_names)].to_numpy())
    assert adata.X.sum() > 0 and adata.obs["sample"].iloc[0] == "section1"
    meta = adata.uns["spatial"]["section1"]["metadata"]
    assert meta["image_path"].endswith("tissue_lowres_image.png")
    factors = json.loads((outs / "spatial" / "scalefactors_json.json").read_text())
    assert meta["image_scalef"] == factors["tissue_lowres_scalef"]
    height, width = image_shape(meta["image_path"])
    xy = image_coordinates(adata)
    assert (xy >= 0).all() and (xy[:, 0] < width).all() and (xy[:, 1] < height).all()


def test_visium_gzipped_filtered_mtx_folder_is_read_whole(tmp_path):
    outs = _copy("visium_outs_mtx/section1/outs", tmp_path)
    raw, filtered = outs / "raw_feature_bc_matrix", outs / "filtered_feature_bc_matrix"
    filtered.mkdir()
    for path in raw.iterdir():
        with open(path, "rb") as src, gzip.open(filtered / f"{path.name}.gz", "wb") as dst:
            dst.write(src.read())
    shutil.rmtree(raw)
    adata = read_visium(outs)
    positions, _ = _visium_source(shared_path("platforms", "visium_outs_mtx", "section1", "outs"))
    assert adata.n_obs == 50  # a filtered matrix is taken as it is
    np.testing.assert_array_equal(adata.obsm["spatial"], positions.loc[adata.obs_names, [5, 4]].to_numpy(float))


@pytest.mark.parametrize("remove, needles", [
    ("raw_feature_bc_matrix", ("Visium count matrix not found", "filtered_feature_bc_matrix.h5",
                               "raw_feature_bc_matrix/")),
    ("raw_feature_bc_matrix/barcodes.tsv", ("barcodes.tsv.gz not found", "raw_feature_bc_matrix")),
    ("raw_feature_bc_matrix/matrix.mtx", ("matrix.mtx.gz not found",)),
    ("spatial/tissue_positions_list.csv", ("tissue_positions.csv or tissue_positions_list.csv",)),
    ("spatial/scalefactors_json.json", ("Visium scale factors not found", "scalefactors_json.json")),
])
def test_visium_missing_files_are_named(tmp_path, remove, needles):
    outs = _copy("visium_outs_mtx/section1/outs", tmp_path)
    target = outs / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    _one_line_error(lambda: read_visium(outs), *needles)


# ---------------------------------------------------------------- Visium HD bin folder, no feature_slice.h5


def test_visium_hd_bin_folder_without_feature_slice():
    folder = shared_path("platforms", "visium_hd", "binned_outputs", "square_002um")
    assert platform_of(folder) == "visium_hd" and not list(folder.parents[1].glob("*feature_slice.h5"))
    adata = read_visium_hd(folder)
    positions = pd.read_parquet(folder / "spatial" / "tissue_positions.parquet").set_index("barcode")
    fullres = positions.loc[adata.obs_names, ["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy()
    factors = json.loads((folder / "spatial" / "scalefactors_json.json").read_text())
    assert adata.obs["sample"].iloc[0] == "visium_hd"  # the outs/ folder's name
    np.testing.assert_allclose(adata.obsm["spatial_visium_hd"], fullres, rtol=1e-12)
    np.testing.assert_allclose(adata.obsm["spatial"], fullres * factors["tissue_lowres_scalef"], rtol=1e-12)
    meta = adata.uns["spatial"]["visium_hd"]
    assert meta["metadata"]["image_path"].endswith("square_002um/spatial/tissue_lowres_image.png")
    height, width = image_shape(meta["metadata"]["image_path"])
    assert (adata.obsm["spatial"] >= 0).all() and (adata.obsm["spatial"][:, 0] < width).all() \
        and (adata.obsm["spatial"][:, 1] < height).all()
    assert meta["scalefactors"]["spot_diameter_fullres"] == pytest.approx(
        factors["spot_diameter_fullres"] * factors["tissue_lowres_scalef"])
    # the source's counts are all zero (SOURCES.md); its barcodes and genes are these, in this order
    with h5py.File(folder / "filtered_feature_bc_matrix.h5") as f:
        assert list(adata.obs_names) == [b.decode() for b in f["matrix/barcodes"][()]]
        assert list(adata.var_names) == [b.decode() for b in f["matrix/features/name"][()]]
        assert adata.X.nnz == f["matrix/data"].shape[0] == 0


def test_visium_hd_dataset_id_and_mtx_folder(tmp_path):
    outs = _copy("visium_hd", tmp_path)
    folder = outs / "binned_outputs" / "square_002um"
    (folder / "filtered_feature_bc_matrix.h5").unlink()  # the (plain-text, ".gz"-named) mtx folder is left
    adata = read_visium_hd(outs, bin_size=2, dataset_id="mouse_brain")
    assert adata.obs["sample"].iloc[0] == "mouse_brain" and "spatial_mouse_brain" in adata.obsm
    positions = pd.read_parquet(folder / "spatial" / "tissue_positions.parquet").set_index("barcode")
    np.testing.assert_allclose(adata.obsm["spatial_mouse_brain"],
                               positions.loc[adata.obs_names, ["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy())
    assert adata.shape == (10, 10) and list(adata.var_names[:2]) == ["Xkr4", "Rp1"]
    _one_line_error(lambda: read_visium_hd(folder, bin_size=8), "holds 2 um bins")
    _one_line_error(lambda: read_visium_hd(outs), "square_008um", "have ['square_002um']")


@pytest.mark.parametrize("remove, needles", [
    ("spatial/tissue_positions.parquet", ("tissue_positions.parquet not found",)),
    ("spatial/scalefactors_json.json", ("scalefactors_json.json not found",)),
    (("filtered_feature_bc_matrix.h5", "filtered_feature_bc_matrix"),
     ("Visium HD square_002um count matrix not found", "filtered_feature_bc_matrix.h5")),
])
def test_visium_hd_missing_files_are_named(tmp_path, remove, needles):
    folder = _copy("visium_hd", tmp_path) / "binned_outputs" / "square_002um"
    for name in (remove,) if isinstance(remove, str) else remove:
        target = folder / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    _one_line_error(lambda: read_visium_hd(folder), *needles)


# ---------------------------------------------------------------- CosMx flat files without images


def test_cosmx_without_images_uses_the_global_positions():
    root = shared_path("platforms", "cosmx")
    assert platform_of(root) == "cosmx" and not (root / "CellComposite").exists()
    adata = read_cosmx(root, image_dir=None)
    meta = pd.read_csv(root / "DBKero_metadata_file.csv").set_index(["fov", "cell_ID"])
    keys = list(zip(adata.obs["fov"], adata.obs["cell_ID"]))
    assert adata.n_obs == len(meta) == 905  # no edge filter without an image
    np.testing.assert_array_equal(adata.obsm["spatial"], meta.loc[keys, ["CenterX_global_px", "CenterY_global_px"]])
    expr = pd.read_csv(root / "DBKero_exprMat_file.csv").set_index(["fov", "cell_ID"])
    for gene in ("RAMP2", "CD83", adata.var_names[-1]):
        np.testing.assert_array_equal(_dense(adata[:, gene].X).ravel(), expr.loc[keys, gene].to_numpy())
    assert adata.X.sum() == expr.loc[keys, list(adata.var_names)].to_numpy().sum() > 0


def test_cosmx_without_images_through_the_cli(tmp_path):
    import anndata as ad

    from gist.cli import extract_main

    root = shared_path("platforms", "cosmx")
    out = tmp_path / "features"
    assert extract_main(["--data", str(root), "--extractor", "none", "--out", str(out), "--no_progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (sample, record), = manifest["samples"].items()
    assert sample == "DBKero_fov016" and record["cells"] > 800 and record["edges"] > 0
    written = ad.read_h5ad(next(out.glob("*.h5ad")))
    meta = pd.read_csv(root / "DBKero_metadata_file.csv").set_index(["fov", "cell_ID"])
    keys = list(zip(written.obs["fov"], written.obs["cell_ID"]))
    np.testing.assert_array_equal(written.obsm["spatial"], meta.loc[keys, ["CenterX_global_px", "CenterY_global_px"]])
    with pytest.raises(SystemExit) as info:  # the default extractor needs an image: one clear exit 2
        extract_main(["--data", str(root), "--out", str(tmp_path / "f2"), "--no_progress"])
    assert info.value.code == 2


@pytest.mark.parametrize("remove, needles", [
    ("DBKero_metadata_file.csv", ("no metadata file", "*metadata_file.csv")),
    ("DBKero_exprMat_file.csv", ("no expression matrix", "*exprMat_file.csv")),
])
def test_cosmx_missing_files_are_named(tmp_path, remove, needles):
    root = _copy("cosmx", tmp_path)
    (root / remove).unlink()
    _one_line_error(lambda: read_cosmx(root, image_dir=None), *needles)
    _one_line_error(lambda: read_cosmx(root), *needles)


def test_cosmx_missing_images_are_named(tmp_path):
    root = _copy("cosmx", tmp_path)
    _one_line_error(lambda: read_cosmx(root), "CellComposite_F016.jpg", "image_dir=None")


# ---------------------------------------------------------------- MERSCOPE


def _merscope_source(root):
    counts = pd.read_csv(next(root.glob("*cell_by_gene.csv")), index_col=0, dtype={"cell": str})
    meta = pd.read_csv(next(root.glob("*cell_metadata.csv")), index_col=0, dtype={"EntityID": str})
    return counts, meta


def test_merscope_cells_at_their_metadata_centres():
    root = shared_path("platforms", "merscope")
    assert platform_of(root) == "merscope"
    adata = read_merscope(root)
    counts, meta = _merscope_source(root)
    assert adata.n_obs == 50 and list(adata.obs_names) == list(counts.index)
    np.testing.assert_array_equal(adata.obsm["spatial"], meta.loc[adata.obs_names, ["center_x", "center_y"]])
    np.testing.assert_array_equal(adata.obsm["spatial_um"], adata.obsm["spatial"])  # no transform: microns
    assert list(adata.var_names) == list(counts.columns)
    np.testing.assert_array_equal(_dense(adata.X), counts.to_numpy())
    assert adata.X.sum() > 0 and (adata.obs["fov"] == meta["fov"]).all()
    assert "image_path" not in adata.uns["spatial"]["merscope"]["metadata"]


def test_merscope_transform_takes_microns_to_mosaic_pixels(tmp_path):
    import tifffile

    root = _copy("merscope", tmp_path)
    _, meta = _merscope_source(root)
    microns = meta[["center_x", "center_y"]].to_numpy()
    scale = 9.259259
    shift = -scale * microns.min(axis=0) + 30
    transform = np.array([[scale, 0, shift[0]], [0, scale, shift[1]], [0, 0, 1]])
    (root / "images").mkdir()
    np.savetxt(root / "images" / "micron_to_mosaic_pixel_transform.csv", transform, delimiter=" ")
    extent = np.ceil(scale * np.ptp(microns, axis=0) + 60).astype(int)
    tifffile.imwrite(root / "images" / "mosaic_DAPI_z3.tif", np.zeros((extent[1], extent[0]), np.uint16))
    adata = read_merscope(root)
    np.testing.assert_allclose(adata.obsm["spatial"], microns * scale + shift, rtol=1e-9)
    np.testing.assert_array_equal(adata.obsm["spatial_um"], microns)
    meta_entry = adata.uns["spatial"]["merscope"]["metadata"]
    assert meta_entry["image_path"].endswith("mosaic_DAPI_z3.tif") and meta_entry["image_shape"] == [extent[1], extent[0]]
    (root / "images" / "micron_to_mosaic_pixel_transform.csv").unlink()
    _one_line_error(lambda: read_merscope(root), "MERSCOPE transform not found", "micron_to_mosaic_pixel_transform.csv")


@pytest.mark.parametrize("remove, needles", [
    ("HumanUterineCancerPatient2_cell_by_gene.csv", ("no MERSCOPE cell_by_gene.csv", "*cell_by_gene.csv")),
    ("HumanUterineCancerPatient2_cell_metadata.csv", ("no MERSCOPE cell_metadata.csv", "*cell_metadata.csv")),
])
def test_merscope_missing_files_are_named(tmp_path, remove, needles):
    root = _copy("merscope", tmp_path)
    (root / remove).unlink()
    assert platform_of(root) == "merscope"
    _one_line_error(lambda: read_merscope(root), *needles)


# ---------------------------------------------------------------- extract_features.py on each folder


def test_visium_mtx_folder_through_the_cli(tmp_path):
    import anndata as ad

    from gist.cli import extract_main

    outs = shared_path("platforms", "visium_outs_mtx", "section1", "outs")
    out = tmp_path / "features"
    assert extract_main(["--data", str(outs), "--out", str(out), "--no_progress"]) == 0  # stats on the lowres image
    (record,) = json.loads((out / "manifest.json").read_text())["samples"].values()
    assert record["cells"] == 22 and record["img_dim"] > 0
    written = ad.read_h5ad(next(out.glob("*.h5ad")))
    positions, _ = _visium_source(outs)
    np.testing.assert_array_equal(written.obsm["spatial"], positions.loc[written.obs_names, [5, 4]].to_numpy(float))


@pytest.mark.parametrize("folder, platform, message", [
    ("xenium", "xenium", "sample 'xenium': 6 cell(s) with counts; at least 10"),
    ("visium_hd/binned_outputs/square_002um", "visium_hd", "sample 'visium_hd': every cell has zero counts"),
    ("merscope", "merscope", "sample 'merscope': 9 cell(s) with counts; at least 10"),
])
def test_too_small_exports_reach_the_sample_checks_through_the_cli(tmp_path, capsys, folder, platform, message):
    """The CLI reads these folders with their reader; what stops them is the data (SOURCES.md), named."""
    from gist.cli import extract_main

    root = shared_path("platforms", *folder.split("/"))
    out = tmp_path / "f"
    with pytest.raises(SystemExit) as info:
        extract_main(["--data", str(root), "--platform", platform, "--extractor", "none", "--out", str(out),
                      "--no_progress"])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
