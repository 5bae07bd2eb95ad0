"""Figure scripts on a small trained demo result: each writes a non-empty, non-blank image."""

import json
import subprocess
import sys

import matplotlib.image as mpimg
import pytest

from conftest import ROOT


def _run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fig")
    out = _run("train.py", "--dataset", "demo", "--epochs", "3", "--hidden", "64", "16", "--save_path", str(tmp / "ck"),
               "--no_progress")
    assert out.returncode == 0, out.stderr
    out = _run("test.py", "--dataset", "demo", "--save_path", str(tmp / "ck"), "--result_path", str(tmp / "res"), "--baseline")
    assert out.returncode == 0, out.stderr
    return tmp / "res", out.stdout


def test_metrics_file_records_what_is_needed_to_recompute(result):
    import anndata as ad
    from sklearn.metrics import adjusted_rand_score

    res, stdout = result
    metrics = json.loads((res / "metrics.json").read_text())
    for key in ("ari", "nmi", "n_clusters", "method", "resolution", "checkpoint", "selection", "seed", "label_key", "cluster_key"):
        assert key in metrics, key
    assert metrics["selection"] == "final" and metrics["n_clusters"] == 8 and "baseline_expression" in metrics
    adata = ad.read_h5ad(res / "gist.h5ad")
    recomputed = adjusted_rand_score(adata.obs[metrics["label_key"]], adata.obs[metrics["cluster_key"]])
    assert recomputed == pytest.approx(metrics["ari"])
    assert set(adata.obs["gist_matched"].unique()) <= set(adata.obs["merge_cell_type"].unique())
    assert (res / "metrics_per_class.csv").is_file() and "expression-only leiden" in stdout


def _check_image(path):
    assert path.is_file() and path.stat().st_size > 10_000
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.parametrize("script, args, name", [
    ("spatial.py", [], "spatial.png"),
    ("umap_all.py", [], "umap.png"),
    ("violin.py", ["--genes", "EPCAM", "KRT18", "COL1A1", "CD3E", "NOT_A_GENE"], "violin.png"),
    ("mark_gene.py", ["--gene", "EPCAM"], "gene_EPCAM.png"),
])
def test_figure_scripts_write_images(result, script, args, name):
    res, _ = result
    out = _run(script, "--dataset", "demo", "--result_path", str(res), *args)
    assert out.returncode == 0, out.stderr
    _check_image(res / "figures" / name)
    if script == "violin.py":
        assert "NOT_A_GENE" in out.stderr  # absent genes are reported


def test_spatial_panels_use_image_row_orientation(result):
    import anndata as ad

    from gist.pl import spatial

    res, _ = result
    fig = spatial(ad.read_h5ad(res / "gist.h5ad"), "merge_cell_type", "gist_matched")
    drawn = [ax for ax in fig.axes if ax.collections]
    assert len(drawn) == 8 and all(ax.get_ylim()[0] > ax.get_ylim()[1] for ax in drawn)


def test_missing_gene_and_result_give_clear_errors(result, tmp_path):
    res, _ = result
    out = _run("mark_gene.py", "--dataset", "demo", "--result_path", str(res), "--gene", "NOTAGENE")
    assert out.returncode == 2 and "'NOTAGENE' is not in" in out.stderr
    out = _run("mark_gene.py", "--dataset", "demo", "--result_path", str(res))  # default KRAS: in the demo
    assert out.returncode == 0, out.stderr
    out = _run("spatial.py", "--dataset", "demo", "--result_path", str(tmp_path))
    assert out.returncode == 2 and "gist.h5ad not found" in out.stderr


def test_paper_palette_for_lung13_classes():
    from gist.pl import palette

    assert palette(["tumors", "mast"]) == {"tumors": "#A6CEE3", "mast": "#5B6BBF"}
    other = palette(["a", "b", "c"])
    assert len(set(other.values())) == 3 and set(other) == {"a", "b", "c"}


def test_report_summarises_scores_and_figures(result):
    from gist.report import summary

    res, _ = result
    text = summary(res)
    assert "GIST (leiden, 8 clusters, selection final): ARI" in text and "expression only (leiden" in text


def test_denoised_off_writes_the_same_latent_without_the_dense_layer(result, tmp_path):
    import anndata as ad
    import numpy as np

    res, _ = result
    ckpt = res.parent / "ck"
    out = _run("test.py", "--dataset", "demo", "--save_path", str(ckpt), "--result_path", str(tmp_path / "lean"),
               "--denoised", "off")
    assert out.returncode == 0, out.stderr
    full, lean = ad.read_h5ad(res / "gist.h5ad"), ad.read_h5ad(tmp_path / "lean" / "gist.h5ad")
    assert "recon" in full.layers and "gist_denoised" in full.layers and full.uns["gist"]["denoised"]
    assert not set(lean.layers) & {"recon", "gist_denoised"} and not lean.uns["gist"]["denoised"]
    np.testing.assert_allclose(lean.obsm["pred"], full.obsm["pred"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(lean.obs["gist_cluster"].to_numpy(), full.obs["gist_cluster"].to_numpy())
    # the figures that need the layer say so and how to get it
    out = _run("violin.py", "--dataset", "demo", "--result_path", str(tmp_path / "lean"))
    assert out.returncode == 2 and "--denoised on" in out.stderr
    out = _run("spatial.py", "--dataset", "demo", "--result_path", str(tmp_path / "lean"))
    assert out.returncode == 0, out.stderr


def test_denoised_auto_leaves_out_a_layer_over_budget(capsys):
    from gist.cli.test import DENOISED_AUTO_MAX_GIB, wants_denoised
    from gist.tl.inference import denoised_bytes
    from anndata import AnnData
    import numpy as np

    cells = [AnnData(np.zeros((1000, 300), dtype=np.float32)), AnnData(np.zeros((500, 300), dtype=np.float32))]
    assert denoised_bytes(cells) == 4 * 1500 * 300
    assert wants_denoised("auto", denoised_bytes(cells)) and capsys.readouterr().out == ""
    million = int(1e6) * 3000 * 4  # 1M cells x 3,000 genes: 11.2 GiB
    assert million > DENOISED_AUTO_MAX_GIB * 2**30
    assert not wants_denoised("auto", million) and "--denoised on" in capsys.readouterr().out
    assert wants_denoised("on", million) and not wants_denoised("off", 10)
