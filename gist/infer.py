"""Inference: load a checkpoint and write the latents and the denoised expression."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from gist.data import SampleGraph, feature_dims, sample_name, to_graph
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
        dims, use_img_loss = dims_from_state_dict(state)
    except ValueError as err:
        raise GistInputError(f"checkpoint {path}: {err}") from None
    if (dims[0], dims[1]) != (n_genes, img_dim):
        raise GistInputError(
            f"checkpoint {path} expects {dims[0]} genes and {dims[1]}-d image features, but the data has "
            f"{n_genes} genes and {img_dim}-d image features"
        )
    model = TransImg(dims, use_img_loss=use_img_loss)
    model.load_state_dict(state, strict=True)
    return model


@torch.inference_mode()
def embed(model: TransImg, graph: SampleGraph, device: torch.device) -> dict[str, np.ndarray]:
    """Run the model on one sample; returns the three latents and the fused reconstruction."""
    model.eval()
    g = graph.to(device)
    gene_z, img_z, fused_z, _, _, recon = model(g.x, g.img if model.has_image else None, g.edge_index)
    out = {"pred": fused_z, "gene_pred": gene_z, "recon": recon.clamp_min(0)}
    if img_z is not None:
        out["img_pred"] = img_z
    return out


def infer(adatas: list[AnnData], model: TransImg, device: torch.device, info: dict | None = None) -> AnnData:
    """Embed every sample and gather them into one AnnData.

    Returns
    -------
    AnnData
        All input ``obs``/``uns`` kept; ``X`` = the model input (normalise_total 1e4 + log1p),
        ``layers['counts']`` = raw counts, ``obsm['pred']`` (fused latent), ``obsm['gene_pred']``,
        ``obsm['img_pred']``, ``layers['recon']`` (fused reconstruction clipped at 0) and
        ``uns['gist']`` = ``info`` (checkpoint, selection, ...). A gene-branch-only model (no image
        features) writes no ``img_pred``; ``pred`` is then its gene latent and
        ``uns['gist']['image_branch']`` is false.
    """
    model = model.to(device)
    parts = []
    for i, adata in enumerate(adatas):
        graph = to_graph(adata, sample_name(adata, f"#{i}"))
        outputs = {k: v.float().cpu().numpy() for k, v in embed(model, graph, device).items()}
        part = adata.copy()
        part.layers["counts"] = sp.csr_matrix(part.X)
        part.X = graph.x.numpy()
        for key in ("pred", "gene_pred", "img_pred"):
            if key in outputs:
                part.obsm[key] = outputs[key]
        part.layers["recon"] = outputs["recon"]
        part.uns.pop("Spatial_Net", None)  # per-sample edge tables; obsp keeps the graph
        parts.append(part)
    merged = ad.concat(parts, merge="same", uns_merge="unique", pairwise=True) if len(parts) > 1 else parts[0]
    merged.uns["gist"] = dict(info or {}) | {"image_branch": bool(model.has_image)}
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
