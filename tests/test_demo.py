"""The demo dataset carries both signals: measured with simple classifiers (5-fold CV)."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gist.io.celltypes import PAPER_CLASSES
from gist.demo import make_demo, write_cosmx_export
from gist.pp.graph import Cal_Spatial_Net, edge_index
from gist.io import get_image


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_fovs=4, seed=0)


@pytest.fixture(scope="module")
def features(demo):
    labels = np.concatenate([a.obs["cell_type"].astype(str).to_numpy() for a in demo])
    expression = np.concatenate([_expression(a) for a in demo])
    image = np.concatenate([_image_stats(a) for a in demo])
    return labels, expression, image


def _expression(adata):
    x = adata.X.toarray()
    return np.log1p(x / np.clip(x.sum(1, keepdims=True), 1, None) * 1e4)


def _image_stats(adata, r_in=6, r_out=14):
    """Per-channel mean and sd in a disk at the cell centre and in a ring around it."""
    image = get_image(adata).astype(np.float32) / 255
    padded = np.pad(image, ((r_out, r_out), (r_out, r_out), (0, 0)), mode="reflect")
    col, row = np.round(adata.obsm["spatial"]).astype(int).T
    dy, dx = np.mgrid[-r_out : r_out + 1, -r_out : r_out + 1]
    patches = padded[row[:, None, None] + r_out + dy, col[:, None, None] + r_out + dx]
    dist = np.hypot(dy, dx)
    out = []
    for mask in (dist <= r_in, (dist > r_in) & (dist <= r_out)):
        values = patches[:, mask]
        out += [values.mean(1), values.std(1)]
    return np.concatenate(out, axis=1)


def _accuracy(x, y):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_score(model, x, y, cv=5).mean()


def test_layout_counts_and_sparsity(demo):
    assert len(demo) == 4
    for adata in demo:
        sample = adata.obs["sample"].iloc[0]
        assert adata.n_vars == 300 and 300 < adata.n_obs < 600
        assert set(adata.obs["cell_type"].unique()) == set(PAPER_CLASSES)
        zeros = 1 - adata.X.nnz / np.prod(adata.shape)
        assert 0.7 < zeros < 0.95
        assert np.allclose(adata.X.data, np.round(adata.X.data))
        image = get_image(adata)
        assert image.dtype == np.uint8 and image.shape == (1024, 1024, 3)
        assert (adata.obsm["spatial"] >= 0).all() and (adata.obsm["spatial"] < 1024).all()
        assert adata.uns["spatial"][sample]["metadata"]["image_shape"] == [1024, 1024, 3]


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = make_demo(n_fovs=1, seed=5, image_size=400), make_demo(n_fovs=1, seed=5, image_size=400), make_demo(n_fovs=1, seed=6, image_size=400)
    assert (a[0].X != b[0].X).nnz == 0 and np.array_equal(get_image(a[0]), get_image(b[0]))
    assert a[0].n_obs != c[0].n_obs or (a[0].X != c[0].X).nnz > 0


def test_cell_types_form_spatial_niches(demo):
    observed, expected = [], []
    for adata in demo:
        Cal_Spatial_Net(adata, rad_cutoff=80, verbose=False)
        src, dst = edge_index(adata)
        types = adata.obs["cell_type"].to_numpy()
        observed.append(np.mean(types[src] == types[dst]))
        freq = adata.obs["cell_type"].value_counts(normalize=True).to_numpy()
        expected.append(np.sum(freq**2))  # same-type rate if types were mixed uniformly
    assert np.mean(observed) > 1.5 * np.mean(expected)


def test_expression_separates_types_except_the_image_only_pair(features):
    labels, expression, _ = features
    profiles = np.where(labels == "tumors", "epithelial", labels)
    assert _accuracy(expression, profiles) > 0.85
    pair = np.isin(labels, ["tumors", "epithelial"])
    assert _accuracy(expression[pair], labels[pair]) < 0.65  # chance is 0.5


def test_image_separates_the_pair_that_expression_cannot(features):
    labels, _, image = features
    pair = np.isin(labels, ["tumors", "epithelial"])
    assert _accuracy(image[pair], labels[pair]) > 0.9
    look_alike = np.isin(labels, ["fibroblast", "endothelial"])
    assert _accuracy(image[look_alike], labels[look_alike]) < 0.8


def test_image_plus_expression_beats_either_alone(features):
    labels, expression, image = features
    both = _accuracy(np.hstack([expression, image]), labels)
    assert both > _accuracy(expression, labels) + 0.1
    assert both > _accuracy(image, labels) + 0.03


def test_export_is_atomic(tmp_path, monkeypatch, demo_small):
    import pandas as pd

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        write_cosmx_export(demo_small, tmp_path)
    assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.rglob(".*tmp*"))


def test_paper_marker_genes_are_markers_of_their_class(demo):
    """The 16 genes of the paper's figures are in the demo and highest in the class they mark."""
    from gist.pl import PAPER_MARKERS

    adata = demo[0]
    missing = [g for g in PAPER_MARKERS if g not in adata.var_names]
    assert not missing, f"demo lacks the paper's marker genes {missing}"
    x = np.asarray(adata.X.todense() if hasattr(adata.X, "todense") else adata.X, dtype=float)
    profile_of = {"tumors": "epithelial"}
    labels = np.array([profile_of.get(t, t) for t in adata.obs["cell_type"].astype(str)])
    for gene in PAPER_MARKERS:
        col = x[:, adata.var_names.get_loc(gene)]
        means = {p: col[labels == p].mean() for p in np.unique(labels)}
        assert max(means, key=means.get) == adata.var.loc[gene, "marker_of"], (gene, means)
