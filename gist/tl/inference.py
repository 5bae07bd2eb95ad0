"""Inference: load a checkpoint and write the latents and the denoised expression."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from gist.errors import GistInputError
from gist.io._validate import labelled_mask
from gist.io.samples import join_samples, sample_name, split_samples
from gist.keys import (
    COUNTS_LAYER,
    DENOISED_LAYER,
    GENE_LATENT_KEY,
    IMG_LATENT_KEY,
    LATENT_KEY,
    MEMBER_LATENTS_KEY,
    ORIGINAL_ALIASES,
    ORIGINAL_DENOISED_LAYER,
    SPATIAL_NET_KEY,
    UNS_KEY,
)
from gist.tl._inputs import SampleGraph, feature_dims, log_normalize, log_normalize_sparse, sample_graphs
from gist.tl.batches import DEFAULT_MAX_CELLS, stitch, tile_sample
from gist.tl.checkpoints import load_checkpoint
from gist.tl.clustering import cluster_rep
from gist.tl.denoise import denoise_from_latent
from gist.tl.model import TransImg
from gist.tl.recipes import DENOISERS
from gist.utils import atomic_path


@torch.inference_mode()
def embed_graph(model: TransImg, graph: SampleGraph, device: torch.device,
          max_cells: int | None = DEFAULT_MAX_CELLS, denoise: bool = True) -> dict[str, np.ndarray]:
    """Run the model on one sample: its latents (:data:`~gist.keys.LATENT_KEY`, gene and image
    latents) and the fused reconstruction clipped at 0 (:data:`~gist.keys.DENOISED_LAYER`);
    ``denoise=False``: the fused latent alone (encoder layers only, no cells x genes output).

    A sample of more than ``max_cells`` cells runs tile by tile (each with a halo as deep as the
    model, see :mod:`gist.tl.batches`), stitched back so that every cell gets its one embedding.
    """
    model.eval()
    parts = []
    for tile in tile_sample(graph, max_cells, model.depth):
        g = tile.to(device)
        if not denoise:
            z = model.encode(g.dense_x(device), g.img if model.has_image else None, g.prepared())
            parts.append((tile, {LATENT_KEY: z.float().cpu().numpy()}))
            continue
        out = model(g.dense_x(device), g.img if model.has_image else None, g.prepared())
        result = {LATENT_KEY: out.fused_z, GENE_LATENT_KEY: out.gene_z,
                  DENOISED_LAYER: model.to_genes(out.fused_recon).clamp_min(0)}
        if out.img_z is not None:
            result[IMG_LATENT_KEY] = out.img_z
        parts.append((tile, {k: v.float().cpu().numpy() for k, v in result.items()}))
    return stitch(parts, graph.n_cells)


def standardize_columns(z: np.ndarray) -> np.ndarray:
    """``z`` (float64) with every column centred and scaled to unit variance; constant columns are
    only centred."""
    z = np.asarray(z, dtype=np.float64)
    sd = z.std(axis=0)
    return (z - z.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)


def consensus_latent(latents: list[np.ndarray], n_components: int) -> np.ndarray:
    """One latent from several models' latents of the same cells.

    Each member's latent is centred and scaled to unit variance per dimension (members differ in
    scale and rotation), the members are put side by side and reduced to ``n_components`` principal
    components (exact SVD, signs fixed by scikit-learn), so that directions the members agree on
    dominate and each member's own noise averages out.
    """
    if len(latents) == 1:
        return latents[0]

    stacked = np.hstack([standardize_columns(z) for z in latents])
    k = min(n_components, stacked.shape[1], stacked.shape[0])
    return PCA(n_components=k, svd_solver="full").fit_transform(stacked).astype(np.float32)


def as_models(model: TransImg | Sequence[TransImg]) -> list[TransImg]:
    """One model or an ensemble's members as a list (an error if empty)."""
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if not models:
        raise GistInputError("no model to embed with")
    return models


