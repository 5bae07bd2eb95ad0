"""Held-out denoising evaluation: masking, baselines and scores."""

import numpy as np
import pytest
import scipy.sparse as sp

from gist.tl._inputs import log_normalize
from bench.denoise import (
    HeldOut,
    baseline_prediction,
    gene_scores,
    held_out_truth,
    mask_counts,
    neighbour_mean,
    score_denoiser,
    score_prediction,
)
from gist.errors import GistInputError


@pytest.fixture()
def counts():
    rng = np.random.default_rng(0)
    return sp.csr_matrix(rng.poisson(0.8, size=(50, 40)).astype(np.float32))


def test_mask_holds_out_a_tenth_of_each_cells_nonzero_counts(counts):
    dense = counts.toarray()
    masked, held = mask_counts(counts, 0.1, seed=1)
    for i in range(dense.shape[0]):
        nonzero = np.count_nonzero(dense[i])
        assert (held.rows == i).sum() == int(round(0.1 * nonzero))
    assert np.all(dense[held.rows, held.cols] > 0)
    np.testing.assert_array_equal(held.counts, dense[held.rows, held.cols])
    assert np.all(masked[held.rows, held.cols] == 0)
    untouched = np.ones_like(dense, bool)
    untouched[held.rows, held.cols] = False
    np.testing.assert_array_equal(masked[untouched], dense[untouched])


def test_mask_is_seeded(counts):
    _, a = mask_counts(counts, 0.1, seed=3)
    _, b = mask_counts(counts, 0.1, seed=3)
    _, c = mask_counts(counts, 0.1, seed=4)
    np.testing.assert_array_equal(a.cols, b.cols)
    assert not np.array_equal(a.cols, c.cols)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_mask_rejects_bad_fractions(counts, fraction):
    with pytest.raises(GistInputError, match="fraction"):
        mask_counts(counts, fraction)


def test_neighbour_mean_by_hand():
    values = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 7.0]], np.float32)
    # 0-1, 1-2 linked (with self loops, which are ignored); 3 alone
    adj = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], np.float32))
    out = neighbour_mean(values, adj)
    np.testing.assert_allclose(out, [[3, 2], [3, 2], [3, 2], [7, 7]])


def test_scores_of_a_perfect_and_a_useless_prediction(counts):
    masked, held = mask_counts(counts, 0.2, seed=0)
    truth = held_out_truth(masked, held)
    recon = np.zeros_like(masked)
    recon[held.rows, held.cols] = truth
    perfect = score_denoiser(masked, held, recon)
    assert perfect["corr"] == pytest.approx(1.0) and perfect["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["auc"] == pytest.approx(1.0) and perfect["gene_rmse"] == pytest.approx(0.0, abs=1e-6)
    raw = score_denoiser(masked, held, baseline_prediction("raw", masked, sp.eye(masked.shape[0], format="csr"), np.zeros(50)))
    assert raw["rmse"] == pytest.approx(np.sqrt(np.mean(truth**2)))
    assert np.isnan(raw["corr"]) and raw["auc"] == pytest.approx(0.5)
    with pytest.raises(GistInputError, match="unknown denoising baseline"):
        baseline_prediction("nosuch", masked, sp.eye(masked.shape[0], format="csr"), np.zeros(50))


def test_gene_scores_by_hand():
    # gene 0: three entries, prediction = truth + 1 (corr 1, rmse 1); gene 1: three entries, reversed
    # (corr -1, rmse sqrt(8/3)); gene 2: one entry, too few to score
    cols = np.array([0, 1, 0, 1, 0, 1, 2])
    truth = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 5.0])
    predicted = np.array([2.0, 3.0, 3.0, 2.0, 4.0, 1.0, 0.0])
    out = gene_scores(truth, predicted, cols, min_entries=3)
    assert out["gene_corr"] == pytest.approx(0.0)  # median of 1 and -1
    assert out["gene_rmse"] == pytest.approx(np.median([1.0, np.sqrt(8 / 3)]))
    assert np.isnan(gene_scores(truth, predicted, cols, min_entries=4)["gene_corr"])


def test_truth_uses_the_masked_library_size():
    masked = np.array([[4.0, 0.0, 6.0]], np.float32)
    held = HeldOut(np.array([0]), np.array([1]), np.array([5.0], np.float32))
    np.testing.assert_allclose(held_out_truth(masked, held), np.log1p([5.0 * 1e4 / 10.0]))
    assert log_normalize(masked)[0, 0] == pytest.approx(np.log1p(4.0 * 1e4 / 10.0))


