"""The benchmark's building blocks and bench/reproduce.py end to end on a user-supplied file."""

import json
from dataclasses import replace
import subprocess
import sys

import anndata as ad

import numpy as np
import pytest
from scipy.spatial import cKDTree

from conftest import ROOT, shared_path
from bench.benchmark import (
    BenchDataset,
    expression_rep,
    image_rep,
    methods_for,
    offset_coordinates,
    RunContext,
    representation,
    rescore_clustering,
    run_clustering,
    smoothed_expression_rep,
)
from bench.benchmark_report import START, END, clustering_table, summarise, task_scores, update_markdown
from gist.errors import GistInputError
from gist.io.samples import join_samples
from gist.pp.graph import build_graphs


@pytest.fixture(scope="module")
def demo(demo_small):
    """The small demo as the benchmark reads data: one AnnData, samples in obs['sample']."""
    return join_samples([a.copy() for a in demo_small])


@pytest.fixture(scope="module")
def demo_graphs(demo_small):
    """:func:`demo` with each sample's radius graph."""
    samples = [a.copy() for a in demo_small]
    build_graphs(samples, None, verbose=False)
    return join_samples(samples)


def test_offset_coordinates_never_link_two_samples(demo_small, demo):
    pooled = offset_coordinates(demo)
    sample = np.repeat(np.arange(len(demo_small)), [a.n_obs for a in demo_small])
    extent = max(np.ptp(a.obsm["spatial"], axis=0).max() for a in demo_small)
    pairs = cKDTree(pooled).query_pairs(extent, output_type="ndarray")
    assert len(pairs) and np.all(sample[pairs[:, 0]] == sample[pairs[:, 1]])
    # within a sample, distances are unchanged
    first = demo_small[0].obsm["spatial"]
    np.testing.assert_allclose(pooled[: len(first)] - pooled[0], first - first[0])


def test_image_methods_only_where_there_is_an_image(demo):
    with_image = methods_for(demo, ["stats", "uni"])
    assert with_image == ["scanpy", "scanpy_avg", "expression", "expression_smoothed", "image_stats", "image_uni", "gist", "gist_noimg",
                          "gist_uni", "gist_paper", "graphst", "banksy", "cellcharter"]
    bare = demo.copy()
    del bare.uns["spatial"]
    assert methods_for(bare, ["stats"]) == ["scanpy", "scanpy_avg", "expression", "expression_smoothed", "gist", "gist_paper", "graphst",
                                            "banksy", "cellcharter"]
    # domains add the spatial-prior baseline and GraphST's refinement
    assert methods_for(bare, ["stats"], "mclust") == ["scanpy", "scanpy_avg", "expression", "expression_smoothed",
                                                      "expression_hmrf", "gist",
                                                      "gist_paper", "graphst", "graphst_refine", "banksy", "cellcharter"]


@pytest.mark.parametrize("method", ["gist-full", "image_", "expression_fancy"])
def test_unknown_method_is_named(demo, method):
    with pytest.raises(GistInputError, match=f"'{method}'"):
        representation(demo, method, RunContext(seed=0, paper_epochs=1))


def test_smoothed_expression_is_the_neighbour_average_of_the_pca(demo_small, demo):
    plain = expression_rep(demo, seed=0).obsm["bench_rep"]
    smoothed = smoothed_expression_rep(demo, seed=0).obsm["bench_rep"]
    first = demo_small[0]
    coords = first.obsm["spatial"]
    _, idx = cKDTree(coords).query(coords[5], k=7)  # the cell and its 6 nearest
    members = set(idx.tolist())
    # the graph is made symmetric: cells that count cell 5 among their 6 nearest join its average
    for j in range(first.n_obs):
        _, near = cKDTree(coords).query(coords[j], k=7)
        if 5 in near[1:]:
            members.add(j)
    np.testing.assert_allclose(smoothed[5], plain[sorted(members)].mean(axis=0), rtol=1e-4, atol=1e-5)