def embed_samples(adatas: list[AnnData], model: TransImg | Sequence[TransImg], device: torch.device,
                  denoise: bool = True, members: bool = False,
                  denoiser: str = "reconstruction") -> dict[str, np.ndarray]:
    """Latents and denoised expression of every cell of ``adatas`` (rows in their order, samples
    one after the other), from one model or an ensemble.

    With an ensemble each latent is the members' :func:`consensus_latent` and the denoised
    expression their mean (accumulated member by member, so memory holds one reconstruction).
    ``denoise=False``: the fused latent alone, no cells x genes reconstruction (see :func:`embed`).
    ``members=True`` adds :data:`~gist.keys.MEMBER_LATENTS_KEY`: every member's fused latent side
    by side (for clustering the ensemble by consensus), from the same forward passes.

    ``denoiser`` (one of :data:`gist.tl.recipes.DENOISERS`) says what the denoised expression
    (:data:`~gist.keys.DENOISED_LAYER`) is: ``reconstruction``, the fused reconstruction (the
    original's); ``latent_knn``, each cell's input expression averaged over its nearest cells in the
    fused latent (:func:`gist.tl.denoise.latent_neighbour_mean`, over all samples, the neighbour count
    chosen by hidden-entry RMSE); ``latent_diffusion``, the input expression diffused over the fused
    latent's neighbour graph (:func:`gist.tl.denoise.latent_diffusion`). With either, the
    reconstruction is kept under :data:`~gist.keys.ORIGINAL_DENOISED_LAYER`.
    """
    if denoiser not in DENOISERS:
        raise GistInputError(f"unknown denoiser {denoiser!r} (choose from {', '.join(DENOISERS)})")
    models = [m.to(device) for m in as_models(model)]
    latents: dict[str, list[list[np.ndarray]]] = {}
    denoised, inputs = [], []
    for graph in sample_graphs(adatas):
        if denoise and denoiser != "reconstruction":
            inputs.append(graph.x if graph.is_sparse else graph.x.numpy())
        total = None
        for k, m in enumerate(models):
            out = embed_graph(m, graph, device, denoise=denoise)
            if denoise:
                recon = out.pop(DENOISED_LAYER)
                total = recon if total is None else total + recon
            for key, value in out.items():
                latents.setdefault(key, [[] for _ in models])[k].append(value)
        if denoise:
            denoised.append(total / len(models))
    combined = {key: consensus_latent([np.concatenate(parts) for parts in per_model], per_model[0][0].shape[1])
                for key, per_model in latents.items()}
    if members:
        combined[MEMBER_LATENTS_KEY] = np.hstack([np.concatenate(parts) for parts in latents[LATENT_KEY]])
    if denoise and denoiser != "reconstruction":
        combined[ORIGINAL_DENOISED_LAYER] = np.concatenate(denoised)
        expression = sp.vstack(inputs, format="csr") if sp.issparse(inputs[0]) else np.concatenate(inputs)
        combined[DENOISED_LAYER] = denoise_from_latent(denoiser, expression, combined[LATENT_KEY])
    elif denoise:
        combined[DENOISED_LAYER] = np.concatenate(denoised)
    return combined


def denoised_bytes(data: AnnData | Sequence[AnnData]) -> int:
    """Bytes of the dense float32 cells x genes reconstruction :func:`infer` would hold."""
    adatas = [data] if isinstance(data, AnnData) else list(data)
    return 4 * sum(a.n_obs for a in adatas) * (adatas[0].n_vars if adatas else 0)


def _samples(data: AnnData | Sequence[AnnData]) -> tuple[list[AnnData], np.ndarray | None]:
    """The per-sample parts of one AnnData (split by ``obs['sample']``, fresh copies) and their row
    order in it; a list of samples as it is (``None``: no order to restore, parts not ours)."""
    if isinstance(data, AnnData):
        return split_samples(data)
    return list(data), None


