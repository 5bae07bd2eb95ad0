import json
from dataclasses import replace
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest
import torch

from conftest import ROOT
from gist.pp.graph import Cal_Spatial_Net
from gist.tl._inputs import to_graph
from gist.errors import GistInputError
from gist.pp.stats import add_patch_stats
from gist.tl.checkpoints import latest_epoch_checkpoint, load_checkpoint
from gist.tl.model import TransImg
from gist.tl.training import TrainConfig, train
from gist.utils import atomic_path

SMALL = dict(hidden=(64, 8), save_every=3, seed=7)


@pytest.fixture(scope="module")
def graphs():
    from gist.demo import make_demo

    adatas = [Cal_Spatial_Net(add_patch_stats(a), rad_cutoff=80, verbose=False) for a in make_demo(n_fovs=2, seed=11, image_size=448)]
    return [to_graph(a, str(i)) for i, a in enumerate(adatas)]


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_loss_decreases_on_demo(graphs, tmp_path):
    _, losses = train(graphs, TrainConfig(epochs=15, hidden=(512, 30), save_every=0), tmp_path, progress=False)
    assert len(losses) == 15 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.9 * losses[0]
    assert (tmp_path / "final_0.pth").is_file() and (tmp_path / "loss_0.csv").is_file() and (tmp_path / "loss_0.png").is_file()


def test_same_seed_gives_identical_weights(graphs, tmp_path):
    a, losses_a = train(graphs, TrainConfig(epochs=4, **SMALL), tmp_path / "a", progress=False)
    b, losses_b = train(graphs, TrainConfig(epochs=4, **SMALL), tmp_path / "b", progress=False)
    c, _ = train(graphs, TrainConfig(epochs=4, **(SMALL | {"seed": 8})), tmp_path / "c", progress=False)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert losses_a == losses_b
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_equals_uninterrupted(graphs, tmp_path):
    full, losses_full = train(graphs, TrainConfig(epochs=6, **SMALL), tmp_path / "full", progress=False)
    assert not (tmp_path / "full" / "train_state_0.pt").exists()  # a clean finish removes the resume state
    # a finished 3-epoch run extended to 6 (keep_state keeps its resume state)
    train(graphs, TrainConfig(epochs=3, keep_state=True, **SMALL), tmp_path / "cut", progress=False)
    assert latest_epoch_checkpoint(tmp_path / "cut")[0] == 3 and (tmp_path / "cut" / "train_state_0.pt").is_file()
    resumed, losses_resumed = train(graphs, TrainConfig(epochs=6, **SMALL), tmp_path / "cut", resume=True, progress=False)
    assert losses_resumed == losses_full
    wf, wr = _weights(full), _weights(resumed)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert latest_epoch_checkpoint(tmp_path / "cut")[0] == 6


def test_resume_skips_a_member_that_finished(graphs, tmp_path):
    first, losses = train(graphs, TrainConfig(epochs=4, **SMALL), tmp_path, progress=False)
    weights = tmp_path / "final_0.pth"
    stamp = weights.stat().st_mtime_ns
    again, losses_again = train(graphs, TrainConfig(epochs=4, **SMALL), tmp_path, resume=True, progress=False)
    assert weights.stat().st_mtime_ns == stamp and losses_again == losses  # loaded, not retrained
    assert all(torch.equal(a, b) for a, b in zip(_weights(first).values(), _weights(again).values()))
    # a different configuration is trained, not reused
    _, other = train(graphs, TrainConfig(epochs=5, **SMALL), tmp_path, resume=True, progress=False)
    assert len(other) == 5


def test_checkpoints_are_plain_state_dicts_with_records(graphs, tmp_path):
    train(graphs, TrainConfig(epochs=3, **SMALL), tmp_path, progress=False)
    state = torch.load(tmp_path / "final_3_0.pth", weights_only=True)
    assert set(state) == set(TransImg([300, 54, 64, 8]).state_dict())
    record = json.loads((tmp_path / "final_0.json").read_text())
    assert record["seed"] == 7 and record["data"]["genes"] == 300 and record["data"]["img_dim"] == 54
    assert record["versions"]["torch"] == torch.__version__ and record["epoch"] == 3


