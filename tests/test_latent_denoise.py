"""The latent-kNN denoiser (gist.tl.denoise) and the masked training objective (TrainConfig.mask_fraction)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gist.errors import GistInputError
from gist.tl.denoise import latent_knn_graph, latent_neighbour_mean


def test_knn_operator_averages_each_cell_with_its_nearest_latent_neighbours():
    latent = np.array([[0.0], [0.1], [0.3], [10.0], [10.2], [10.5]], np.float32)
    op = latent_knn_graph(latent, n_neighbors=3).toarray()
    np.testing.assert_allclose(op.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.diag(op), 1 / 3)  # every cell is one of its own neighbours
    assert op[:3, 3:].sum() == 0 and op[3:, :3].sum() == 0  # the two groups never mix
    assert latent_knn_graph(latent, n_neighbors=50).toarray() == pytest.approx(np.full((6, 6), 1 / 6))


def test_knn_operator_keeps_the_cell_itself_among_duplicates():
    latent = np.zeros((5, 2), np.float32)  # all equal: the search may list any of them first
    op = latent_knn_graph(latent, n_neighbors=2).toarray()
    np.testing.assert_allclose(np.diag(op), 0.5)


def test_latent_neighbour_mean_removes_noise_within_groups():
    rng = np.random.default_rng(0)
    group = np.repeat([0, 1], 100)
    latent = np.c_[group * 5.0 + rng.normal(0, 0.1, 200), rng.normal(0, 0.1, 200)]
    truth = np.where(group[:, None] == 0, 1.0, 3.0) * np.ones((1, 8))
    noisy = truth + rng.normal(0, 1.0, truth.shape)
    denoised = latent_neighbour_mean(sp.csr_matrix(noisy), latent, n_neighbors=30)
    assert denoised.dtype == np.float32 and denoised.shape == noisy.shape
    assert np.sqrt(np.mean((denoised - truth) ** 2)) < 0.3 < np.sqrt(np.mean((noisy - truth) ** 2))


def test_latent_neighbour_mean_checks_its_inputs():
    with pytest.raises(GistInputError, match="rows"):
        latent_neighbour_mean(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(GistInputError, match="finite"):
        latent_knn_graph(np.array([[np.nan, 0.0]]))
    with pytest.raises(GistInputError, match="n_neighbors"):
        latent_knn_graph(np.ones((3, 2)), n_neighbors=0)


def test_masked_input_hides_the_chosen_share_and_repeats_with_its_seed():
    from gist.tl.training import masked_input

    x = torch.rand(200, 50) + 0.5  # no zeros of its own
    a = masked_input(x, 0.2, seed=7)
    assert 0.17 < float((a == 0).float().mean()) < 0.23
    assert torch.equal(a[a != 0], x[a != 0])  # the rest is untouched
    assert torch.equal(a, masked_input(x, 0.2, seed=7)) and not torch.equal(a, masked_input(x, 0.2, seed=8))
    assert masked_input(x, 0.0, seed=7) is x
    with pytest.raises(GistInputError, match="mask_fraction"):
        masked_input(x, 1.0, seed=7)


def test_masked_entries_never_reach_the_forward_pass_but_are_scored():
    """With ``mask_fraction`` the model's input is zero at the hidden entries, and the loss compares
    its output with the unmasked expression (so hidden entries are predicted, not copied)."""
    from gist.demo import make_demo
    from gist.pp.graph import Cal_Spatial_Net
    from gist.tl._inputs import to_graph
    from gist.tl.training import _loss_terms, build_model, masked_input, recipe_config

    adata = Cal_Spatial_Net(make_demo(n_fovs=1, seed=0, image_size=256, n_genes=40, markers_per_type=4)[0], rad_cutoff=80, verbose=False)
    graph = to_graph(adata, "fov")
    config = recipe_config("gist", task="domains", mask_fraction=0.3, ensemble=1, use_img=False, n_pcs=0, neighbour_input=0)
    model = build_model([graph], config)
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x, img, edges):
            seen.append(x.detach().clone())
            return model(x, img, edges)

    x = graph.dense_x(torch.device("cpu"))
    recon, _ = _loss_terms(Recorder(), model, graph, config, torch.device("cpu"), epoch=3, index=0)
    expected = masked_input(x, 0.3, config.seed * 1_000_003 + 3 * 1_009 + 0 + 1)
    assert torch.equal(seen[0], expected)
    hidden = (expected == 0) & (x != 0)
    assert hidden.sum() > 0 and (seen[0][hidden] == 0).all()
    with torch.no_grad():
        out = model(expected, None, graph.prepared())
        assert float(recon) == pytest.approx(float(torch.nn.functional.mse_loss(out.gene_recon, x)), rel=1e-5)


def test_inference_writes_the_chosen_denoiser(tmp_path):
    from gist.demo import make_demo
    from gist.pp.graph import Cal_Spatial_Net
    from gist.pp.stats import add_patch_stats
    from gist.tl._inputs import log_normalize, to_graph
    from gist.tl.inference import infer
    from gist.tl.training import recipe_config, train_ensemble

    adatas = [Cal_Spatial_Net(add_patch_stats(a), rad_cutoff=80, verbose=False) for a in make_demo(n_fovs=2, seed=4, image_size=448)]
    graphs = [to_graph(a, str(i)) for i, a in enumerate(adatas)]
    models, _ = train_ensemble(graphs, recipe_config("gist", epochs=2, ensemble=2, hidden=(32, 6), seed=1), tmp_path,
                               progress=False)
    cpu = torch.device("cpu")
    recon = infer(adatas, models, cpu)
    assert recon.uns["gist"]["denoiser"] == "reconstruction"
    np.testing.assert_array_equal(recon.layers["gist_denoised"], recon.layers["recon"])
    knn = infer(adatas, models, cpu, denoiser="latent_knn")
    assert knn.uns["gist"]["denoiser"] == "latent_knn"
    np.testing.assert_allclose(knn.layers["recon"], recon.layers["recon"], atol=1e-5)  # the model's own output stays
    # the expression the model read, averaged over each cell's 30 nearest cells of the fused latent (across samples)
    expression = np.vstack([log_normalize(a.X) for a in adatas])
    np.testing.assert_allclose(knn.layers["gist_denoised"], latent_neighbour_mean(expression, knn.obsm["X_gist"], "auto"), atol=1e-5)
    assert not np.allclose(knn.layers["gist_denoised"], knn.layers["recon"])
    diffused = infer(adatas, models, cpu, denoiser="latent_diffusion")
    from gist.tl.denoise import latent_diffusion

    np.testing.assert_allclose(diffused.layers["gist_denoised"], latent_diffusion(expression, diffused.obsm["X_gist"]),
                               atol=1e-5)
    with pytest.raises(GistInputError, match="unknown denoiser 'magic'"):
        infer(adatas, models, cpu, denoiser="magic")


def test_calibration_picks_the_neighbour_count_that_matches_the_group_size():
    """Groups of 20 cells share a profile: averaging over 20 latent neighbours removes the noise,
    5 keeps much of it, 60 mixes groups; the hidden-entry RMSE must pick 20 (and 'auto' uses it)."""
    from gist.tl.denoise import calibrate_neighbors

    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(15), 20)
    profiles = rng.gamma(2.0, 1.0, (15, 60))
    counts = rng.poisson(profiles[group])
    expression = np.log1p(counts).astype(np.float32)
    latent = np.c_[group * 10.0, np.zeros(300)] + rng.normal(0, 0.1, (300, 2))
    k, errors = calibrate_neighbors(expression, latent, candidates=(5, 20, 60))
    assert k == 20 and set(errors) == {5, 20, 60} and errors[20] < min(errors[5], errors[60])
    np.testing.assert_allclose(latent_neighbour_mean(expression, latent, "auto"),
                               latent_neighbour_mean(expression, latent, 20))  # 20 is also a default candidate
    with pytest.raises(GistInputError, match="'auto'"):
        latent_neighbour_mean(expression, latent, "many")


def test_latent_diffusion_by_hand_and_on_groups():
    from gist.tl.denoise import latent_diffusion

    # three cells on a line, 2 neighbours each (itself and the nearest): 0-1, 1-0 (or 1-2), 2-1
    latent = np.array([[0.0], [1.0], [2.1]], np.float32)
    x = np.array([[3.0], [0.0], [6.0]], np.float32)
    knn = latent_knn_graph(latent, 2).toarray()  # rows: 0 -> {0, 1}, 1 -> {1, 0}, 2 -> {2, 1}
    sym = knn + knn.T
    op = sym / sym.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(latent_diffusion(x, latent, n_neighbors=2, steps=2), op @ op @ x, rtol=1e-6)
    # a diffusion never leaves a group of cells the latent keeps apart
    group = np.repeat([0, 1], 50)
    latent = np.c_[group * 100.0, np.arange(100) % 50]
    values = np.where(group[:, None] == 0, 1.0, 5.0) + np.random.default_rng(0).normal(0, 1, (100, 3))
    out = latent_diffusion(sp.csr_matrix(values), latent, n_neighbors=10, steps=3)
    assert out[group == 0].max() < 3 < out[group == 1].min()
    with pytest.raises(GistInputError, match="steps"):
        latent_diffusion(values, latent, steps=0)