def test_expression_and_image_representations(demo):
    n = demo.n_obs
    expr = expression_rep(demo, seed=0)
    assert expr.obsm["bench_rep"].shape == (n, 30)
    img = image_rep(demo, seed=0, extractor="stats", weights=None, device="cpu")
    assert img.obsm["bench_rep"].shape == (n, 30) and np.isfinite(img.obsm["bench_rep"]).all()
    assert list(img.obs_names) == list(expr.obs_names)


def test_graphst_embeds_every_cell(demo):
    pytest.importorskip("GraphST", reason="GraphST (requirements.txt) is not installed")
    from bench.benchmark import graphst_rep

    out = graphst_rep(demo, seed=0, device="cpu", epochs=3)
    assert out.obsm["bench_rep"].shape == (demo.n_obs, 20)
    assert np.isfinite(out.obsm["bench_rep"]).all()


def test_graphst_refuses_too_many_cells(demo):
    pytest.importorskip("GraphST", reason="GraphST (requirements.txt) is not installed")
    from bench.benchmark import graphst_rep

    with pytest.raises(GistInputError, match="dense"):
        graphst_rep(demo, seed=0, device="cpu", epochs=1, max_cells=100)


def test_summary_is_mean_and_sd_over_seeds():
    records = [{"dataset": "d", "method": "m", "seed": s, "ari": a, "nmi": 0.5, "seconds": 2.0, "peak_mb": 100 + s}
               for s, a in enumerate([0.2, 0.4, 0.6])]
    records.append({"dataset": "d", "method": "x", "seed": 0, "error": "boom"})
    row = summarise(records).iloc[0]
    assert row["seeds"] == 3 and row["ARI"] == "0.400 ± 0.200" and row["peak MB"] == "102"
    assert "**0.400 ± 0.200**" in clustering_table(records)


def test_tables_say_how_many_em_starts_each_mixture_row_used():
    def rec(dataset, method, seed, cluster, **extra):
        return {"dataset": dataset, "method": method, "seed": seed, "ari": 0.5, "nmi": 0.5, "seconds": 1.0,
                "peak_mb": 1.0, "cluster": cluster, **extra}

    records = [rec("a", "old", 0, "mclust"),  # recorded before restarts: one start
               rec("a", "new", 0, "mclust", restarts=10), rec("a", "new", 1, "hmrf", restarts=10),
               rec("a", "mixed", 0, "mclust"), rec("a", "mixed", 1, "mclust", restarts=10),
               rec("a", "cells", 0, "leiden", restarts=5)]
    starts = summarise(records).set_index("method")["starts"].to_dict()
    assert starts == {"old": "1", "new": "10", "mixed": "1/10", "cells": "-"}
    scores = task_scores(records, {"t": {"f": ("a",)}}).set_index("method")["starts"].to_dict()
    assert scores == starts


def test_update_markdown_replaces_only_the_marked_block(tmp_path):
    path = tmp_path / "B.md"
    path.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    update_markdown(path, "new table")
    assert path.read_text() == f"intro\n{START}\nnew table\n{END}\noutro\n"
    bare = tmp_path / "bare.md"
    bare.write_text("no markers")
    with pytest.raises(GistInputError, match="markers"):
        update_markdown(bare, "x")


def test_real_lung5_expression_baseline_scores_the_merged_classes():
    path = shared_path("cosmx_lung5_subset", "CosMx_subset.h5ad")
    dataset = BenchDataset("cosmx_lung5", str(path), "merge_cell_type", "leiden", 8, 80.0, merge_from="cell_type")
    record = run_clustering(dataset, "expression", seed=0, paper_epochs=0)
    assert record["cells"] == 2814 and record["n_clusters"] == 8 and record["selection"] == "final"
    assert 0.15 < record["ari"] < 0.9 and 0.2 < record["nmi"] < 0.9
    assert record["peak_mb"] >= record["loaded_mb"] > 0