def test_score_prediction_checks_shapes():
    with pytest.raises(GistInputError, match="equal-length"):
        score_prediction(np.ones(3), np.ones(4))


def test_real_lung5_neighbours_predict_held_out_counts_better_than_zeros():
    """On real CosMx counts the spatial-smoothing baseline must beat zeros (it is a real baseline)."""
    from conftest import shared_path
    from bench.benchmark import BenchDataset, load_samples

    path = shared_path("cosmx_lung5_subset", "CosMx_subset.h5ad")
    adata = load_samples(BenchDataset("lung5", str(path), "merge_cell_type", merge_from="cell_type"))
    masked, held = mask_counts(adata.X, 0.1, seed=0)
    graph = adata.obsp["spatial_connectivities"]
    smoothed = score_denoiser(masked, held, baseline_prediction("neighbour_mean", masked, graph, adata.obs["sample"]))
    raw = score_denoiser(masked, held, baseline_prediction("raw", masked, graph, adata.obs["sample"]))
    assert len(held.rows) > 10000
    assert smoothed["rmse"] < raw["rmse"]
    assert smoothed["corr"] > 0.1 and smoothed["auc"] > 0.6


def test_detection_auc_ranks_held_out_above_true_zeros(counts):
    from bench.denoise import detection_auc

    masked, held = mask_counts(counts, 0.2, seed=0)
    oracle = np.zeros_like(masked)
    oracle[held.rows, held.cols] = 1.0
    assert detection_auc(masked, held, oracle) == pytest.approx(1.0)
    assert detection_auc(masked, held, -oracle) == pytest.approx(0.0)
    assert detection_auc(masked, held, np.zeros_like(masked)) == pytest.approx(0.5)
    assert score_denoiser(masked, held, oracle)["auc"] == pytest.approx(1.0)


def test_baselines_recover_a_held_out_block_structure():
    """Two cell groups with different gene programmes: a denoiser that borrows from similar cells must
    rank held-out entries above true zeros (MAGIC by expression, the neighbour mean by a graph that
    links cells of the same group)."""
    rng = np.random.default_rng(0)
    rates = np.where(np.arange(40)[None, :] < 20, 3.0, 0.05).repeat(60, axis=0)
    rates[30:] = rates[30:, ::-1]  # the second group expresses the other 20 genes
    counts = rng.poisson(rates).astype(np.float32)
    masked, held = mask_counts(counts, 0.1, seed=0)
    group = np.arange(60) >= 30
    graph = sp.csr_matrix((group[:, None] == group[None, :]).astype(np.float32))
    for method in ("neighbour_mean", "magic"):
        scores = score_denoiser(masked, held, baseline_prediction(method, masked, graph, np.zeros(60)))
        assert scores["auc"] > 0.9, method
        assert scores["rmse"] < score_denoiser(masked, held, log_normalize(masked))["rmse"], method


def test_split_half_markers_find_planted_markers_and_score_on_the_other_half():
    from bench.denoise import marker_auroc, split_half_markers

    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["a", "b", "c"], dtype=object), 40)
    labels[::10] = None  # unlabelled cells are in neither half
    x = rng.normal(0, 1, (120, 30))
    for k, label in enumerate("abc"):
        x[labels == label, k * 3:(k + 1) * 3] += 4.0  # genes 3k .. 3k+2 mark label k
    markers, rows = split_half_markers(x, labels, seed=1, per_label=3)
    assert {k: sorted(v) for k, v in markers.items()} == {"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7, 8]}
    assert len(rows) == 108 // 2 and all(labels[r] is not None for r in rows)
    again, rows_again = split_half_markers(x, labels, seed=1, per_label=3)
    np.testing.assert_array_equal(rows, rows_again)
    assert marker_auroc(x, labels, markers, rows) > 0.95
    assert 0.35 < marker_auroc(rng.normal(0, 1, x.shape), labels, markers, rows) < 0.65  # noise: chance


def test_scvi_prediction_is_on_the_log_normalised_scale():
    """scVI's expected frequencies, scaled to 1e4 per cell and log1p'd: each row sums back to 1e4 (a
    short training; the full one runs in the benchmark)."""
    from bench.denoise import scvi_denoise

    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, (40, 30)).astype(np.float32)
    out = scvi_denoise(counts, np.repeat(["a", "b"], 20), seed=0, max_epochs=2)
    assert out.shape == counts.shape and np.isfinite(out).all() and (out >= 0).all()
    np.testing.assert_allclose(np.expm1(out.astype(np.float64)).sum(axis=1), 1e4, rtol=1e-3)