def test_checkpoint_dimension_mismatch_names_both_shapes(graphs, tmp_path):
    train(graphs, TrainConfig(epochs=1, **SMALL), tmp_path, progress=False)
    assert isinstance(load_checkpoint(tmp_path / "final_0.pth", 300, 54), TransImg)
    with pytest.raises(GistInputError, match=r"expects 300 genes and 54-d image features.*has 960 genes and 1024-d"):
        load_checkpoint(tmp_path / "final_0.pth", 960, 1024)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(GistInputError, match="junk.pth"):
        load_checkpoint(tmp_path / "junk.pth", 300, 54)


def test_atomic_path_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def _run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_cli_train_then_test_writes_results(tmp_path):
    ckpt, res = tmp_path / "ckpt", tmp_path / "res"
    out = _run("train.py", "--dataset", "demo", "--test_only", "0", "--epochs", "2", "--save_every", "1", "--seed", "1",
               "--hidden", "64", "8", "--ensemble", "2", "--save_path", str(ckpt), "--no_progress")
    assert out.returncode == 0, out.stderr
    assert {p.name for p in ckpt.glob("final_*.pth")} == {"final_1_0.pth", "final_2_0.pth", "final_0.pth",
                                                          "final_1_1.pth", "final_2_1.pth", "final_1.pth"}
    record = json.loads((ckpt / "final_1.json").read_text())
    assert record["recipe"] == "gist" and record["ensemble"] == {"size": 2, "members": [0, 1]}
    assert record["seed"] == 2 and record["config"]["fused_img_head"] and len(record["config"]["extra"]["genes"]) == 300
    assert "c4_img.lin_key.weight" in torch.load(ckpt / "final_1.pth", weights_only=True)
    out = _run("test.py", "--dataset", "demo", "--save_path", str(ckpt), "--result_path", str(res), "--no_cluster")
    assert out.returncode == 0, out.stderr
    assert "ensemble of 2" in out.stdout
    result = ad.read_h5ad(res / "gist.h5ad")
    assert result.uns["gist"]["ensemble_size"] == 2 and result.uns["gist"]["recipe"] == "gist"
    assert result.obsm["pred"].shape == (result.n_obs, 8)
    assert result.obsm["gene_pred"].shape == result.obsm["img_pred"].shape == (result.n_obs, 8)
    assert result.layers["recon"].shape == result.shape and result.layers["recon"].min() >= 0
    assert {"cell_type", "merge_cell_type", "sample", "fov"} <= set(result.obs.columns)
    assert len(result.uns["spatial"]) == 4 and result.uns["gist"]["select"] == "final"
    assert result.obs["sample"].nunique() == 4
    # domains (mclust) read the latent by default, the denoised expression's components when asked
    for choice, rep in (("auto", "X_gist"), ("denoised", "X_gist_denoised_pca"), ("latent", "X_gist")):
        out = _run("test.py", "--dataset", "demo", "--save_path", str(ckpt), "--result_path", str(res / choice),
                   "--cluster", "mclust", "--ncluster", "4", "--cluster_rep", choice)
        assert out.returncode == 0, out.stderr
        assert json.loads((res / choice / "metrics.json").read_text())["use_rep"] == rep


def test_cli_paper_recipe_trains_one_original_layout_model(tmp_path):
    ckpt = tmp_path / "ckpt"
    out = _run("train.py", "--dataset", "demo", "--recipe", "paper", "--epochs", "1", "--hidden", "64", "8",
               "--save_path", str(ckpt), "--no_progress")
    assert out.returncode == 0, out.stderr
    assert {p.name for p in ckpt.glob("final_*.pth")} == {"final_0.pth"}
    state = torch.load(ckpt / "final_0.pth", weights_only=True)
    assert set(state) == set(TransImg([300, 54, 64, 8]).state_dict())  # exactly the original's parameters
    record = json.loads((ckpt / "final_0.json").read_text())
    assert record["recipe"] == "paper" and record["ensemble"]["size"] == 1


