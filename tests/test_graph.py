import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from gist.errors import GistInputError
from gist.pp.graph import Cal_Spatial_Net, Stats_Spatial_Net, edge_index


def _random_adata(n=400, n_samples=3, seed=0, side=500.0):
    rng = np.random.default_rng(seed)
    a = ad.AnnData(X=np.zeros((n, 2), np.float32))
    a.obs_names = [f"cell{i}" for i in range(n)]
    a.obs["sample"] = pd.Categorical(rng.integers(0, n_samples, n).astype(str))
    a.obsm["spatial"] = rng.uniform(0, side, size=(n, 2))  # samples overlap in space on purpose
    return a


def _edge_set(a):
    src, dst = edge_index(a)
    return set(zip(src.tolist(), dst.tolist()))


def _brute_radius(a, r, library_key="sample"):
    xy = a.obsm["spatial"]
    d = cdist(xy, xy)
    same = np.ones_like(d, bool) if library_key is None else (
        a.obs[library_key].to_numpy()[:, None] == a.obs[library_key].to_numpy()[None, :]
    )
    ok = (d <= r) & same & ~np.eye(len(xy), dtype=bool)
    return set(zip(*map(lambda v: v.tolist(), np.nonzero(ok))))


def _brute_knn(a, k):
    xy = a.obsm["spatial"]
    labels = a.obs["sample"].to_numpy()
    edges = set()
    for i in range(len(xy)):
        members = np.flatnonzero((labels == labels[i]) & (np.arange(len(xy)) != i))
        d = np.linalg.norm(xy[members] - xy[i], axis=1)
        edges |= {(i, int(j)) for j in members[np.argsort(d)[:k]]}
    return edges


@pytest.mark.parametrize("radius", [10.0, 40.0, 90.0])
def test_radius_matches_brute_force(radius):
    a = _random_adata()
    Cal_Spatial_Net(a, rad_cutoff=radius, verbose=False)
    assert _edge_set(a) == _brute_radius(a, radius)


@pytest.mark.parametrize("k", [1, 6, 15])
def test_knn_matches_brute_force(k):
    a = _random_adata(seed=1)
    Cal_Spatial_Net(a, k_cutoff=k, model="KNN", verbose=False)
    assert _edge_set(a) == _brute_knn(a, k)
    assert (np.diff(a.obsp["spatial_connectivities"].indptr) == k).all()


def test_edges_never_cross_samples_unless_asked():
    a = _random_adata(n=300)
    Cal_Spatial_Net(a, rad_cutoff=60, verbose=False)
    src, dst = edge_index(a)
    samples = a.obs["sample"].to_numpy()
    assert len(src) > 0 and (samples[src] == samples[dst]).all()
    Cal_Spatial_Net(a, rad_cutoff=60, library_key=None, verbose=False)
    src, dst = edge_index(a)
    assert (samples[src] != samples[dst]).any()
    assert _edge_set(a) == _brute_radius(a, 60, library_key=None)


def test_spatial_net_table_matches_obsp_and_distances():
    a = _random_adata(n=200)
    Cal_Spatial_Net(a, rad_cutoff=50, verbose=False)
    net = a.uns["Spatial_Net"]
    assert list(net.columns) == ["Cell1", "Cell2", "Distance"]
    assert (net["Cell1"] != net["Cell2"]).all()
    pos = {name: i for i, name in enumerate(a.obs_names)}
    i = net["Cell1"].map(pos).to_numpy(int)
    j = net["Cell2"].map(pos).to_numpy(int)
    expected = np.linalg.norm(a.obsm["spatial"][i] - a.obsm["spatial"][j], axis=1)
    np.testing.assert_allclose(net["Distance"].to_numpy(), expected)
    np.testing.assert_allclose(np.asarray(a.obsp["spatial_distances"][i, j]).ravel(), expected)
    assert set(zip(i.tolist(), j.tolist())) == _edge_set(a)


def test_coincident_cells_are_neighbours_without_self_loops():
    a = ad.AnnData(X=np.zeros((4, 1), np.float32))
    a.obsm["spatial"] = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0], [100.0, 100.0]])
    Cal_Spatial_Net(a, rad_cutoff=6, verbose=False)
    assert _edge_set(a) == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)}
    Cal_Spatial_Net(a, k_cutoff=1, model="KNN", verbose=False)
    edges = _edge_set(a)
    assert all(i != j for i, j in edges) and len(edges) == 4
    assert {(0, 1), (1, 0)} <= edges


def test_knn_in_sample_smaller_than_k():
    a = ad.AnnData(X=np.zeros((3, 1), np.float32))
    a.obsm["spatial"] = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    Cal_Spatial_Net(a, k_cutoff=5, model="KNN", verbose=False)
    assert len(_edge_set(a)) == 6


def test_stats_counts_every_cell_including_isolated():
    a = ad.AnnData(X=np.zeros((4, 1), np.float32))
    a.obsm["spatial"] = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [50.0, 50.0]])
    Cal_Spatial_Net(a, rad_cutoff=1.5, verbose=False)
    stats = Stats_Spatial_Net(a, verbose=False)
    assert stats.set_index("n_neighbors")["n_cells"].to_dict() == {0: 1, 1: 2, 2: 1}
    assert stats["fraction"].sum() == pytest.approx(1.0)


