"""bench/recluster.py: kept benchmark representations clustered again under post-processing variants."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from bench import recluster


def _lattice_run(tmp_path, name="toy_gist_s0.npz", noise=1.2, seed=0):
    """Two spatial domains (left / right half of a 20 x 20 lattice) with a noisy 5-d representation."""
    rng = np.random.default_rng(seed)
    xy = np.array([(x, y) for x in range(20) for y in range(20)], dtype=float)
    labels = np.where(xy[:, 0] < 10, "left", "right")
    rep = rng.normal(scale=noise, size=(400, 5)) + (labels == "right")[:, None] * 1.0
    path = tmp_path / name
    np.savez(path, rep=rep.astype(np.float32), labels=labels, clusters=labels, samples=np.full(400, "a"), spatial=xy)
    return path, labels


def test_refine_takes_the_neighbours_majority_and_keeps_ties():
    # a path 0-1-2-3-4 (self-loops): cell 2 (b between two a) is outvoted, cell 3 (a between two b)
    # too; cell 4 ties 1:1 with its one neighbour and keeps its own
    adj = sp.diags([1.0, 1.0], [-1, 1], shape=(5, 5)).tocsr() + sp.eye(5)
    out = recluster.refine(sp.csr_matrix(adj), np.array(["a", "a", "b", "a", "b"]))
    assert list(out) == ["a", "a", "a", "b", "b"]


def test_ring_blocks_are_the_representation_and_its_exact_ring_means():
    pytest.importorskip("cellcharter", reason="cellcharter (bench/requirements.txt) is not installed")
    # a path 0-1-2-3-4-5 with self-loops (as graph_of gives it), z = the cell's index
    adj = sp.diags([1.0, 1.0], [-1, 1], shape=(6, 6)).tocsr() + sp.eye(6)
    blocks = recluster.ring_blocks(np.arange(6.0)[:, None], sp.csr_matrix(adj))
    # by hand: cell 0's rings are {1}, {2}, {3}; cell 2's {1, 3}, {0, 4}, {5}; cell 3's {2, 4}, {1, 5}, {0}
    assert blocks.shape == (6, 4)
    np.testing.assert_allclose(blocks[0], [0, 1, 2, 3])
    np.testing.assert_allclose(blocks[2], [2, 2, 2, 5])
    np.testing.assert_allclose(blocks[3], [3, 3, 3, 0])


def test_graph_of_rebuilds_the_radius_rule_graph_with_self_loops(tmp_path):
    path, _ = _lattice_run(tmp_path)
    adj = recluster.graph_of(dict(np.load(path)), 400)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    # a square lattice: the 6th-nearest distance is sqrt(2), so the rule's radius takes the 8-ring
    assert degree.max() == 9 and degree.min() == 4 and (adj != adj.T).nnz == 0


def test_smoothing_variants_recover_domains_a_noisy_representation_hides(tmp_path):
    path, labels = _lattice_run(tmp_path)
    arrays = dict(np.load(path))
    from sklearn.metrics import adjusted_rand_score

    scores = {v: adjusted_rand_score(labels, recluster.variant_clusters(v, arrays, "mclust", 2, seed=0))
              for v in ("as_run", "raw", "avg", "refine", "hmrf", "sized")}
    assert scores["as_run"] == 1.0
    assert scores["raw"] < 0.6 and scores["avg"] > scores["raw"] + 0.2 and scores["refine"] >= scores["avg"] - 0.02
    assert scores["hmrf"] > scores["raw"] + 0.2  # the Potts prior recovers what the noise hides


def test_a_candidate_method_name_is_a_kept_run():
    assert recluster.run_name(Path("her2st_B1_gist+h1pc50_noimg_s3.npz")) == ("her2st_B1", "gist+h1pc50_noimg", 3)


def test_main_scores_every_kept_run_and_writes_records(tmp_path, capsys):
    _lattice_run(tmp_path, "toy_gist_s0.npz", seed=0)
    _lattice_run(tmp_path, "toy_expression_smoothed_s1.npz", seed=1)
    out = tmp_path / "r.json"
    assert recluster.main([str(tmp_path), "--variants", "as_run", "avg", "--cluster", "mclust", "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert {(r["method"], r["seed"], r["variant"]) for r in records} == {
        ("gist", 0, "as_run"), ("gist", 0, "avg"), ("expression_smoothed", 1, "as_run"), ("expression_smoothed", 1, "avg")}
    assert all(r["dataset"] == "toy" for r in records)
    assert "| toy | gist | 1.000 ± 0.000 (1) |" in capsys.readouterr().out


def test_sized_averages_only_when_clusters_hold_enough_cells(tmp_path):
    path, labels = _lattice_run(tmp_path)
    arrays = dict(np.load(path))
    # 400 cells in 2 clusters: 200 a cluster >= 150, averaged; in 3 clusters, 133 < 150: as it is
    for ncluster, same_as in ((2, "avg"), (3, "raw")):
        np.testing.assert_array_equal(recluster.variant_clusters("sized", arrays, "mclust", ncluster, seed=0),
                                      recluster.variant_clusters(same_as, arrays, "mclust", ncluster, seed=0))


def test_consensus_joins_the_members_and_expr_reads_the_kept_expression_run(tmp_path):
    from sklearn.metrics import adjusted_rand_score

    path, labels = _lattice_run(tmp_path)
    rng = np.random.default_rng(1)
    arrays = dict(np.load(path))
    members = [arrays["rep"] + rng.normal(scale=0.5, size=arrays["rep"].shape) for _ in range(3)]
    arrays |= {"members": np.hstack(members).astype(np.float32), "n_members": np.int64(3)}
    consensus = recluster.variant_clusters("consensus", arrays, "mclust", 2, seed=0)
    assert adjusted_rand_score(labels, consensus) > 0.8
    with pytest.raises(ValueError, match="member"):
        recluster.variant_clusters("consensus", dict(np.load(path)), "mclust", 2, seed=0)
    with pytest.raises(ValueError, match="scanpy"):
        recluster.variant_clusters("expr_raw", arrays, "mclust", 2, seed=0)
    # the kept scanpy run of the same dataset and seed is read beside the representation
    np.savez(tmp_path / "toy_scanpy_s0.npz", rep=arrays["rep"][:, :3])
    out = tmp_path / "r.json"
    assert recluster.main([str(tmp_path), "--methods", "gist", "--variants", "expr_avg", "--cluster", "mclust",
                           "--out", str(out)]) == 0
    assert [r["variant"] for r in json.loads(out.read_text())] == ["expr_avg"]