def test_cli_standardize_img_off_keeps_the_image_in_its_own_units(tmp_path):
    ckpt = tmp_path / "ckpt"
    out = _run("train.py", "--dataset", "demo", "--epochs", "1", "--hidden", "32", "6", "--ensemble", "1",
               "--standardize_img", "0", "--save_path", str(ckpt), "--no_progress")
    assert out.returncode == 0, out.stderr
    state = torch.load(ckpt / "final_0.pth", weights_only=True)
    assert "c4_img.lin_key.weight" in state  # still the gist recipe's fused image head
    assert "img_center" not in state and "img_scale" not in state
    record = json.loads((ckpt / "final_0.json").read_text())
    assert record["config"]["standardize_img"] is False and record["config"]["fused_img_head"] is True
    default = _run("train.py", "--help")
    assert "--standardize_img" in default.stdout


def test_cli_domains_train_without_the_image_unless_asked(tmp_path):
    res = tmp_path / "res"
    runs, said = {"default": [], "asked": ["--use_img", "1"]}, {}
    for name, extra in runs.items():
        out = _run("train.py", "--dataset", "demo", "--task", "domains", "--epochs", "1", "--hidden", "32", "6",
                   "--ensemble", "1", *extra, "--save_path", str(tmp_path / name), "--no_progress")
        assert out.returncode == 0, out.stderr
        state = torch.load(tmp_path / name / "final_0.pth", weights_only=True)
        assert ("c4_img.lin_key.weight" in state) == (name == "asked")
        assert json.loads((tmp_path / name / "final_0.json").read_text())["config"]["use_img"] == (name == "asked")
        said[name] = "use_img is off" in out.stdout
    assert said == {"default": True, "asked": False}
    # test.py embeds the image-bearing demo with the image-less checkpoint
    out = _run("test.py", "--dataset", "demo", "--save_path", str(tmp_path / "default"), "--result_path", str(res), "--no_cluster")
    assert out.returncode == 0, out.stderr
    assert "trained without the image" in out.stdout
    assert ad.read_h5ad(res / "gist.h5ad").uns["gist"]["image_branch"] is False


@pytest.mark.parametrize("hops, n_pcs", [("1", "8"), ("4", "0")])
def test_cli_hops_and_n_pcs_set_the_layout_a_checkpoint_carries(tmp_path, hops, n_pcs):
    ckpt, res = tmp_path / "ckpt", tmp_path / "res"
    out = _run("train.py", "--dataset", "demo", "--epochs", "1", "--hidden", "32", "6", "--ensemble", "1",
               "--hops", hops, "--n_pcs", n_pcs, "--save_path", str(ckpt), "--no_progress")
    assert out.returncode == 0, out.stderr
    state = torch.load(ckpt / "final_0.pth", weights_only=True)
    config = json.loads((ckpt / "final_0.json").read_text())["config"]
    if hops == "4":  # the original's spelling: every layer passes messages, genes in, no extra buffers
        assert config["hops"] is None and config["n_pcs"] is None
        assert "message_hops" not in state and "pca_components" not in state
    else:
        assert config["hops"] == 1 and config["n_pcs"] == 8
        assert int(state["message_hops"]) == 1 and tuple(state["pca_components"].shape) == (8, 300)
    out = _run("test.py", "--dataset", "demo", "--save_path", str(ckpt), "--result_path", str(res), "--no_cluster")
    assert out.returncode == 0, out.stderr
    result = ad.read_h5ad(res / "gist.h5ad")
    assert result.layers["recon"].shape == result.shape  # denoised genes either way