def test_graph_survives_h5ad_roundtrip(tmp_path):
    a = _random_adata(n=100)
    Cal_Spatial_Net(a, rad_cutoff=80, verbose=False)
    a.write_h5ad(tmp_path / "g.h5ad")
    b = ad.read_h5ad(tmp_path / "g.h5ad")
    assert (b.obsp["spatial_connectivities"] != a.obsp["spatial_connectivities"]).nnz == 0
    pd.testing.assert_frame_equal(
        b.uns["Spatial_Net"].astype({"Cell1": str, "Cell2": str}),
        a.uns["Spatial_Net"].astype({"Cell1": str, "Cell2": str}),
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rad_cutoff": None}, "rad_cutoff"),
        ({"rad_cutoff": -1}, "rad_cutoff"),
        ({"k_cutoff": 0, "model": "KNN"}, "k_cutoff"),
        ({"rad_cutoff": 5, "model": "radius"}, "'Radius' or 'KNN'"),
        ({"rad_cutoff": 5, "library_key": "batch"}, "library_key 'batch'"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    a = _random_adata(n=20)
    with pytest.raises(GistInputError, match=message):
        Cal_Spatial_Net(a, verbose=False, **kwargs)


def test_nan_coordinates_are_named():
    a = _random_adata(n=20)
    a.obsm["spatial"][7, 1] = np.nan
    with pytest.raises(GistInputError, match="cell7"):
        Cal_Spatial_Net(a, rad_cutoff=10, verbose=False)


def _lattice_adata(kind: str, pitch: float = 137.0, n: int = 12, jitter: float = 0.0) -> ad.AnnData:
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:n, 0:n]
    if kind == "hex":  # Visium: rows offset by half a pitch, row spacing pitch * sqrt(3) / 2
        xy = np.column_stack([(cols + 0.5 * (rows % 2)).ravel() * pitch, rows.ravel() * pitch * np.sqrt(3) / 2])
    else:
        xy = np.column_stack([cols.ravel() * pitch, rows.ravel() * pitch])
    xy = xy + rng.normal(0, jitter * pitch, xy.shape)
    return ad.AnnData(X=np.ones((len(xy), 3), np.float32), obsm={"spatial": xy})


@pytest.mark.parametrize("kind,ring", [("hex", 6), ("square", 8)])
def test_radius_rule_gives_the_first_ring_of_a_lattice(kind, ring):
    from gist.pp.graph import auto_radius, spatial_graph

    adata = _lattice_adata(kind)
    sixth = 137.0 if kind == "hex" else 137.0 * np.sqrt(2)  # the 6th neighbour: ring 1, or a diagonal
    assert auto_radius(adata) == pytest.approx(1.1 * sixth)
    spatial_graph(adata, verbose=False)
    degree = np.diff(adata.obsp["spatial_connectivities"].indptr).reshape(12, 12)
    assert (degree[2:-2, 2:-2] == ring).all()  # every interior spot: exactly its first ring
    assert adata.uns["spatial_neighbors"]["params"]["rule"].startswith("1.1 x median distance to the 6th")


def test_spatial_graph_follows_squidpy_keys_and_leaves_the_edge_table_to_the_original_api():
    from gist.pp.graph import Cal_Spatial_Net, spatial_graph

    adata = _lattice_adata("hex")
    copied = spatial_graph(adata, key_added="ring", verbose=False, copy=True)
    assert not adata.obsp and "ring_neighbors" not in adata.uns  # copy=True: the input is untouched
    assert set(copied.obsp) == {"ring_connectivities", "ring_distances"} and "Spatial_Net" not in copied.uns
    assert copied.uns["ring_neighbors"]["connectivities_key"] == "ring_connectivities"
    assert spatial_graph(adata, verbose=False) is None and "Spatial_Net" not in adata.uns
    original = Cal_Spatial_Net(adata.copy(), rad_cutoff=151.0, verbose=False)
    assert len(original.uns["Spatial_Net"]) == original.obsp["spatial_connectivities"].nnz
    assert (original.obsp["spatial_connectivities"] != adata.obsp["spatial_connectivities"]).nnz == 0


def test_radius_rule_on_irregular_cells_gives_about_six_neighbours():
    from gist.pp.graph import spatial_graph

    rng = np.random.default_rng(1)
    adata = ad.AnnData(X=np.ones((2000, 2), np.float32), obsm={"spatial": rng.uniform(0, 2000, (2000, 2))})
    spatial_graph(adata, verbose=False)
    assert 5 <= adata.obsp["spatial_connectivities"].nnz / adata.n_obs <= 8


def test_a_graph_without_neighbours_is_an_error():
    from gist.pp.graph import build_graphs
    from gist.pp.graph import spatial_graph

    adata = _lattice_adata("hex")
    with pytest.raises(GistInputError, match="neighbours per cell on average"):
        spatial_graph(adata, radius=80.0, verbose=False)  # the CosMx radius on Visium pixels: no neighbour
    with pytest.raises(GistInputError, match="--rad_cutoff"):
        build_graphs([adata.copy()], rad_cutoff=80.0, verbose=False)


def test_build_graphs_uses_one_radius_for_all_samples(capsys):
    from gist.pp.graph import build_graphs

    small, large = _lattice_adata("hex", pitch=100.0), _lattice_adata("hex", pitch=100.0, n=20)
    summary = build_graphs([small, large])
    assert "radius 110 = 1.1 x median distance to the 6th nearest cell" in summary
    assert "neighbours per cell" in capsys.readouterr().out
    radii = [a.uns["spatial_neighbors"]["params"]["rad_cutoff"] for a in (small, large)]
    assert radii[0] == radii[1] == pytest.approx(110.0)
    kept = build_graphs([small], k_cutoff=3)  # graphs already there are kept unless rebuilt
    assert kept.startswith("spatial graph: the prepared graphs")
    assert "3 nearest" in build_graphs([small], k_cutoff=3, rebuild=True)
