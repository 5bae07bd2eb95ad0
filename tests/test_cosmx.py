import numpy as np
import pandas as pd
import pytest
import tifffile

from conftest import shared_path
from gist.demo import write_cosmx_export
from gist.errors import GistInputError
from gist.io import read_cosmx
from gist.io.cosmx import PAPER_EDGE_MARGIN
from gist.io.samples import split_samples


@pytest.fixture(scope="module")
def export(tmp_path_factory, demo_small):
    return write_cosmx_export(demo_small, tmp_path_factory.mktemp("cosmx"))


def _fovs(root, **kwargs):
    """read_cosmx's FOVs one by one."""
    return split_samples(read_cosmx(root, **kwargs))[0]


def _copy_export(export, tmp_path):
    import shutil

    dst = tmp_path / "export"
    shutil.copytree(export, dst)
    return dst


def test_roundtrip_keeps_counts_positions_labels_and_controls(export, demo_small):
    loaded = _fovs(export, edge_margin=0)
    assert [a.obs["sample"].iloc[0] for a in loaded] == ["Demo_fov001", "Demo_fov002"]
    for original, back in zip(demo_small, loaded):
        assert list(back.var_names) == list(original.var_names)
        assert not back.var_names.str.startswith("NegPrb").any()
        np.testing.assert_array_equal(back.X.toarray(), original.X.toarray())
        np.testing.assert_allclose(back.obsm["spatial"], original.obsm["spatial"], atol=1e-3)
        np.testing.assert_array_equal(back.obs["cell_ID"], original.obs["cell_ID"])
        assert (back.obs["merge_cell_type"].astype(str).to_numpy() == original.obs["cell_type"].astype(str).to_numpy()).all()
        np.testing.assert_array_equal(back.obsm["control_counts"].to_numpy(), original.obsm["control_counts"].to_numpy())
        meta = back.uns["spatial"][back.obs["sample"].iloc[0]]["metadata"]
        assert meta["image_shape"][:2] == [512, 512] and meta["image_path"].endswith("CellComposite_F%03d.jpg" % back.obs["fov"].iloc[0])


def test_paper_edge_filter_and_y_flip(export, demo_small):
    loaded = _fovs(export)
    for original, back in zip(demo_small, loaded):
        xy = original.obsm["spatial"]
        inside = ((xy >= PAPER_EDGE_MARGIN) & (xy <= 512 - PAPER_EDGE_MARGIN)).all(axis=1)
        assert back.n_obs == inside.sum() < original.n_obs
        np.testing.assert_array_equal(back.obs["cell_ID"], original.obs["cell_ID"][inside])
        # obsm['spatial'] row = image height - exported CenterY_local_px
        np.testing.assert_allclose(back.obsm["spatial"][:, 1], 512 - back.obs["CenterY_local_px"], atol=1e-9)
    flipped = _fovs(export, edge_margin=0, flip_y=False)[0]
    np.testing.assert_allclose(flipped.obsm["spatial"][:, 1], 512 - demo_small[0].obsm["spatial"][:, 1], atol=1e-3)


def test_paper_annotation_file_is_joined_and_unlabelled_cells_dropped(export, tmp_path):
    meta = pd.read_csv(next(export.glob("*metadata_file.csv")))
    anno = meta[["fov", "cell_ID", "CenterX_local_px", "CenterY_local_px"]].copy()
    names = np.array(["T CD4 naive", "tumor 5", "macrophage", "mDC", "fibroblast", "Treg"])
    anno["cell_type"] = names[np.arange(len(anno)) % len(names)]
    anno.loc[anno.index % 7 == 0, "cell_type"] = np.nan
    anno["niche"] = "n1"
    path = tmp_path / "matched_annotation_all.csv"
    anno.to_csv(path, index=False)
    loaded = _fovs(export, annotation_file=path, edge_margin=0)
    n_labelled = anno.groupby("fov")["cell_type"].count().to_list()
    assert [a.n_obs for a in loaded] == n_labelled
    both = pd.concat([a.obs for a in loaded])
    expected = {"T CD4 naive": "lymphocyte", "tumor 5": "tumors", "macrophage": "myeloid", "mDC": "myeloid",
                "fibroblast": "fibroblast", "Treg": "lymphocyte"}
    assert (both["cell_type"].astype(str).map(expected) == both["merge_cell_type"].astype(str)).all()
    # the annotation file alone (with coordinates) is enough
    alone = _fovs(export, annotation_file=path, metadata_file=None, edge_margin=0)
    assert [a.n_obs for a in alone] == n_labelled


def test_cell_zero_is_background_and_dropped(export, tmp_path):
    root = _copy_export(export, tmp_path)
    expr_path = next(root.glob("*exprMat_file.csv"))
    expr = pd.read_csv(expr_path)
    background = expr.iloc[[0]].assign(cell_ID=0)
    pd.concat([background, expr]).to_csv(expr_path, index=False)
    assert _fovs(root, edge_margin=0)[0].obs["cell_ID"].min() > 0