def test_cli_loads_an_original_layout_checkpoint_and_rejects_a_mismatch(tmp_path):
    torch.manual_seed(0)
    original = {k: torch.randn_like(v) * 0.01 for k, v in TransImg([300, 54, 512, 30]).state_dict().items()}
    torch.save(original, tmp_path / "original.pth")
    out = _run("test.py", "--dataset", "demo", "--pretrain", str(tmp_path / "original.pth"), "--result_path", str(tmp_path / "r"),
               "--no_cluster")
    assert out.returncode == 0, out.stderr
    torch.save({k: torch.randn_like(v) for k, v in TransImg([960, 1024, 512, 30]).state_dict().items()}, tmp_path / "lung.pth")
    out = _run("test.py", "--dataset", "demo", "--pretrain", str(tmp_path / "lung.pth"), "--result_path", str(tmp_path / "r2"))
    assert out.returncode == 2 and "expects 960 genes and 1024-d image features" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "r2" / "gist.h5ad").exists()


def test_resume_from_weights_only_checkpoint_warns(graphs, tmp_path):
    train(graphs, TrainConfig(epochs=3, **SMALL), tmp_path, progress=False)
    assert not (tmp_path / "train_state_0.pt").exists()  # removed on a clean finish, as with the original's files
    with pytest.warns(UserWarning, match="optimiser and shuffling start afresh"):
        model, losses = train(graphs, TrainConfig(epochs=4, **SMALL), tmp_path, resume=True, progress=False)
    assert len(losses) == 4 and np.isnan(losses[:3]).all() and np.isfinite(losses[3])


def test_gene_branch_alone_without_image_features(graphs, tmp_path):
    from gist.tl._inputs import SampleGraph
    from gist.tl.inference import infer

    no_image = [SampleGraph(g.name, g.x, g.img[:, :0], g.edge_index) for g in graphs]
    model, losses = train(no_image, TrainConfig(epochs=3, **SMALL), tmp_path, progress=False)
    assert not model.has_image and not any(k.startswith(("imgconv", "neck", "c3", "c4")) for k in model.state_dict())
    assert losses[-1] < losses[0]
    loaded = load_checkpoint(tmp_path / "final_0.pth", 300, 0)
    assert not loaded.has_image
    from gist.demo import make_demo

    adatas = [Cal_Spatial_Net(a, rad_cutoff=80, verbose=False) for a in make_demo(n_fovs=2, seed=11, image_size=448)]
    result = infer(adatas, loaded, torch.device("cpu"))
    assert "img_pred" not in result.obsm and result.obsm["pred"].shape == (result.n_obs, 8)
    assert result.uns["gist"]["image_branch"] is False or result.uns["gist"]["image_branch"] == 0


def test_paper_recipe_is_the_original_unchanged(graphs, tmp_path):
    """The paper recipe pins the original: its hyper-parameters, one model, the original parameter
    set (no fused image head, no image scaling buffers) and the original loss."""
    from gist.tl.model import gist_loss
    from gist.tl.recipes import RECIPES
    from gist.tl.training import recipe_config

    config = recipe_config("paper")
    assert RECIPES["paper"].settings == {}
    assert (config.epochs, config.lr, config.weight_decay, config.gradient_clipping, config.hidden, config.ensemble) == \
        (1000, 1e-3, 1e-4, 5.0, (512, 30), 1)
    assert not config.fused_img_head and not config.standardize_img and not config.use_img_loss
    model, losses = train(graphs, recipe_config("paper", epochs=1, hidden=(64, 8), save_every=0), tmp_path, progress=False)
    assert set(model.state_dict()) == set(TransImg([300, 54, 64, 8]).state_dict())
    g = graphs[0].densified()
    out = model(g.x, g.img, g.edge_index)
    manual = 0.1 * ((out.gene_recon - g.x) ** 2).mean() + 0.1 * ((out.img_recon - g.x) ** 2).mean() + \
        ((out.fused_recon - g.x) ** 2).mean()
    assert torch.allclose(gist_loss(out, g.x, g.img), manual)