def infer(data: AnnData | Sequence[AnnData], model: TransImg | Sequence[TransImg], device: torch.device,
          info: dict | None = None, denoise: bool = True, members: bool = False,
          denoiser: str = "reconstruction") -> AnnData:
    """Embed every sample with one model or an ensemble and gather them into one AnnData (the
    layout of test.py's ``gist.h5ad``).

    ``data`` is one AnnData with all samples (``obs['sample']``; rows come back in its order) or a
    list of per-sample AnnData (rows in their order, samples one after the other).

    Returns
    -------
    AnnData
        All input ``obs``/``uns`` kept; ``X`` = the model input (normalise_total 1e4 + log1p),
        ``layers['counts']`` = raw counts, ``obsm['X_gist']`` (fused latent), ``obsm['X_gist_gene']``,
        ``obsm['X_gist_img']``, ``layers['gist_denoised']`` (fused reconstruction clipped at 0), the
        original's names for the same (``obsm['pred']``, ``'gene_pred'``, ``'img_pred'``,
        ``layers['recon']``) and ``uns['gist']`` = ``info`` (checkpoint, selection, ...). A
        gene-branch-only model (no image features) writes no image latent; the fused latent is then
        its gene latent and ``uns['gist']['image_branch']`` is false. With ``denoise=False`` only
        the fused latent is written (no gene/image latents, no ``gist_denoised`` layer: a dense
        cells x genes layer is 12 GB at a million cells and 3,000 genes) and
        ``uns['gist']['denoised']`` is false. ``members=True`` also writes
        ``obsm['X_gist_members']``, every ensemble member's fused latent side by side.
        ``denoiser``: what ``layers['gist_denoised']`` holds (:func:`embed_samples`; with
        ``latent_knn``, ``layers['recon']`` keeps the model's reconstruction).
    """
    models = as_models(model)
    adatas, order = _samples(data)
    arrays = embed_samples(adatas, models, device, denoise=denoise, members=members, denoiser=denoiser)
    bounds = np.cumsum([0] + [a.n_obs for a in adatas])
    parts = []
    for i, adata in enumerate(adatas):
        part = adata.copy() if order is None else adata  # the parts of a split are copies already
        part.layers[COUNTS_LAYER] = sp.csr_matrix(part.X)
        # the model input; kept sparse when the counts are (a dense copy of a million cells is GBs)
        part.X = log_normalize_sparse(part.X) if sp.issparse(part.X) else log_normalize(part.X)
        write_outputs(part, {k: v[bounds[i]:bounds[i + 1]] for k, v in arrays.items()}, aliases=True)
        part.uns.pop(SPATIAL_NET_KEY, None)  # per-sample edge tables; obsp keeps the graph
        parts.append(part)
    merged = join_samples(parts)
    if order is not None and not np.array_equal(order, np.arange(len(order))):
        merged = merged[np.argsort(order)].copy()  # back to the input's row order
    merged.uns[UNS_KEY] = dict(info or {}) | {"image_branch": bool(models[0].has_image), "ensemble_size": len(models),
                                              "denoised": bool(denoise), "denoiser": denoiser if denoise else None}
    return merged


def write_outputs(adata: AnnData, arrays: dict[str, np.ndarray], aliases: bool = False) -> None:
    """Store :func:`embed_samples`' arrays in ``adata`` (rows already in its order); with
    ``aliases`` also under the original's names (``layers['recon']`` is the model's reconstruction:
    the denoised layer itself unless the denoiser wrote it apart)."""
    for key, value in arrays.items():
        if key == ORIGINAL_DENOISED_LAYER:
            adata.layers[ORIGINAL_DENOISED_LAYER] = value
        elif key == DENOISED_LAYER:
            adata.layers[DENOISED_LAYER] = value
            if aliases and ORIGINAL_DENOISED_LAYER not in arrays:
                adata.layers[ORIGINAL_DENOISED_LAYER] = value
        else:
            adata.obsm[key] = value
            if aliases and key in ORIGINAL_ALIASES:
                adata.obsm[ORIGINAL_ALIASES[key]] = value


def write_result(adata: AnnData, path: str | Path) -> Path:
    """Write ``gist.h5ad`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path


#: The original scores checkpoints from this epoch on when it picks one with the labels.
ORACLE_MIN_EPOCH = 200


def oracle_select(
    data: AnnData | Sequence[AnnData],
    checkpoints: list[tuple[int, Path]],
    label_key: str,
    ncluster: int,
    device: torch.device,
    seed: int = 0,
    method: str = "leiden",
    min_epoch: int = ORACLE_MIN_EPOCH,
) -> tuple[int, Path, dict[int, float]]:
    """The original's model selection: the checkpoint whose clusters best match the labels.

    As the original, only checkpoints of epoch ``min_epoch`` or later compete (all of them when
    none is that late).

    This uses the ground-truth labels to choose the model, so any score it yields is an
    ``oracle`` score, not an honest estimate.

    Returns
    -------
    (epoch, path, scores)
        The chosen checkpoint and the ARI of every candidate, keyed by epoch.
    """
    adatas = _samples(data)[0]
    if not checkpoints:
        raise GistInputError("--select oracle found no final_<epoch>_<repeat>.pth checkpoints to choose from")
    checkpoints = [(e, p) for e, p in checkpoints if e >= min_epoch] or list(checkpoints)
    missing = [sample_name(a, f"#{i}") for i, a in enumerate(adatas) if label_key not in a.obs]
    if missing:
        raise GistInputError(f"--select oracle needs labels: obs[{label_key!r}] is missing in sample(s) {missing}")
    genes, img_dim = feature_dims(adatas[0])
    scores = {}
    for epoch, path in checkpoints:
        result = infer(adatas, load_checkpoint(path, genes, img_dim), device)
        labelled = result[labelled_mask(result.obs[label_key])].copy()
        cluster_rep(labelled, method, ncluster, seed=seed, use_rep=LATENT_KEY, key_added="oracle_cluster")
        scores[epoch] = float(adjusted_rand_score(labelled.obs[label_key].astype(str), labelled.obs["oracle_cluster"]))
    best = max(scores, key=scores.get)
    return best, dict(checkpoints)[best], scores