def _break(root, kind):
    expr_path = next(root.glob("*exprMat_file.csv"))
    meta_path = next(root.glob("*metadata_file.csv"))
    if kind == "missing_column":
        pd.read_csv(meta_path).drop(columns="CenterX_local_px").to_csv(meta_path, index=False)
        return "CenterX_local_px", meta_path.name
    if kind == "non_numeric":
        expr = pd.read_csv(expr_path)
        expr["KRT19"] = expr["KRT19"].astype(object)
        expr.loc[3, "KRT19"] = "abc"
        expr.to_csv(expr_path, index=False)
        return "'KRT19'.*'abc'", expr_path.name
    if kind == "missing_count":
        expr = pd.read_csv(expr_path)
        expr.loc[3, "KRT8"] = np.nan
        expr.to_csv(expr_path, index=False)
        return "'KRT8' has a missing", expr_path.name
    if kind == "nan_coordinates":
        meta = pd.read_csv(meta_path)
        meta.loc[2, "CenterY_local_px"] = np.nan
        meta.to_csv(meta_path, index=False)
        return "NaN", meta_path.name
    if kind == "duplicate_ids":
        meta = pd.read_csv(meta_path)
        pd.concat([meta, meta.iloc[[5]]]).to_csv(meta_path, index=False)
        return "duplicate cell id", meta_path.name
    if kind == "unreadable_image":
        (root / "CellComposite" / "CellComposite_F001.jpg").write_bytes(b"not a jpeg")
        return "unreadable", "CellComposite_F001.jpg"
    if kind == "missing_image":
        (root / "CellComposite" / "CellComposite_F002.jpg").unlink()
        return "not found", "CellComposite_F002.jpg"
    if kind == "missing_expr":
        expr_path.unlink()
        return "no expression matrix", str(root.name)
    if kind == "empty_file":
        meta_path.write_text("")
        return "empty", meta_path.name
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["missing_column", "non_numeric", "missing_count", "nan_coordinates", "duplicate_ids", "unreadable_image", "missing_image",
     "missing_expr", "empty_file"],
)
def test_bad_input_gives_one_clear_error(export, tmp_path, kind):
    root = _copy_export(export, tmp_path)
    pattern, where = _break(root, kind)
    with pytest.raises(GistInputError) as info:
        read_cosmx(root)
    message = str(info.value)
    assert where in message, message
    assert pd.Series([message]).str.contains(pattern).item(), message
    assert "\n" not in message


def test_unknown_label_column_and_fov_are_named(export):
    with pytest.raises(GistInputError, match="'celltype_x'"):
        read_cosmx(export, cell_type_key="celltype_x")
    with pytest.raises(GistInputError, match=r"fov\(s\) \[9\]"):
        read_cosmx(export, fovs=[9])


# --- real CosMx data ----------------------------------------------------------------------


def test_real_lung12_cells_land_on_their_nuclei():
    root = shared_path("cosmx_lung12_mini")
    loaded = _fovs(root, edge_margin=0)
    assert sum(a.n_obs for a in loaded) == 120 and all(a.n_vars == 960 for a in loaded)
    unflipped = _fovs(root, edge_margin=0, flip_y=False)
    for adata, wrong in zip(loaded, unflipped):
        fov = int(adata.obs["fov"].iloc[0])
        mask = tifffile.imread(root / "CellLabels" / f"CellLabels_F{fov:03d}.tif")
        assert tuple(adata.uns["spatial"][adata.obs["sample"].iloc[0]]["metadata"]["image_shape"][:2]) == mask.shape

        def hit_rate(xy):
            col = np.clip(np.round(xy[:, 0]).astype(int), 0, mask.shape[1] - 1)
            row = np.clip(np.round(xy[:, 1]).astype(int), 0, mask.shape[0] - 1)
            return np.mean(mask[row, col] == adata.obs["cell_ID"].to_numpy())

        assert hit_rate(adata.obsm["spatial"]) >= 0.95
        assert hit_rate(wrong.obsm["spatial"]) < 0.3
        ids = adata.obs["cell_ID"].to_numpy()
        for cid, (x, y) in zip(ids, adata.obsm["spatial"]):
            rows, cols = np.nonzero(mask == cid)
            assert np.hypot(cols.mean() - x, rows.mean() - y) < 1.0


def test_real_lung12_paper_filter_and_silver_labels():
    root = shared_path("cosmx_lung12_mini")
    loaded = _fovs(root, annotation_file=root / "silver_cell_types.csv", cell_type_key="silver_cell_type")
    assert 0 < sum(a.n_obs for a in loaded) < 120
    for adata in loaded:
        h, w = adata.uns["spatial"][adata.obs["sample"].iloc[0]]["metadata"]["image_shape"][:2]
        xy = adata.obsm["spatial"]
        assert (xy >= 60).all() and (xy[:, 0] <= w - 60).all() and (xy[:, 1] <= h - 60).all()
        assert adata.obs["merge_cell_type"].notna().all()


def test_cells_without_metadata_are_dropped_with_a_warning(export, tmp_path):
    root = _copy_export(export, tmp_path)
    meta_path = next(root.glob("*metadata_file.csv"))
    meta = pd.read_csv(meta_path)
    meta.iloc[3:].to_csv(meta_path, index=False)
    with pytest.warns(UserWarning, match="fov 1: 3 cell"):
        first = _fovs(root, edge_margin=0)[0]
    assert not set(meta["cell_ID"].iloc[:3]) & set(first.obs["cell_ID"])
