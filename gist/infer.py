"""Inference: load a checkpoint and write the latents and the denoised expression."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from gist.data import SampleGraph, feature_dims, log_normalize, sample_name, to_graph
from gist.errors import GistInputError
from gist.model import TransImg, dims_from_state_dict
from gist.utils import atomic_path


def load_checkpoint(path: str | Path, n_genes: int, img_dim: int) -> TransImg:
    """Load a ``TransImg`` state dict (ours or the original's) safely, checking it fits the data.

    Raises
    ------
    GistInputError
        If the file is missing or unreadable, or its gene / image dimensions differ from the data's.
    """
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f"checkpoint not found: {path} (train first, or pass --pretrain FILE)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors come in many types
        raise GistInputError(f"checkpoint {path} is not a loadable state dict: {err}") from None
    if isinstance(state, dict) and "model" in state and "conv1.lin_key.weight" not in state:
        state = state["model"]
    try:
        dims, options = dims_from_state_dict(state)
    except ValueError as err:
        raise GistInputError(f"checkpoint {path}: {err}") from None
    if (dims[0], dims[1]) != (n_genes, img_dim):
        raise GistInputError(
            f"checkpoint {path} expects {dims[0]} genes and {dims[1]}-d image features, but the data has "
            f"{n_genes} genes and {img_dim}-d image features"
        )
    model = TransImg(dims, **options)
    model.load_state_dict(state, strict=True)
    return model


@torch.inference_mode()
def embed(model: TransImg, graph: SampleGraph, device: torch.device) -> dict[str, np.ndarray]:
    """Run the model on one sample; returns the three latents and the fused reconstruction."""
    model.eval()
    g = graph.to(device)
    out = model(g.x, g.img if model.has_image else None, g.prepared())
    result = {"pred": out.fused_z, "gene_pred": out.gene_z, "recon": out.fused_recon.clamp_min(0)}
    if out.img_z is not None:
        result["img_pred"] = out.img_z
    return {k: v.float().cpu().numpy() for k, v in result.items()}


def consensus_latent(latents: list[np.ndarray], n_components: int) -> np.ndarray:
    """One latent from several models' latents of the same cells.

    Each member's latent is centred and scaled to unit variance per dimension (members differ in
    scale and rotation), the members are put side by side and reduced to ``n_components`` principal
    components (exact SVD, signs fixed by scikit-learn), so that directions the members agree on
    dominate and each member's own noise averages out.
    """
    if len(latents) == 1:
        return latents[0]
    from sklearn.decomposition import PCA

    scaled = []
    for z in latents:
        z = np.asarray(z, dtype=np.float64)
        sd = z.std(axis=0)
        scaled.append((z - z.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0))
    stacked = np.hstack(scaled)
    k = min(n_components, stacked.shape[1], stacked.shape[0])
    return PCA(n_components=k, svd_solver="full").fit_transform(stacked).astype(np.float32)


def infer(adatas: list[AnnData], model: TransImg | list[TransImg], device: torch.device, info: dict | None = None) -> AnnData:
    """Embed every sample with one model or an ensemble and gather them into one AnnData.

    Parameters
    ----------
    adatas
        The samples (raw counts, graphs, image features when the model has an image branch).
    model
        A trained model, or the members of an ensemble (same data dimensions).
    device
        Where to run the models.
    info
        Recorded in ``uns['gist']``.

    Returns
    -------
    AnnData
        All input ``obs``/``uns`` kept; ``X`` = the model input (normalise_total 1e4 + log1p),
        ``layers['counts']`` = raw counts, ``obsm['pred']`` (fused latent), ``obsm['gene_pred']``,
        ``obsm['img_pred']``, ``layers['recon']`` (fused reconstruction clipped at 0) and
        ``uns['gist']`` = ``info`` (checkpoint, selection, ...). With an ensemble each latent is the
        members' :func:`consensus_latent` and ``recon`` their mean. A gene-branch-only model (no
        image features) writes no ``img_pred``; ``pred`` is then its gene latent and
        ``uns['gist']['image_branch']`` is false.
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if not models:
        raise GistInputError("no model to embed with")
    models = [m.to(device) for m in models]
    per_member = []
    for m in models:
        outputs = [embed(m, to_graph(a, sample_name(a, f"#{i}")), device) for i, a in enumerate(adatas)]
        per_member.append({k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]})
    combined = {k: consensus_latent([p[k] for p in per_member], per_member[0][k].shape[1])
                for k in ("pred", "gene_pred", "img_pred") if k in per_member[0]}
    combined["recon"] = np.mean([p["recon"] for p in per_member], axis=0) if len(models) > 1 else per_member[0]["recon"]
    bounds = np.cumsum([0] + [a.n_obs for a in adatas])
    parts = []
    for i, adata in enumerate(adatas):
        outputs = {k: v[bounds[i]:bounds[i + 1]] for k, v in combined.items()}
        part = adata.copy()
        part.layers["counts"] = sp.csr_matrix(part.X)
        part.X = log_normalize(part.X)
        for key in ("pred", "gene_pred", "img_pred"):
            if key in outputs:
                part.obsm[key] = outputs[key]
        part.layers["recon"] = outputs["recon"]
        part.uns.pop("Spatial_Net", None)  # per-sample edge tables; obsp keeps the graph
        parts.append(part)
    merged = ad.concat(parts, merge="same", uns_merge="unique", pairwise=True) if len(parts) > 1 else parts[0]
    merged.uns["gist"] = dict(info or {}) | {"image_branch": bool(models[0].has_image), "ensemble_size": len(models)}
    return merged


def write_result(adata: AnnData, path: str | Path) -> Path:
    """Write ``gist.h5ad`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path


def oracle_select(
    adatas: list[AnnData],
    checkpoints: list[tuple[int, Path]],
    label_key: str,
    ncluster: int,
    device: torch.device,
    seed: int = 0,
    method: str = "leiden",
) -> tuple[int, Path, dict[int, float]]:
    """The original's model selection: the checkpoint whose clusters best match the labels.

    This uses the ground-truth labels to choose the model, so any score it yields is an
    ``oracle`` score, not an honest estimate.

    Returns
    -------
    (epoch, path, scores)
        The chosen checkpoint and the ARI of every candidate, keyed by epoch.
    """
    from sklearn.metrics import adjusted_rand_score

    from gist.cluster import cluster

    if not checkpoints:
        raise GistInputError("--select oracle found no final_<epoch>_<repeat>.pth checkpoints to choose from")
    missing = [sample_name(a, f"#{i}") for i, a in enumerate(adatas) if label_key not in a.obs]
    if missing:
        raise GistInputError(f"--select oracle needs labels: obs[{label_key!r}] is missing in sample(s) {missing}")
    genes, img_dim = feature_dims(adatas[0])
    scores = {}
    for epoch, path in checkpoints:
        result = infer(adatas, load_checkpoint(path, genes, img_dim), device)
        labelled = result[result.obs[label_key].notna()].copy()
        cluster(labelled, method, ncluster, seed=seed, use_rep="pred", key_added="oracle_cluster")
        scores[epoch] = float(adjusted_rand_score(labelled.obs[label_key].astype(str), labelled.obs["oracle_cluster"]))
    best = max(scores, key=scores.get)
    return best, dict(checkpoints)[best], scores