def test_gist_recipe_trains_an_ensemble_with_its_extensions(graphs, tmp_path):
    from gist.tl.inference import infer
    from gist.tl.training import recipe_config, train_ensemble

    config = recipe_config("gist", epochs=2, ensemble=3, hidden=(32, 6), save_every=0, seed=5)
    models, curves = train_ensemble(graphs, config, tmp_path, progress=False)
    assert len(models) == 3 and [len(c) for c in curves] == [2, 2, 2]
    assert {p.name for p in tmp_path.glob("final_?.pth")} == {"final_0.pth", "final_1.pth", "final_2.pth"}
    assert all(m.fused_img_head and m.standardize_img for m in models)
    assert not torch.equal(models[0].conv1.lin_key.weight, models[1].conv1.lin_key.weight)  # seeds 5, 6, 7
    records = [json.loads((tmp_path / f"final_{k}.json").read_text()) for k in range(3)]
    assert [r["seed"] for r in records] == [5, 6, 7] and all(r["ensemble"]["members"] == [0, 1, 2] for r in records)
    from gist.demo import make_demo

    adatas = [Cal_Spatial_Net(add_patch_stats(a), rad_cutoff=80, verbose=False) for a in make_demo(n_fovs=2, seed=11, image_size=448)]
    result = infer(adatas, models, torch.device("cpu"))
    assert result.obsm["pred"].shape == (result.n_obs, 6) and result.uns["gist"]["ensemble_size"] == 3
    single = infer(adatas, models[0], torch.device("cpu"))
    assert not np.allclose(result.obsm["pred"], single.obsm["pred"])
    # on request, every member's own fused latent side by side, from the same forward passes
    assert "X_gist_members" not in result.obsm
    kept = infer(adatas, models, torch.device("cpu"), denoise=False, members=True)
    assert kept.obsm["X_gist_members"].shape == (result.n_obs, 3 * 6) and "pred" in kept.obsm
    for k, m in enumerate(models):
        np.testing.assert_allclose(kept.obsm["X_gist_members"][:, 6 * k:6 * (k + 1)],
                                   infer(adatas, m, torch.device("cpu"), denoise=False).obsm["X_gist"], atol=1e-5)
    np.testing.assert_allclose(kept.obsm["X_gist"], result.obsm["X_gist"], atol=1e-4)
    # the consensus of one model's latent with itself spans the same space as that latent
    from gist.tl.inference import consensus_latent

    z = single.obsm["pred"]
    both = consensus_latent([z, z], 6)
    coef, *_ = np.linalg.lstsq(np.c_[z, np.ones(len(z))], both, rcond=None)
    assert np.allclose(np.c_[z, np.ones(len(z))] @ coef, both, atol=1e-3)


def test_component_input_trains_on_components_and_denoises_genes(graphs, tmp_path):
    from gist.tl.inference import embed_graph

    model, losses = train(graphs, TrainConfig(epochs=2, hidden=(32, 6), n_pcs=12, hops=1, save_every=0, seed=2),
                          tmp_path, progress=False)
    assert model.conv1.in_channels == 12 and model.c4.out_channels == 12 and model.depth == 1
    # the axes come from the training cells: their components are centred
    x = torch.cat([g.dense_x() for g in graphs])
    torch.testing.assert_close(model.project(x).mean(0), torch.zeros(12), rtol=0, atol=1e-3)
    out = embed_graph(model, graphs[0], torch.device("cpu"))
    assert out["gist_denoised"].shape == (graphs[0].n_cells, graphs[0].n_genes) and (out["gist_denoised"] >= 0).all()
    record = json.loads((tmp_path / "final_0.json").read_text())
    assert record["config"]["n_pcs"] == 12 and record["config"]["hops"] == 1


def test_neighbour_summary_on_a_lattice_equals_a_hand_computation():
    from gist.tl.model import neighbour_summary
    from gist.tl.nn import Graph

    # a path 0 - 1 - 2 (both directions) and a lone cell 3
    edges = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    z = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    got = neighbour_summary(z, Graph(edges, 4))
    mean_of_1 = torch.tensor([1.5, 3.0])  # cell 1 reads cells 0 and 2
    expected = torch.sigmoid(torch.stack([torch.tensor([1.0, 0.0]), mean_of_1 / mean_of_1.norm(),
                                          torch.tensor([1.0, 0.0]), torch.zeros(2)]))
    torch.testing.assert_close(got, expected)


