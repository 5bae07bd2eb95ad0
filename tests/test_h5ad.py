import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import shared_path
from gist.io.celltypes import PAPER_CLASSES
from gist.errors import GistInputError
from gist.io import get_image, image_coordinates, read_h5ad
from gist.io.samples import split_samples


def _write(tmp_path, n=30, **changes):
    rng = np.random.default_rng(0)
    a = ad.AnnData(X=sp.csr_matrix(rng.poisson(1.0, size=(n, 5)).astype(np.float32)))
    a.obs_names = [f"s{i}" for i in range(n)]
    a.obs["section"] = np.where(np.arange(n) < n // 2, "A", "B")
    a.obs["label"] = "x"
    a.obsm["spatial"] = rng.uniform(0, 100, size=(n, 2))
    for key, value in changes.items():
        value(a)
    path = tmp_path / "spots.h5ad"
    a.write_h5ad(path)
    return path


def test_split_by_library_key_and_image(tmp_path):
    import cv2

    image = np.zeros((50, 60, 3), np.uint8)
    image[10, 20] = (255, 0, 0)
    cv2.imwrite(str(tmp_path / "he.png"), image[..., ::-1])
    parts, _ = split_samples(read_h5ad(_write(tmp_path), library_key="section", image_path=tmp_path / "he.png",
                                       image_scalef=0.5))
    assert [p.obs["sample"].iloc[0] for p in parts] == ["A", "B"] and [p.n_obs for p in parts] == [15, 15]
    meta = parts[0].uns["spatial"]["A"]["metadata"]
    assert meta["image_shape"] == [50, 60] and meta["image_scalef"] == 0.5
    np.testing.assert_array_equal(get_image(parts[0])[10, 20], (255, 0, 0))
    np.testing.assert_allclose(image_coordinates(parts[0]), parts[0].obsm["spatial"] * 0.5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.obsm.pop("spatial"), "obsm has no 'spatial'"),
        (lambda a: a.obsm["spatial"].__setitem__((4, 0), np.nan), "'s4'"),
        (lambda a: a.X.data.__setitem__(0, -1.0), "negative"),
    ],
)
def test_bad_h5ad_is_named(tmp_path, change, message):
    path = _write(tmp_path, bad=change)
    with pytest.raises(GistInputError, match=message) as info:
        read_h5ad(path)
    assert str(path) in str(info.value)


def test_missing_label_and_unreadable_file(tmp_path):
    with pytest.raises(GistInputError, match="'cell_type'"):
        read_h5ad(_write(tmp_path), label_key="cell_type")
    broken = tmp_path / "broken.h5ad"
    broken.write_text("no hdf5 here")
    with pytest.raises(GistInputError, match="not a readable .h5ad"):
        read_h5ad(broken)


def test_real_lung5_merges_to_the_paper_classes():
    path = shared_path("cosmx_lung5_subset", "CosMx_subset.h5ad")
    adata = read_h5ad(path, label_key="cell_type", merge=True)
    assert adata.n_obs == 2814 and adata.obs["cell_type"].nunique() == 20
    merged = adata.obs["merge_cell_type"]
    assert merged.notna().all()
    assert set(merged.unique()) == set(PAPER_CLASSES)
    expected = {"lymphocyte": 922, "myeloid": 435, "tumors": 177, "endothelial": 587, "epithelial": 226,
                "fibroblast": 224, "neutrophil": 146, "mast": 97}
    assert merged.value_counts().to_dict() == expected


@pytest.mark.parametrize("section, n_spots", [("B1", 295), ("G2", 467), ("H1", 613)])
def test_real_her2st_sections(section, n_spots):
    path = shared_path("her2st_spots", f"her2st_{section}.h5ad")
    adata = read_h5ad(path, label_key="label")
    assert adata.n_obs == n_spots and adata.n_vars > 10_000
    assert adata.obs["sample"].iloc[0] == f"her2st_{section}"
    assert adata.obs["label"].nunique() >= 4
    np.testing.assert_allclose(adata.obsm["spatial"], adata.obs[["pixel_x", "pixel_y"]].to_numpy(), atol=1e-3)


def test_public_readers_return_one_anndata_with_the_sample_column(tmp_path):
    """gist.io.read_* give one AnnData (scverse style): obs['sample'] tells the samples apart and
    each sample keeps its uns['spatial'] entry."""
    import cv2

    from gist.demo import make_demo, write_cosmx_export
    from gist.io import read_cosmx

    cv2.imwrite(str(tmp_path / "he.png"), np.zeros((50, 60, 3), np.uint8))
    joined = read_h5ad(_write(tmp_path), library_key="section", image_path=tmp_path / "he.png", image_scalef=0.5)
    parts, order = split_samples(joined)
    assert joined.n_obs == sum(p.n_obs for p in parts) and [p.n_obs for p in parts] == [15, 15]
    np.testing.assert_array_equal(order, np.arange(joined.n_obs))  # the samples one after the other
    assert list(joined.obs["sample"].cat.categories) == sorted(p.obs["sample"].iloc[0] for p in parts)
    assert set(joined.uns["spatial"]) == {p.obs["sample"].iloc[0] for p in parts}
    assert all(set(p.uns["spatial"]) == {p.obs["sample"].iloc[0]} for p in parts)
    root = write_cosmx_export(make_demo(n_fovs=2, seed=1, image_size=448), tmp_path / "export")
    cosmx = read_cosmx(root, edge_margin=0)
    assert cosmx.obs["sample"].nunique() == 2 and list(cosmx.obs["sample"].cat.categories) == ["Demo_fov001", "Demo_fov002"]
    assert len(cosmx.uns["spatial"]) == 2 and cosmx.obs_names.is_unique
