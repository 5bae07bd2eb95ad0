"""The scverse-style API on one AnnData: gist.io -> gist.pp -> gist.tl -> gist.pl."""

import importlib

import numpy as np
import pytest

import gist
from gist.keys import CLUSTER_KEY, DENOISED_LAYER, GENE_LATENT_KEY, IMG_KEY, IMG_LATENT_KEY, LATENT_KEY, MATCHED_KEY
from gist.errors import GistInputError


@pytest.fixture(scope="module")
def adata():
    from gist.demo import make_demo
    from gist.io.samples import join_samples

    joined = join_samples(make_demo(n_fovs=2, seed=6, image_size=448))
    # cells of the two samples interleaved: every step must keep the row order
    order = np.random.default_rng(0).permutation(joined.n_obs)
    return joined[order].copy()


def test_the_whole_path_on_one_anndata(adata, tmp_path):
    gist.pp.spatial_graph(adata, verbose=False)
    assert gist.pp.image_features(adata, extractor="stats") is None  # in place, as scanpy
    features = adata.obsm[IMG_KEY]
    assert features.shape == (adata.n_obs, 54) and features.dtype == np.float32
    # features land on their own cells: recompute one sample alone and compare
    from gist.pp.stats import patch_stats
    from gist.io.image import get_image, image_coordinates

    first = adata.obs["sample"].iloc[0]
    mask = (adata.obs["sample"] == first).to_numpy()
    alone = adata[mask]
    np.testing.assert_allclose(features[mask], patch_stats(get_image(alone, first), image_coordinates(alone, first), 240),
                               rtol=1e-5)
    marked = gist.pp.select_genes(adata, n_top_genes=120, verbose=False, copy=True)
    assert marked.var["highly_variable"].sum() == 120 and marked.uns["gist"]["genes"]["n_genes"] == 120
    assert "highly_variable" not in adata.var  # copy=True
    # the model reads only the marked genes: unmarked ones are NaN in the denoised layer
    gist.tl.fit(marked, epochs=1, ensemble=1, hidden=(32, 6), seed=1, progress=False)
    modelled = marked.var["highly_variable"].to_numpy()
    assert np.isfinite(marked.layers[DENOISED_LAYER][:, modelled]).all()
    assert np.isnan(marked.layers[DENOISED_LAYER][:, ~modelled]).all()
    gist.tl.cluster(marked, n_clusters=4, method="mclust", use_rep="denoised")
    assert marked.obsm["X_gist_denoised_pca"].shape == (marked.n_obs, 20)  # PCA of the modelled genes
    genes = adata[:, marked.var["highly_variable"].to_numpy()].copy()
    models = gist.tl.fit(genes, epochs=2, ensemble=2, hidden=(32, 6), seed=1, progress=False)
    assert len(models) == 2
    for key in (LATENT_KEY, GENE_LATENT_KEY, IMG_LATENT_KEY):
        assert genes.obsm[key].shape == (genes.n_obs, 6)
    assert genes.layers[DENOISED_LAYER].shape == genes.shape and genes.layers[DENOISED_LAYER].min() >= 0
    assert genes.uns["gist"]["recipe"] == "gist" and genes.uns["gist"]["ensemble_size"] == 2
    # embed of one sample alone gives the same rows as within the whole (per-sample graphs)
    part = genes[mask].copy()
    single = gist.tl.embed(part, models[0])
    whole = gist.tl.embed(genes.copy(), models[0])
    np.testing.assert_allclose(single.obsm[LATENT_KEY], whole.obsm[LATENT_KEY][mask], rtol=1e-4, atol=1e-5)
    assert gist.tl.cluster(genes, n_clusters=8, method="leiden") is None
    run = genes.uns[CLUSTER_KEY]["params"]
    assert run["n_clusters"] == 8 and not run["smoothed"] and genes.obs[CLUSTER_KEY].nunique() == 8
    assert run["use_rep"] == LATENT_KEY  # cell types read the latent
    # right after clustering (before scoring) the map draws the clusters
    drawn = gist.pl.spatial(genes)
    legend = {text.get_text() for text in drawn.legends[0].get_texts()}
    assert legend == set(genes.obs[CLUSTER_KEY].astype(str)) and all("GIST" in ax.get_title() for ax in drawn.axes if ax.collections)
    copied = gist.tl.cluster(genes, n_clusters=4, method="mclust", copy=True)
    domains = copied.uns[CLUSTER_KEY]["params"]
    assert genes.uns[CLUSTER_KEY]["params"]["method"] == "leiden"  # copy=True left genes as it was
    gist.tl.cluster(genes, n_clusters=4, method="mclust")
    assert domains["smoothed"]  # domains: neighbourhood average
    assert domains["use_rep"] == LATENT_KEY  # ... of the latent, the best domain row of BENCHMARKS.md
    # or of the denoised expression's 20 principal components, when asked for
    gist.tl.cluster(genes, n_clusters=4, method="mclust", use_rep="denoised")
    assert genes.uns[CLUSTER_KEY]["params"]["use_rep"] == "X_gist_denoised_pca"
    assert genes.obsm["X_gist_denoised_pca"].shape == (genes.n_obs, 20)
    denoised = np.asarray(genes.layers[DENOISED_LAYER], dtype=np.float64)
    top = np.linalg.svd(denoised - denoised.mean(0), compute_uv=False)[:20] ** 2 / (genes.n_obs - 1)
    np.testing.assert_allclose(np.sort(genes.obsm["X_gist_denoised_pca"].var(0, ddof=1))[::-1], top, rtol=1e-4)
    # without the denoised layer (test.py --denoised off) there is nothing to ask for
    bare = genes.copy()
    del bare.layers[DENOISED_LAYER]
    with pytest.raises(GistInputError, match="no denoised expression"):
        gist.tl.cluster(bare, n_clusters=4, method="mclust", use_rep="denoised")
    gist.tl.cluster(genes, n_clusters=4, method="mclust")
    scores = gist.tl.score(genes, "merge_cell_type")
    assert 0 < scores["ari"] <= 1 and MATCHED_KEY in genes.obs
    figures = {"spatial.png": gist.pl.spatial(genes, "merge_cell_type"),
               "umap.png": gist.pl.umap(genes, "merge_cell_type"),
               "violin.png": gist.pl.violin(genes, list(genes.var_names[:4]), ["merge_cell_type"]),
               "gene.png": gist.pl.gene_map(genes, genes.var_names[0])}
    assert not any(tmp_path.iterdir())  # nothing saved unless asked
    gist.pl.spatial(genes, "merge_cell_type", save=tmp_path / "spatial.png")
    assert (tmp_path / "spatial.png").stat().st_size > 1000
    assert all(hasattr(fig, "savefig") for fig in figures.values())


def test_fit_needs_the_graph_first():
    from gist.demo import make_demo

    from gist.errors import GistInputError

    with pytest.raises(GistInputError, match="run gist.pp.spatial_graph first"):
        gist.tl.fit(make_demo(n_fovs=1, seed=1, image_size=448)[0], epochs=1, ensemble=1, progress=False)


def test_public_submodules():
    for name in ("io", "pp", "tl", "pl", "cli", "keys", "datasets", "errors"):
        assert getattr(gist, name).__name__ == f"gist.{name}"
    # the pipeline's steps are folders: each step's modules live under its own package
    for module in ("io.h5ad", "pp.graph", "pp.extractors", "tl.model", "tl.training", "tl.inference", "tl.clustering"):
        assert importlib.import_module(f"gist.{module}").__name__.startswith(f"gist.{module.split('.')[0]}.")
    assert callable(gist.tl.cluster) and callable(gist.pl.spatial)  # not shadowed by a submodule