def test_contrast_loss_is_2ln2_for_a_blind_head_and_falls_for_a_separating_one():
    from gist.tl.model import contrast_loss

    model = TransImg([5, 0, 8, 2], contrast=True)
    edges = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    real, corrupt = torch.tensor([[1.0, 0.0]] * 3), torch.tensor([[-1.0, 0.0]] * 3)
    with torch.no_grad():
        model.contrast_head.weight.zero_()
        model.contrast_head.bias.zero_()
    blind = contrast_loss(model, real, corrupt, edges)
    torch.testing.assert_close(blind, torch.tensor(2 * np.log(2), dtype=torch.float32))
    with torch.no_grad():  # scores z_0 (s_0 - s_1): real latents agree with the real summary, corrupted with theirs
        model.contrast_head.weight[0] = 20 * torch.tensor([[1.0, -1.0], [0.0, 0.0]])
        assert float(contrast_loss(model, real, corrupt, edges)) < 0.1 * float(blind)


def test_contrast_trains_with_a_balanced_weight_resumes_exactly_and_loads_strictly(graphs, tmp_path):
    from gist.tl.model import dims_from_state_dict
    from gist.tl.training import _loss_terms, balanced_contrast_weight

    config = TrainConfig(epochs=4, hidden=(32, 6), n_pcs=12, hops=1, save_every=0, seed=3, contrast=True)
    model, losses = train(graphs, config, tmp_path / "full", progress=False)
    weight = float(model.contrast_weight)
    # the rule: the untrained model's reconstruction loss equals its weighted contrastive loss
    fresh = TransImg([graphs[0].n_genes, graphs[0].img.shape[1], 32, 6], contrast=True, n_pcs=12, hops=1)
    fresh.set_pca(torch.cat([g.dense_x() for g in graphs]))
    w = balanced_contrast_weight(fresh, graphs, config, torch.device("cpu"))
    terms = [_loss_terms(fresh, fresh, g, config, torch.device("cpu"), 0, i) for i, g in enumerate(graphs)]
    recon = sum(float(r) for r, _ in terms)
    both = sum(float(r + w * c) for r, c in terms)
    assert w > 0 and np.isclose(both, 2 * recon, rtol=1e-5)
    assert weight > 0 and all(np.isfinite(losses))
    # resumed from epoch 2 equals the uninterrupted run (the shuffles are seeded per epoch and batch)
    train(graphs, replace(config, epochs=2, keep_state=True), tmp_path / "cut", progress=False)
    resumed, resumed_losses = train(graphs, config, tmp_path / "cut", resume=True, progress=False)
    assert resumed_losses == losses and float(resumed.contrast_weight) == weight
    state = load_checkpoint(tmp_path / "full" / "final_0.pth", graphs[0].n_genes, graphs[0].img.shape[1]).state_dict()
    assert dims_from_state_dict(state)[1]["contrast"] is True
    assert all(torch.equal(state[k], model.state_dict()[k]) for k in state)