def test_reproduce_on_a_user_file_writes_records_and_tables(tmp_path, demo_small):
    data = tmp_path / "mine.h5ad"
    pooled = ad.concat([a.copy() for a in demo_small], merge="same")
    pooled.obs["domain"] = pooled.obs["merge_cell_type"].astype(str)
    pooled.obs.loc[pooled.obs_names[::25], "domain"] = "nan"  # unannotated, as DLPFC stores them: not a class
    pooled.write_h5ad(data)
    classes = pooled.obs["domain"][pooled.obs["domain"] != "nan"].nunique()
    markdown = tmp_path / "B.md"
    markdown.write_text(f"# mine\n{START}\n{END}\n")
    out = tmp_path / "bench.json"
    command = [sys.executable, str(ROOT / "bench" / "reproduce.py"), "--data", str(data), "--label_key", "domain",
               "--library_key", "sample", "--cluster", "mclust", "--methods", "expression", "gist", "--seeds", "0",
               "--gist_epochs", "2", "--gist_ensemble", "2", "--out", str(out), "--markdown", str(markdown)]
    reps = tmp_path / "reps"
    result = subprocess.run(command + ["--no_denoise", "--keep_reps", str(reps)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # each run's representation is kept with its clusters and labels, cell for cell
    kept = {p.name: np.load(p) for p in reps.glob("*.npz")}
    assert set(kept) == {"mine_expression_s0.npz", "mine_gist_s0.npz"}
    for arrays in kept.values():
        assert arrays["rep"].shape[0] == arrays["labels"].shape[0] == arrays["clusters"].shape[0] == pooled.n_obs
        assert sorted(set(arrays["labels"])) == sorted(set(pooled.obs["domain"]))
        assert arrays["spatial"].shape == (pooled.n_obs, 2) and set(arrays["samples"]) == set(pooled.obs["sample"])
    gist = kept["mine_gist_s0.npz"]
    assert gist["rep"].shape[1] == 50 and len(set(gist["clusters"])) > 1  # domains: the recipe's latent of 50
    assert gist["graph_indptr"].shape == (pooled.n_obs + 1,) and gist["graph_indices"].size > pooled.n_obs
    # the ensemble's two members side by side, for the consensus variant of bench/recluster.py
    assert int(gist["n_members"]) == 2 and gist["members"].shape == (pooled.n_obs, 2 * 50)
    assert not np.allclose(gist["members"][:, :50], gist["members"][:, 50:])
    assert "members" not in kept["mine_expression_s0.npz"]
    payload = json.loads(out.read_text())
    records = payload["records"]
    assert {(r["method"], r["seed"]) for r in records} == {("expression", 0), ("gist", 0)}
    gist = next(r for r in records if r["method"] == "gist")
    assert gist["ensemble"] == 2 and gist["epochs"] == 2 and gist["smoothed"] and gist["recipe"] == "gist"
    for r in records:
        assert r["dataset"] == "mine" and r["selection"] == "final" and -1 <= r["ari"] <= 1 and 0 <= r["nmi"] <= 1
        assert r["seconds"] > 0 and r["peak_mb"] > 0 and r["cells"] == pooled.n_obs
        assert r["ncluster"] == classes and r["scored_cells"] == pooled.n_obs - len(pooled.obs_names[::25])
    assert payload["denoising"] == []
    # --rescore: a stale record (scored under another label rule) gets the clustering and scores a
    # rerun would give, from the kept run alone (expression: raw; gist: averaged over the kept graph)
    fresh = {r["method"]: dict(r) for r in records}
    for r in payload["records"]:
        r.update(ari=-1.0, nmi=0.0, ncluster=classes + 1, scored_cells=pooled.n_obs)
    out.write_text(json.dumps(payload))
    rescored = subprocess.run(command[:-4] + ["--out", str(out), "--markdown", "", "--rescore", str(reps)],
                              capture_output=True, text=True, timeout=600)
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    assert rescored.stdout.count("rescored mine_") == 2
    for r in json.loads(out.read_text())["records"]:
        before = fresh[r["method"]]
        assert (r["ari"], r["nmi"], r["ncluster"], r["scored_cells"]) == \
            (before["ari"], before["nmi"], before["ncluster"], before["scored_cells"])
        assert r["seconds"] == before["seconds"] and "rescored" in r
    # a kept run is only rescored against the cells it was made from
    moved = ad.read_h5ad(data)
    moved.obsm["spatial"] = moved.obsm["spatial"][::-1].copy()
    moved.write_h5ad(data)
    dataset = BenchDataset("mine", str(data), "domain", "mclust", library_key="sample")
    with pytest.raises(GistInputError, match="not those of dataset 'mine'"):
        rescore_clustering(dataset, fresh["gist"], reps / "mine_gist_s0.npz")
    pooled.write_h5ad(data)
    out.write_text(json.dumps(payload | {"records": list(fresh.values())}))
    # resuming runs only what is missing: the denoising run (same dataset, method, seed and epochs
    # as a clustering record, which must not count as done)
    again = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped") == 2  # the two clustering runs; the denoising ones run
    payload = json.loads(out.read_text())
    assert len(payload["records"]) == 2
    denoise = {r["method"]: r for r in payload["denoising"]}
    assert set(denoise) == {"raw", "neighbour_mean", "magic", "gist", "gist_knn30", "gist_knn50", "gist_knn100", "gist_knn_auto", "gist_diff10", "gist_diff15"}
    assert len({r["held_out"] for r in denoise.values()}) == 1 and denoise["gist"]["held_out"] > 0
    assert all(0 <= r["auc"] <= 1 and r["rmse"] > 0 for r in denoise.values())
    text = markdown.read_text()
    assert "| expression | 1 |" in text and "| gist | 1 |" in text and "RMSE at the held-out entries" in text


def test_reproduce_help_explains_every_flag():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "reproduce.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--label_key" in result.stdout
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import reproduce
    finally:
        sys.path.remove(str(ROOT / "bench"))
    flags = {a.option_strings[-1]: a.help for a in reproduce.build_parser()._actions if a.option_strings}
    assert {"--data", "--label_key", "--image", "--seeds", "--paper_epochs", "--methods", "--weights", "--resume"} <= set(flags)
    assert all(text and len(text) > 10 for text in flags.values()), flags


def test_scale_bench_embeds_every_cell_and_reports_peak_memory(tmp_path, capsys):
    from bench import scale

    out = tmp_path / "scale.json"
    assert scale.main(["--fovs", "2", "--cells", "300", "--genes", "700", "--train_fovs", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    stages = {row["stage"].split(" (")[0]: row for row in record["rows"]}
    assert stages["generate counts"]["cells"] == 600 and stages["gene selection"]["genes"] == 700
    assert stages["inference, every cell"]["cells"] == 600  # every cell embedded once
    assert 5 < stages["spatial graphs"]["neighbours"] < 9
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("peak_rss_gib ")


def test_banksy_embeds_every_cell_in_its_settings(demo):
    pytest.importorskip("banksy", reason="pybanksy (bench/requirements.txt) is not installed")
    from bench.benchmark import BANKSY_PCS, banksy_rep

    n = demo.n_obs
    out = banksy_rep(demo, seed=0, task="leiden")
    assert out.obsm["bench_rep"].shape == (n, BANKSY_PCS) and np.isfinite(out.obsm["bench_rep"]).all()
    cells = banksy_rep(demo, seed=0, task="mclust", kind="cell")  # lambda 0.8 for domains of cells
    assert not np.allclose(np.abs(out.obsm["bench_rep"]), np.abs(cells.obsm["bench_rep"]))
    spots = banksy_rep(demo, seed=0, task="mclust", kind="spot")  # the DLPFC vignette: no log, k_geom 6, no filter
    assert spots.obsm["bench_rep"].shape == (n, BANKSY_PCS) and np.isfinite(spots.obsm["bench_rep"]).all()
    assert spots.X.max() > np.log1p(spots.X.max())  # library-size scaled, not logged
    assert not np.allclose(np.abs(cells.obsm["bench_rep"]), np.abs(spots.obsm["bench_rep"]))


def test_cellcharter_blocks_are_the_latent_and_its_ring_means(demo):
    pytest.importorskip("cellcharter", reason="cellcharter (bench/requirements.txt) is not installed")
    from bench.benchmark import cellcharter_rep

    out = cellcharter_rep(demo, seed=0, max_epochs=3)
    latent = out.obsm["X_scVI"]
    rep = out.obsm["bench_rep"]
    assert rep.shape == (out.n_obs, 4 * latent.shape[1])  # the cell, then its 1-, 2- and 3-hop rings
    np.testing.assert_allclose(rep[:, : latent.shape[1]], latent, rtol=1e-5, atol=1e-5)
    # the first ring: the mean of the latent over the cell's graph neighbours
    adj = out.obsp["spatial_connectivities"].tocsr()
    i = int(np.argmax(np.diff(adj.indptr)))
    np.testing.assert_allclose(rep[i, latent.shape[1]: 2 * latent.shape[1]], latent[adj[i].indices].mean(axis=0),
                               rtol=1e-4, atol=1e-4)


def test_cluster_rep_spatial_prior_and_refinement(demo_graphs):
    from collections import Counter

    from bench.benchmark import cluster_rep, clusterer

    samples = demo_graphs
    assert clusterer("expression_hmrf", "mclust") == "hmrf" and clusterer("expression_hmrf", "leiden") == "leiden"
    assert clusterer("expression", "mclust") == "mclust"
    rep = expression_rep(samples, seed=0)
    run = cluster_rep(rep, samples, "expression_hmrf", "mclust", 4, seed=0)
    assert run["method"] == "hmrf" and run["beta"] > 0 and rep.obs["bench_cluster"].nunique() <= 4
    pytest.importorskip("GraphST", reason="GraphST (bench/requirements.txt) is not installed")
    rep = expression_rep(samples, seed=0)
    rep.obsm["spatial"] = offset_coordinates(samples)
    plain = rep.copy()
    assert "refined" not in cluster_rep(plain, samples, "graphst", "mclust", 4, seed=0)
    assert cluster_rep(rep, samples, "graphst_refine", "mclust", 4, seed=0)["refined"]
    # each spot now carries the majority label of its 50 nearest spots' labels before refinement
    before = plain.obs["bench_cluster"].astype(str).to_numpy()
    after = rep.obs["bench_cluster"].astype(str).to_numpy()
    _, near = cKDTree(rep.obsm["spatial"]).query(rep.obsm["spatial"], k=51)
    for i in range(0, rep.n_obs, 17):
        counts = Counter(before[near[i, 1:]])
        assert counts[after[i]] == max(counts.values())


def test_task_score_is_the_equal_weight_mean_over_the_tasks_sets():
    def rec(dataset, method, seed, ari):
        return {"dataset": dataset, "method": method, "seed": seed, "ari": ari, "nmi": 0.0, "seconds": 1.0, "peak_mb": 1.0}

    records = [rec("a", "m", 0, 0.2), rec("a", "m", 1, 0.4),  # set a: 0.3 over two seeds
               rec("b", "m", 0, 0.6),  # set b: 0.6 over one seed; the score is 0.45, not the mean of 3 runs (0.4)
               rec("a", "n", 0, 0.9),  # n misses set b: no score
               rec("c", "m", 0, 0.1), {"dataset": "b", "method": "n", "seed": 0, "error": "failed"}]
    scores = task_scores(records, {"t": {"f": ("a", "b")}, "u": {"g": ("c",)}})
    row = scores[(scores.task == "t") & (scores.method == "m")].iloc[0]
    assert row["score"] == pytest.approx(0.45) and row["sets"] == "2/2" and row["min seeds"] == 1
    missing = scores[(scores.task == "t") & (scores.method == "n")].iloc[0]
    assert missing["sets"] == "1/2" and (missing["score"] is None or np.isnan(missing["score"]))
    assert list(scores[scores.task == "t"]["method"]) == ["m", "n"]  # scored first
    assert scores[(scores.task == "u")]["score"].tolist() == [pytest.approx(0.1)]


def test_image_moran_separates_a_smooth_field_from_noise_and_reads_the_image_gain():
    import scipy.sparse as sp

    from bench.image_moran import image_gain, mean_morans_i

    side = 20
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2).astype(float)
    pairs = cKDTree(xy).query_pairs(1.01, output_type="ndarray")
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(side * side,) * 2).tocsr()
    graph = graph + graph.T
    smooth = np.stack([xy[:, 0], xy[:, 1] + xy[:, 0]], axis=1)
    noise = np.random.default_rng(0).normal(size=(side * side, 2))
    assert mean_morans_i(graph, smooth) > 0.9
    assert abs(mean_morans_i(graph, noise)) < 0.1
    # a constant column carries no autocorrelation and is left out instead of giving NaN
    assert np.isfinite(mean_morans_i(graph, np.hstack([noise, np.ones((side * side, 1))])))
    records = [{"dataset": "d", "method": m, "seed": s, "ari": a}
               for m, s, a in [("gist", 0, 0.5), ("gist_noimg", 0, 0.3), ("gist", 1, 0.4), ("gist_noimg", 1, 0.4), ("gist", 2, 0.9)]]
    assert image_gain(records, "d") == (0.1, 2)  # seed 2 has no gist_noimg run and is not counted
    assert image_gain(records, "other") == (None, 0)


def test_gist_denoised_clusters_the_principal_components_of_the_denoised_genes(demo_graphs):
    rep = representation(demo_graphs, "gist_denoised", RunContext(seed=0, paper_epochs=1, gist_epochs=2, gist_ensemble=2))
    denoised = np.asarray(rep.layers["gist_denoised"], dtype=np.float64)
    assert denoised.shape == (rep.n_obs, rep.n_vars)  # genes, through the loadings of the component input
    scores = rep.obsm["bench_rep"]
    assert scores.shape == (rep.n_obs, 20)
    # the 20 scores carry the 20 largest variances of the denoised expression, not the latent's
    top = np.linalg.svd(denoised - denoised.mean(0), compute_uv=False)[:20] ** 2 / (rep.n_obs - 1)
    np.testing.assert_allclose(np.sort(scores.var(0, ddof=1))[::-1], top, rtol=1e-4)
    assert not np.allclose(scores, rep.obsm["X_gist"][:, :20])


def test_candidate_suffixes_and_gene_settings_reach_the_run(demo_graphs):
    from bench.benchmark import candidate_name, candidate_settings

    assert candidate_name("gist+default_noimg_denoised") == "default" and candidate_name("gist+z50_denoised") == "z50"
    assert candidate_settings("gist+g1000_denoised") == {"n_top_genes": 1000}
    with pytest.raises(GistInputError, match="unknown candidate 'nope'"):
        candidate_settings("gist+nope_denoised")
    samples = demo_graphs
    # 5,000 genes on a smaller panel: all of them; _noimg: the gene branch alone; _denoised: its components
    rep = representation(samples, "gist+g5000_noimg_denoised", RunContext(seed=0, paper_epochs=1, gist_epochs=1,
                                                                          gist_ensemble=1))
    assert rep.n_vars == samples.n_vars and rep.uns["gist"]["image_branch"] is False
    assert rep.obsm["bench_rep"].shape == (rep.n_obs, 20)
    assert not np.allclose(rep.obsm["bench_rep"][:, :2], rep.obsm["X_gist"][:, :2])


def test_denoising_check_scores_every_denoiser_on_the_same_mask():
    from bench.benchmark import DENOISE_KNN, run_denoising

    demo = BenchDataset("demo", None, "merge_cell_type", "leiden", 8, 80.0)
    by_method = lambda records: {r["method"]: r for r in records}  # noqa: E731
    paper = by_method(run_denoising(demo, seed=0, method="gist_paper", paper_epochs=2))
    default = by_method(run_denoising(demo, seed=0, gist_epochs=2, gist_ensemble=1))
    smooth = by_method(run_denoising(demo, seed=0, method="neighbour_mean"))
    assert set(default) == {"gist", "gist_knn_auto", "gist_diff10", "gist_diff15"} | {f"gist_knn{k}" for k in DENOISE_KNN}
    assert set(paper) == {"gist_paper", "gist_paper_knn_auto", "gist_paper_diff10", "gist_paper_diff15"} | {f"gist_paper_knn{k}" for k in DENOISE_KNN}
    assert (paper["gist_paper"]["epochs"], default["gist"]["epochs"]) == (2, 2)
    assert paper["gist_paper"]["held_out"] == default["gist"]["held_out"] == smooth["neighbour_mean"]["held_out"] > 0
    assert paper["gist_paper"]["rmse"] != default["gist"]["rmse"] != default["gist_knn30"]["rmse"]
    assert paper["gist_paper"]["image"] and default["gist"]["image"]  # cell types: both train the image branch
    assert {"corr", "rmse", "auc", "gene_corr", "gene_rmse"} <= set(smooth["neighbour_mean"])
    # a second seed draws another mask
    assert run_denoising(demo, seed=1, method="raw")[0]["held_out"] != smooth["neighbour_mean"]["held_out"] or \
        run_denoising(demo, seed=1, method="neighbour_mean")[0]["rmse"] != smooth["neighbour_mean"]["rmse"]
    domains = by_method(run_denoising(replace(demo, cluster="mclust"), seed=0, gist_epochs=1, gist_ensemble=1))
    assert domains["gist"]["image"] is False  # the domain default leaves the image out, and the record says so
    with pytest.raises(GistInputError, match="unknown denoising method 'graphst'"):
        run_denoising(demo, seed=0, method="graphst")


def test_denoising_check_runs_a_candidate_with_its_settings():
    from bench.benchmark import run_denoising
    from bench.reproduce import parse_args

    demo = BenchDataset("demo", None, "merge_cell_type", "leiden", 8, 80.0)
    default = run_denoising(demo, seed=0, gist_epochs=1, gist_ensemble=1)[0]
    masked = run_denoising(demo, seed=0, gist_epochs=1, gist_ensemble=1, method="gist+masked")[0]
    blind = run_denoising(demo, seed=0, gist_epochs=1, gist_ensemble=1, method="gist+masked_noimg")[0]
    assert (masked["method"], masked["image"], blind["image"]) == ("gist+masked", True, False)
    assert masked["held_out"] == default["held_out"]
    assert len({default["rmse"], masked["rmse"], blind["rmse"]}) == 3  # three different models
    assert parse_args(["--denoise_methods", "gist", "gist+img", "magic", "scvi"]).denoise_methods == ["gist", "gist+img", "magic", "scvi"]
    for bad in ("gist+nosuch", "gist+z50_denoised", "graphst"):
        with pytest.raises(SystemExit):
            parse_args(["--denoise_methods", bad])


def test_task_score_weighs_each_family_once():
    def rec(dataset, method, ari):
        return {"dataset": dataset, "method": method, "seed": 0, "ari": ari, "nmi": 0.0, "seconds": 1.0, "peak_mb": 1.0}

    # five sections of one family at 0.1, one of another at 0.9: 0.5 by family, not 0.233 by section
    records = [rec(f"s{i}", "m", 0.1) for i in range(5)] + [rec("t", "m", 0.9)]
    scores = task_scores(records, {"task": {"many": tuple(f"s{i}" for i in range(5)), "one": ("t",)}})
    assert scores.iloc[0]["score"] == pytest.approx(0.5)


def test_bootstrap_interval_of_a_paired_difference_on_a_hand_made_table():
    import pandas as pd

    from bench.benchmark_report import bootstrap_interval, family_score

    families = {"f": ("a", "b", "c", "d"), "g": ("e",)}
    # a constant gain of 0.02 on every section: every resample gives 0.02, so the interval is that point
    flat = pd.Series(0.02, index=list("abcde"))
    assert bootstrap_interval(flat, families) == pytest.approx((0.02, 0.02, 0.02))
    # family f: +0.2, -0.2, +0.2, -0.2 (mean 0); family g: +0.1. Score (0 + 0.1) / 2 = 0.05; resampling f's
    # sections gives its mean in [-0.2, 0.2], so the interval is wide and straddles zero
    mixed = pd.Series([0.2, -0.2, 0.2, -0.2, 0.1], index=list("abcde"))
    score, low, high = bootstrap_interval(mixed, families)
    assert score == pytest.approx(0.05) == pytest.approx(family_score(mixed, families))
    assert low < 0 < high
    # by hand: f's resampled mean is (2k - 4) * 0.2 / 4 for k of 4 draws on +0.2, k ~ Binomial(4, 1/2), and the
    # score is half of it + 0.05. P(k = 0) = P(k = 4) = 1/16 > 5%: the 90% interval is the extremes, -0.05 and 0.15;
    # P(k <= 0) = 1/16 < 25% <= P(k <= 1) = 5/16 and P(k <= 2) = 11/16 < 75%: the 50% interval is k = 1 .. 3, 0 and 0.1
    assert low == pytest.approx(-0.05) and high == pytest.approx(0.15)
    assert bootstrap_interval(mixed, families, level=0.5)[1:] == pytest.approx((0.0, 0.1))
    # a missing section: no score
    assert np.isnan(bootstrap_interval(mixed.drop("e"), families)[0])


def test_selection_rule_needs_the_interval_above_zero_and_no_section_below_the_floor():
    from bench.benchmark_report import compare_to_default

    def rec(dataset, method, ari, seed=0):
        return {"dataset": dataset, "method": method, "seed": seed, "ari": ari, "nmi": 0.0, "seconds": 1.0, "peak_mb": 1.0}

    sections = ["dlpfc_151510", "dlpfc_151673", "dlpfc_151674", "her2st_A1", "her2st_B1", "her2st_C1", "her2st_D1",
                "her2st_G2", "her2st_H1", "mouse_ob", "starmap_BZ5", "starmap_BZ9", "baristaseq_1", "baristaseq_2"]
    records = []
    for i, s in enumerate(sections):
        records += [rec(s, "scanpy", 0.30), rec(s, "scanpy_avg", 0.35), rec(s, "default", 0.40)]
        records += [rec(s, "better", 0.45 + 0.01 * (i % 3), seed) for seed in (0, 1)]
        records.append(rec(s, "peaky", 0.60 if s != "mouse_ob" else 0.25))  # one section 0.10 under the floor
    better = compare_to_default(records, "better", "default", "domains")
    assert better["replaces"] and better["low"] > 0 and better["shortfalls"] == {}
    peaky = compare_to_default(records, "peaky", "default", "domains")
    assert peaky["difference"] > 0 and peaky["low"] > 0 and not peaky["replaces"]
    assert peaky["shortfalls"] == {"mouse_ob": pytest.approx(0.10)}
    worse = compare_to_default(records, "default", "better", "domains")
    assert not worse["replaces"] and worse["high"] < 0


def test_selection_rule_is_incomplete_without_a_floor_on_every_section():
    from bench.benchmark_report import TASK_FAMILIES, compare_to_default

    sections = [s for group in TASK_FAMILIES["cell types"].values() for s in group]
    records = [{"dataset": s, "method": m, "seed": 0, "ari": a, "nmi": 0.0, "seconds": 1.0, "peak_mb": 1.0}
               for s in sections for m, a in (("default", 0.3), ("better", 0.5))]
    records += [{"dataset": s, "method": "scanpy", "seed": 0, "ari": 0.2, "nmi": 0.0, "seconds": 1.0, "peak_mb": 1.0}
                for s in sections[1:]]  # no floor on the first section
    out = compare_to_default(records, "better", "default", "cell types")
    assert not out["complete"] and not out["replaces"]
    records.append({"dataset": sections[0], "method": "scanpy_avg", "seed": 0, "ari": 0.1, "nmi": 0.0, "seconds": 1.0, "peak_mb": 1.0})
    assert compare_to_default(records, "better", "default", "cell types")["replaces"]
