"""The Potts-prior mixture (gist.tl.hmrf) and its clusterer entry (gist.tl.clustering.cluster_rep(..., 'hmrf'))."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from gist.tl.clustering import cluster_rep, mclust
from gist.tl.hmrf import potts_mixture, pseudo_likelihood_beta


def lattice(side: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Coordinates of a side x side grid and its 4-neighbour adjacency."""
    idx = np.arange(side * side).reshape(side, side)
    pairs = np.vstack([np.c_[idx[:, :-1].ravel(), idx[:, 1:].ravel()], np.c_[idx[:-1].ravel(), idx[1:].ravel()]])
    n = side * side
    adj = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    xy = np.c_[np.repeat(np.arange(side), side), np.tile(np.arange(side), side)].astype(float)
    return xy, (adj + adj.T).tocsr()


def two_domains(side=24, noise=1.4, seed=0):
    xy, adj = lattice(side)
    truth = (xy[:, 1] >= side / 2).astype(int)
    rng = np.random.default_rng(seed)
    x = np.c_[truth.astype(float), np.zeros(len(truth))] + rng.normal(scale=noise, size=(len(truth), 2))
    return x, adj, truth, xy


def test_beta_is_zero_for_a_random_field_and_large_for_a_smooth_one():
    _, adj = lattice(20)
    rng = np.random.default_rng(1)
    random_q = np.eye(3)[rng.integers(0, 3, size=400)]
    assert pseudo_likelihood_beta(random_q, adj @ random_q) < 0.3
    halves = np.eye(2)[(np.arange(400) % 20 >= 10).astype(int)]
    smooth = pseudo_likelihood_beta(halves, adj @ halves)
    assert smooth > 2.0
    # hand check of the estimating equation at the root: sum (q - p(beta)) m = 0
    m = adj @ halves
    p = np.exp(smooth * m) / np.exp(smooth * m).sum(axis=1, keepdims=True)
    assert abs(((halves - p) * m).sum()) < 1e-3 * (halves * m).sum() or smooth == pytest.approx(20.0)


def test_potts_prior_recovers_noisy_domains_the_plain_mixture_misses():
    x, adj, truth, _ = two_domains()
    plain = ad.AnnData(np.zeros((len(x), 1), np.float32), obsm={"r": x})
    mclust(plain, 2, seed=0, use_rep="r", key_added="c")
    plain_ari = adjusted_rand_score(truth, plain.obs["c"])
    result = potts_mixture(x, adj, 2, seed=0)
    hmrf_ari = adjusted_rand_score(truth, result.labels)
    assert plain_ari < 0.4 and hmrf_ari > 0.8
    assert result.beta > 0 and result.posterior.shape == (len(x), 2)
    np.testing.assert_allclose(result.posterior.sum(axis=1), 1.0)


def test_beta_zero_is_the_plain_mixture_refitted():
    x, adj, _, _ = two_domains(side=12, noise=0.3)
    result = potts_mixture(x, adj, 2, seed=0, beta=0.0, mixture_weights=True)
    plain = ad.AnnData(np.zeros((len(x), 1), np.float32), obsm={"r": x})
    mclust(plain, 2, seed=0, use_rep="r", key_added="c")
    assert adjusted_rand_score(plain.obs["c"], result.labels) == pytest.approx(1.0)


def test_cluster_hmrf_uses_the_spatial_graph():
    x, adj, truth, xy = two_domains()
    adata = ad.AnnData(np.zeros((len(x), 1), np.float32), obsm={"r": x, "spatial": xy})
    with pytest.raises(KeyError, match="spatial_connectivities"):
        cluster_rep(adata, "hmrf", 2, use_rep="r")
    adata.obsp["spatial_connectivities"] = adj
    run = cluster_rep(adata, "hmrf", 2, use_rep="r", key_added="dom")
    assert run["method"] == "hmrf" and run["beta"] > 0 and run["n_clusters"] == 2
    assert adjusted_rand_score(truth, adata.obs["dom"]) > 0.8


def test_potts_mixture_names_bad_shapes():
    x, adj, _, _ = two_domains(side=6)
    with pytest.raises(ValueError, match="graph must be"):
        potts_mixture(x, adj[:10, :10], 2)
    with pytest.raises(ValueError, match="at least 2 cells"):
        potts_mixture(x[:1], adj[:1, :1], 2)