def test_neighbour_input_reads_own_and_neighbour_mean_components_and_reconstructs_own(graphs, tmp_path):
    from gist.tl.model import dims_from_state_dict
    from gist.tl.nn import Graph

    model = TransImg([6, 0, 8, 3], n_pcs=2, neighbour_input=0.2)
    with torch.no_grad():
        model.pca_components.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0]]))
    x = torch.tensor([[1.0, 2, 0, 0, 0, 0], [3.0, 4, 0, 0, 0, 0], [5.0, 8, 0, 0, 0, 0]])
    edges = torch.tensor([[0, 2, 1], [1, 1, 0]])  # cell 1 reads 0 and 2, cell 0 reads 1, cell 2 none
    got = model.encoder_input(x, Graph(edges, 3))
    means = torch.tensor([[3.0, 4.0], [3.0, 5.0], [0.0, 0.0]])
    torch.testing.assert_close(got, torch.cat([np.sqrt(0.8) * x[:, :2], np.sqrt(0.2) * means], 1).float())
    assert model.conv1.in_channels == 4 and model.conv4.out_channels == 2 and model.depth == 5
    with pytest.raises(ValueError, match="needs n_pcs"):
        TransImg([6, 0, 8, 3], neighbour_input=0.2)
    trained, losses = train(graphs, TrainConfig(epochs=2, hidden=(32, 6), n_pcs=12, hops=1, save_every=0, seed=2,
                                                 neighbour_input=0.2), tmp_path, progress=False)
    assert all(np.isfinite(losses)) and trained.c4.out_channels == 12
    state = load_checkpoint(tmp_path / "final_0.pth", graphs[0].n_genes, graphs[0].img.shape[1]).state_dict()
    dims, options = dims_from_state_dict(state)
    assert np.isclose(options["neighbour_input"], 0.2) and options["n_pcs"] == 12 and not options["use_img_loss"]


def test_gist_recipe_task_settings_are_the_benchmark_winners():
    from gist.tl.recipes import get_recipe
    from gist.tl.training import recipe_config

    cells, domains = recipe_config("gist", "cell_types"), recipe_config("gist", "domains")
    assert (cells.hops, cells.hidden, cells.n_pcs) == (2, (128, 30), 50)
    assert (domains.hops, domains.hidden, domains.n_pcs) == (1, (128, 50), 50)  # BENCHMARKS.md, issue 21: gist+z50
    assert cells.use_img and not domains.use_img  # domains: no image branch (issue 21, 2026-12-06)
    assert cells.neighbour_input is None and domains.neighbour_input == 0.2  # own | neighbour components (2026-12-06, night)
    assert recipe_config("gist", "domains", neighbour_input=0).neighbour_input is None  # 0: own components alone
    assert recipe_config("gist", "domains", n_pcs=0).neighbour_input is None  # genes in: the recipe's lambda drops
    with pytest.raises(GistInputError, match="needs principal components"):
        recipe_config("gist", "domains", n_pcs=0, neighbour_input=0.5)
    assert get_recipe("gist").domain_rep == "latent" and get_recipe("gist").smooth_domains
    assert recipe_config("gist", "domains", hidden=(64, 8)).hidden == (64, 8)  # an explicit value wins
    paper = recipe_config("paper", "domains")
    assert (paper.hops, paper.hidden, paper.n_pcs, paper.ensemble) == (None, (512, 30), None, 1) and paper.use_img


def test_use_img_off_trains_the_gene_branch_alone_and_embeds_data_with_an_image(graphs, tmp_path):
    from gist.tl.inference import infer

    assert graphs[0].img.shape[1] > 0
    model, _ = train(graphs, TrainConfig(epochs=2, use_img=False, **SMALL), tmp_path, progress=False)
    assert not model.has_image and model.hidden_dims[1] == 0
    # the same weights as training on the samples stripped of their image features
    from gist.tl.training import without_image

    bare, _ = train([without_image(g) for g in graphs], TrainConfig(epochs=2, **SMALL), tmp_path / "bare", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), bare.state_dict().values()))
    # the checkpoint loads against the data's image width (ignored), and inference runs on data with images
    loaded = load_checkpoint(tmp_path / "final_0.pth", graphs[0].n_genes, graphs[0].img.shape[1])
    from gist.demo import make_demo

    adatas = [Cal_Spatial_Net(add_patch_stats(a), rad_cutoff=80, verbose=False) for a in make_demo(n_fovs=2, seed=11, image_size=448)]
    result = infer(adatas, loaded, torch.device("cpu"))
    assert result.uns["gist"]["image_branch"] is False and "X_gist_img" not in result.obsm
    train(graphs, TrainConfig(epochs=1, **SMALL), tmp_path / "img", progress=False)
    with pytest.raises(GistInputError, match="expects"):  # an image model still needs the image
        load_checkpoint(tmp_path / "img" / "final_0.pth", graphs[0].n_genes, 0)
