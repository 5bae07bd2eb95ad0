"""Tools on one AnnData with all samples (scanpy's ``tl``): train, embed, cluster, score.

Takes what ``gist.pp`` made (raw counts, ``obsp['spatial_connectivities']``, optional
``obsm['imgs']``, genes marked in ``var['highly_variable']``) and gives the embedding and clusters.

>>> models = gist.tl.fit(adata)                           # doctest: +SKIP
>>> gist.tl.cluster(adata, n_clusters=8, method="leiden")  # doctest: +SKIP
>>> gist.tl.score(adata, label_key="cell_type")            # doctest: +SKIP

:func:`fit` writes ``obsm['X_gist']`` (the fused latent), ``obsm['X_gist_gene']``,
``obsm['X_gist_img']``, ``layers['gist_denoised']`` and ``uns['gist']``. Samples (``obs['sample']``)
are split into per-sample graphs only at the model boundary (:mod:`gist.tl._inputs`).

The modules: :mod:`~gist.tl.nn` and :mod:`~gist.tl.model` (layers, the autoencoder),
:mod:`~gist.tl.recipes`, :mod:`~gist.tl.training`, :mod:`~gist.tl.checkpoints`,
:mod:`~gist.tl.inference`, :mod:`~gist.tl.clustering` (with :mod:`~gist.tl.hmrf`),
:mod:`~gist.tl.metrics` and :mod:`~gist.tl.evaluate` (test.py's scoring).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
from anndata import AnnData

from gist.device import resolve_device
from gist.errors import GistInputError
from gist.io.samples import split_samples
from gist.keys import CLUSTER_KEY, CONNECTIVITIES_KEY, DENOISED_LAYER, LIBRARY_KEY, MATCHED_KEY, ORIGINAL_DENOISED_LAYER, UNS_KEY
from gist.tl._inputs import model_input, sample_graphs
from gist.tl.clustering import REP_CHOICES, cluster_rep, default_rep
from gist.tl.evaluate import match_clusters
from gist.tl.inference import as_models, embed_samples, write_outputs
from gist.tl.recipes import get_recipe, smooths
from gist.tl.training import recipe_config, train_ensemble, versions

__all__ = ["fit", "embed", "cluster", "score"]


def _samples(adata: AnnData, library_key: str) -> tuple[list[AnnData], np.ndarray]:
    """The per-sample parts the model sees and their row order in ``adata``."""
    if CONNECTIVITIES_KEY not in adata.obsp:
        raise GistInputError("adata has no spatial graph (obsp['spatial_connectivities']): run gist.pp.spatial_graph first")
    return split_samples(adata, library_key)


def fit(
    adata: AnnData,
    recipe: str = "gist",
    epochs: int | None = None,
    ensemble: int | None = None,
    seed: int = 1234,
    library_key: str = LIBRARY_KEY,
    save_path: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    embed_cells: bool = True,
    record: dict | None = None,
    task: str = "cell_types",
    dataset: str | None = None,
    **overrides,
):
    """Train GIST on ``adata`` (raw counts, graph, optional ``obsm['imgs']``) and embed it.

    Parameters
    ----------
    adata
        All samples; ``obs[library_key]`` splits them into one graph (mini-batch) each.
    recipe
        ``gist`` (default: an ensemble of 5 models of 150 epochs on 50 principal components) or
        ``paper`` (the original).
    epochs, ensemble
        Override the recipe's epochs per model and number of models.
    seed
        Seed of the first model (member ``k`` uses ``seed + k``).
    library_key
        obs column of the samples.
    save_path
        Folder for checkpoints (as ``train.py``); default: a temporary folder, removed after.
    device
        ``auto``, ``cpu`` or ``cuda``.
    resume
        Continue an interrupted run in ``save_path``.
    progress
        Show progress bars.
    embed_cells
        Write the embedding into ``adata`` (:func:`embed`) after training.
    record
        Extra entries for the checkpoints' JSON records (e.g. the command line).
    task
        ``cell_types`` (leiden) or ``domains`` (mclust): the recipe's settings for that task
        (:data:`gist.tl.recipes.RECIPES`; the gist recipe passes messages over 2 graph layers for
        cell types, 1 for domains, and trains domains without the image branch: ``use_img=True``
        brings it back).
    dataset
        A named dataset (:data:`gist.datasets.DATASETS`) whose recipe defaults apply, as
        ``train.py --dataset`` does (the paper recipe trains the demo 100 epochs, not 1,000).
    **overrides
        Other :class:`gist.tl.training.TrainConfig` fields (``lr``, ``hidden``, ``save_every``, ...).

    Returns
    -------
    list of TransImg
        The trained models (the ensemble's members).
    """
    genes = model_input(adata)
    graphs = list(sample_graphs(_samples(genes, library_key)[0]))
    if save_path is None:
        overrides.setdefault("save_every", 0)
    config = recipe_config(recipe, task, dataset, epochs=epochs, ensemble=ensemble, seed=seed, device=device, **overrides)
    config.extra = dict(config.extra) | dict(record or {}) | {"genes": list(genes.var_names)}
    with tempfile.TemporaryDirectory(prefix="gist-fit-") as tmp:
        models, curves = train_ensemble(graphs, config, save_path or tmp, resume=resume, progress=progress)
    settings = {k: v for k, v in asdict(config).items() if k != "extra"}
    record = {"recipe": recipe, "settings": settings, "versions": versions(), "final_loss": [c[-1] for c in curves],
              "checkpoint": str(save_path) if save_path else ""}
    if embed_cells:
        _embed(adata, genes, models, device, library_key, get_recipe(recipe).denoiser)
    adata.uns[UNS_KEY] = dict(adata.uns.get(UNS_KEY, {})) | record
    return models


def embed(adata: AnnData, models, device: str = "auto", library_key: str = LIBRARY_KEY,
          denoiser: str | None = None) -> AnnData:
    """Write the latents and the denoised expression of ``models`` (one model or an ensemble) into
    ``adata``: ``obsm['X_gist']``, ``obsm['X_gist_gene']``, ``obsm['X_gist_img']`` (with an image
    branch) and ``layers['gist_denoised']``. Returns ``adata``.

    The models read the genes marked in ``var['highly_variable']`` (all genes without marks); where
    genes are unmarked, their columns of ``layers['gist_denoised']`` are NaN (not modelled).
    ``denoiser`` (:data:`gist.tl.recipes.DENOISERS`): what ``layers['gist_denoised']`` is; default:
    the recipe's in ``uns['gist']['recipe']`` (the default recipe's when none is recorded; with
    ``latent_knn`` the model's own reconstruction goes to ``layers['recon']``)."""
    if denoiser is None:
        denoiser = get_recipe(adata.uns.get(UNS_KEY, {}).get("recipe")).denoiser
    return _embed(adata, model_input(adata), as_models(models), device, library_key, denoiser)


def _embed(adata: AnnData, genes: AnnData, models: list, device: str, library_key: str,
           denoiser: str = "reconstruction") -> AnnData:
    """:func:`embed` with the model's view of ``adata`` (:func:`gist.tl._inputs.model_input`) already made."""
    parts, order = _samples(genes, library_key)
    arrays = embed_samples(parts, models, resolve_device(device), denoiser=denoiser)
    placed = {}
    for key, values in arrays.items():
        out = np.empty_like(values)
        out[order] = values
        placed[key] = out
    for layer in (DENOISED_LAYER, ORIGINAL_DENOISED_LAYER):
        if layer in placed and genes is not adata:
            full = np.full(adata.shape, np.nan, dtype=np.float32)
            full[:, adata.var_names.get_indexer(genes.var_names)] = placed[layer]
            placed[layer] = full
    write_outputs(adata, placed)
    adata.uns[UNS_KEY] = dict(adata.uns.get(UNS_KEY, {})) | {"image_branch": bool(models[0].has_image),
                                                               "ensemble_size": len(models), "denoiser": denoiser}
    return adata


def cluster(adata: AnnData, n_clusters: int, method: str = "leiden", use_rep: str = "auto",
            smooth: bool | str = "auto", seed: int = 0, key_added: str = CLUSTER_KEY, copy: bool = False) -> AnnData | None:
    """Cluster ``obsm[use_rep]`` into ``n_clusters`` groups; writes ``obs[key_added]`` and the run's
    parameters to ``uns[key_added]['params']`` (method, resolution, representation, smoothing), as
    scanpy's ``tl.leiden`` does.

    ``method``: ``leiden`` (resolution search to exactly ``n_clusters``; cell types) or ``mclust``
    (Gaussian mixture with one shared covariance; domains). ``use_rep``: an ``obsm`` key, or
    ``'latent'`` (the fused latent), ``'denoised'`` (20 principal components of the denoised
    expression) or ``'auto'``, what the model's recipe clusters (:mod:`gist.tl.recipes`; the fused
    latent for both tasks of the current recipes; :func:`gist.tl.clustering.default_rep`). ``smooth='auto'``: the recipe's rule (averages the
    representation over each cell's spatial neighbourhood for ``mclust`` unless the model came from
    the paper recipe, :func:`gist.tl.clustering.smooth_rep`). Returns a copy with ``copy``, else ``None``.
    """
    adata = adata.copy() if copy else adata
    recipe = adata.uns.get(UNS_KEY, {}).get("recipe")
    if smooth == "auto":
        smooth = smooths(recipe, method)
    if use_rep in REP_CHOICES:
        use_rep = default_rep(adata, method, recipe, seed=seed, choice=use_rep)
    params = cluster_rep(adata, method, int(n_clusters), seed=seed, use_rep=use_rep, key_added=key_added,
                         smooth=bool(smooth)) | {"use_rep": use_rep}
    adata.uns[key_added] = {"params": {k: v for k, v in params.items() if v is not None}}
    return adata if copy else None


def score(adata: AnnData, label_key: str, cluster_key: str = CLUSTER_KEY, key_added: str = MATCHED_KEY) -> dict:
    """Compare ``obs[cluster_key]`` with ``obs[label_key]`` (cells without a label left out): ARI,
    NMI, accuracy and macro F1 after Hungarian matching; writes the matched names to
    ``obs[key_added]`` and returns the scores."""
    for key in (label_key, cluster_key):
        if key not in adata.obs:
            raise GistInputError(f"obs[{key!r}] not found (have {list(adata.obs.columns)})")
    return match_clusters(adata, label_key, cluster_key, key_added)[0]
