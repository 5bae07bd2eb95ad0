"""Memory that follows the batch: sparse host counts, tiles with halo, early stop, torchrun (DDP)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import ROOT
from gist.tl import batches as batches_mod
from gist.tl.batches import make_batches, stitch, tile_sample
from gist.pp.graph import Cal_Spatial_Net
from gist.tl._inputs import log_normalize, to_graph
from gist.pp.stats import add_patch_stats
from gist.tl.inference import embed_graph
from gist.keys import LATENT_KEY
from gist.tl.model import TransImg, gist_loss
from gist.tl.training import TrainConfig, stop_reason, train


@pytest.fixture(scope="module")
def samples():
    from gist.demo import make_demo

    return [Cal_Spatial_Net(add_patch_stats(a), rad_cutoff=80, verbose=False) for a in make_demo(n_fovs=2, seed=5, image_size=640)]


@pytest.fixture(scope="module")
def graphs(samples):
    return [to_graph(a, str(i)) for i, a in enumerate(samples)]


def test_sparse_counts_stay_sparse_on_the_host(samples, graphs):
    g = graphs[0]
    assert sp.issparse(samples[0].X) and g.is_sparse
    assert g.x.nnz == samples[0].X.nnz  # normalisation keeps the zeros
    np.testing.assert_array_equal(g.dense_x().numpy(), log_normalize(samples[0].X.toarray()))
    resident = make_batches(graphs, None, 4)
    assert not any(b.is_sparse for b in resident)  # small data: densified once
    assert all(b.is_sparse for b in make_batches(graphs, None, 4, dense_budget=0))


def test_densify_per_step_trains_exactly_like_resident(graphs, tmp_path, monkeypatch):
    config = TrainConfig(epochs=3, hidden=(32, 6), save_every=0, seed=3)
    _, resident = train(graphs, config, tmp_path / "a", progress=False)
    monkeypatch.setattr(batches_mod, "DENSE_BUDGET_BYTES", 0)
    _, per_step = train(graphs, config, tmp_path / "b", progress=False)
    assert resident == per_step


@pytest.mark.parametrize("img_dim", [54, 0])
def test_tiles_cover_every_cell_once_and_embed_as_the_whole_sample(graphs, img_dim):
    g = graphs[0] if img_dim else type(graphs[0])(graphs[0].name, graphs[0].x, graphs[0].img[:, :0], graphs[0].edge_index)
    torch.manual_seed(0)
    model = TransImg([g.n_genes, img_dim, 32, 6], fused_img_head=bool(img_dim))
    tiles = tile_sample(g, 120, model.depth)
    assert len(tiles) == -(-g.n_cells // 120) and all(int(t.own.sum()) <= 120 for t in tiles)
    owned = np.concatenate([t.index[t.own.numpy()] for t in tiles])
    assert sorted(owned) == list(range(g.n_cells))  # every cell exactly once
    assert any(t.n_cells > int(t.own.sum()) for t in tiles)  # tiles carry a halo
    whole = embed_graph(model, g, torch.device("cpu"), max_cells=None)
    tiled = embed_graph(model, g, torch.device("cpu"), max_cells=120)
    assert whole.keys() == tiled.keys()
    for key in whole:
        np.testing.assert_allclose(tiled[key], whole[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_a_too_shallow_halo_would_change_the_embedding(graphs):
    """The halo depth matters: the test above can fail."""
    g = graphs[0]
    torch.manual_seed(0)
    model = TransImg([g.n_genes, 54, 32, 6])
    parts = []
    for tile in tile_sample(g, 120, hops=1):
        out = model(tile.dense_x(), tile.img, tile.prepared())
        parts.append((tile, {"z": out.fused_z.detach().numpy()}))
    whole = model(g.dense_x(), g.img, g.prepared()).fused_z.detach().numpy()
    assert np.abs(stitch(parts, g.n_cells)["z"] - whole).max() > 1e-3


@torch.no_grad()
def test_tile_losses_on_own_cells_add_up_to_the_sample_loss(graphs):
    g = graphs[1].densified()
    torch.manual_seed(1)
    model = TransImg([g.n_genes, 54, 32, 6], fused_img_head=True)
    full = float(gist_loss(model(g.x, g.img, g.prepared()), g.x, g.img))
    total = 0.0
    for tile in tile_sample(g, 100, model.depth):
        out = model(tile.dense_x(), tile.img, tile.prepared())
        own = tile.own
        out = type(out)(*(None if o is None else o[own] for o in out))
        total += float(gist_loss(out, tile.dense_x()[own], tile.img[own])) * int(own.sum())
    assert total / g.n_cells == pytest.approx(full, rel=1e-4)


def test_training_with_tiles_runs_and_records_the_batches(graphs, tmp_path):
    config = TrainConfig(epochs=2, hidden=(32, 6), save_every=0, max_cells_per_batch=150)
    _, losses = train(graphs, config, tmp_path, progress=False)
    record = json.loads((tmp_path / "final_0.json").read_text())
    assert record["data"]["batches"] == sum(-(-g.n_cells // 150) for g in graphs) > len(graphs)
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_stop_reason_is_a_relative_improvement_rule():
    assert stop_reason([5, 4, 3, 2], patience=2, min_delta=0.1) is None
    assert stop_reason([5, 4, 3.9, 3.8], patience=2, min_delta=0.1) is not None  # 3.8 > 0.9 * 4
    assert stop_reason([5, 4, 3.9, 3.8], patience=2, min_delta=0.0) is None
    assert stop_reason([5, 4], patience=None, min_delta=0.0) is None
    assert stop_reason([5, 5, 5], patience=3, min_delta=0.0) is None  # not enough epochs yet


def test_patience_stops_training_and_says_why(graphs, tmp_path):
    config = TrainConfig(epochs=50, hidden=(32, 6), save_every=0, lr=0.0, patience=3, min_delta=0.01)
    _, losses = train(graphs, config, tmp_path, progress=False)
    assert len(losses) == 4  # no improvement possible with lr 0: epochs 2-4 bring none
    record = json.loads((tmp_path / "final_0.json").read_text())
    assert record["epoch"] == 4 and record["stopped"]["epoch"] == 4 and "early stop" in record["stopped"]["reason"]


def test_torchrun_two_gloo_processes_train_identical_weights_that_test_py_loads(tmp_path):
    ckpt, res = tmp_path / "ckpt", tmp_path / "res"
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "train.py"), "--dataset", "demo", "--epochs", "2", "--hidden", "32", "6", "--ensemble", "1",
           "--save_every", "1", "--save_path", str(ckpt), "--no_progress"]
    out = subprocess.run(run, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((ckpt / "final_0.json").read_text())
    assert record["distributed"] == {"world_size": 2, "backend": "gloo", "weights_identical": True}
    assert out.stdout.count("trained 1 model") == 1  # rank 0 alone reports and writes
    out = subprocess.run([sys.executable, str(ROOT / "test.py"), "--dataset", "demo", "--save_path", str(ckpt),
                          "--result_path", str(res), "--no_cluster"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (res / "gist.h5ad").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_and_tiled_embedding_match_the_cpu(graphs, tmp_path):
    config = TrainConfig(epochs=2, hidden=(32, 6), save_every=0, seed=2)
    cpu_model, cpu_losses = train(graphs, config, tmp_path / "cpu", progress=False)
    gpu_model, gpu_losses = train(graphs, TrainConfig(**{**config.__dict__, "device": "cuda"}), tmp_path / "gpu", progress=False)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-3)
    on_gpu = embed_graph(gpu_model, graphs[0], torch.device("cuda"), max_cells=120)
    on_cpu = embed_graph(gpu_model, graphs[0], torch.device("cpu"), max_cells=None)
    np.testing.assert_allclose(on_gpu[LATENT_KEY], on_cpu[LATENT_KEY], rtol=1e-3, atol=1e-4)


def test_tf32_precision_is_plain_fp32_on_the_cpu(graphs, tmp_path):
    config = TrainConfig(epochs=2, hidden=(32, 6), save_every=0, seed=4)
    _, fp32 = train(graphs, config, tmp_path / "a", progress=False)
    _, tf32 = train(graphs, TrainConfig(**{**config.__dict__, "precision": "tf32"}), tmp_path / "b", progress=False)
    assert fp32 == tf32 and torch.get_float32_matmul_precision() == "highest"


def test_halo_reaches_every_neighbour_of_a_high_degree_cell():
    """A hub with 300 neighbours: counting neighbours in int8 would overflow and lose them."""
    from gist.tl.batches import halo

    n = 301
    hub = sp.csr_matrix((np.ones(2 * (n - 1), dtype=np.int32),
                         (np.r_[np.zeros(n - 1, int), np.arange(1, n)], np.r_[np.arange(1, n), np.zeros(n - 1, int)])),
                        shape=(n, n))
    assert halo(hub, np.arange(1, n), hops=1).all()  # every leaf reaches the hub
    assert halo(hub, np.array([1]), hops=2).all()  # leaf -> hub -> every other leaf


def test_a_sample_embedded_first_can_still_be_trained_on(samples, tmp_path):
    """embed_graph() runs under inference_mode; the graph layout it caches on the sample must still
    take part in training afterwards."""
    g = to_graph(samples[1], "embedded-first")
    torch.manual_seed(0)
    embed_graph(TransImg([g.n_genes, 54, 32, 6]), g, torch.device("cpu"))
    _, losses = train([g], TrainConfig(epochs=1, hidden=(32, 6), save_every=0), tmp_path, progress=False)
    assert np.isfinite(losses).all()
