"""The paper's figures from ``results/<dataset>/gist.h5ad``: spatial domains, UMAPs, violins, gene maps."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from anndata import AnnData  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

#: The paper's colours for the 8 Lung13 classes.
PAPER_COLORS: dict[str, str] = {
    "endothelial": "#26C5D9", "epithelial": "#D3E057", "fibroblast": "#26A599", "lymphocyte": "#E57272",
    "mast": "#5B6BBF", "myeloid": "#FFCA27", "neutrophil": "#B967C7", "tumors": "#A6CEE3",
}
#: The paper's 16 marker genes for the stacked violins.
PAPER_MARKERS: tuple[str, ...] = ("VEGFA", "VEGFB", "EPCAM", "KRT18", "VIM", "PDGFRA", "CD4", "CD8A", "TPSAB1", "KIT",
                                  "DNMT3A", "CTSG", "CSF3R", "CXCR2", "KRAS", "ERBB2")
UNMATCHED_COLOR = "#BDBDBD"


def palette(categories: Sequence[str]) -> dict[str, str]:
    """Colours per category: the paper's for the Lung13 classes, a generated palette otherwise."""
    categories = [str(c) for c in categories]
    if set(categories) <= set(PAPER_COLORS) | {c for c in categories if c.startswith("unmatched_")}:
        return {c: PAPER_COLORS.get(c, UNMATCHED_COLOR) for c in categories}
    cmap = plt.get_cmap("tab20" if len(categories) > 10 else "tab10")
    return {c: (UNMATCHED_COLOR if c.startswith("unmatched_") else matplotlib.colors.to_hex(cmap(i % cmap.N)))
            for i, c in enumerate(categories)}


def _samples(adata: AnnData) -> list[str]:
    if "sample" not in adata.obs:
        return ["all"]
    return [str(s) for s in pd.unique(adata.obs["sample"].astype(str))]


def _members(adata: AnnData, sample: str) -> np.ndarray:
    if sample == "all":
        return np.arange(adata.n_obs)
    return np.flatnonzero(adata.obs["sample"].astype(str).to_numpy() == sample)


def _point_size(n: int) -> float:
    return float(np.clip(3000.0 / max(n, 1), 1.0, 30.0))


def _grid(n_panels: int, per_sample: int) -> tuple[int, int]:
    samples_per_row = max(1, math.ceil(math.sqrt(n_panels)))
    rows = math.ceil(n_panels / samples_per_row)
    return rows, samples_per_row * per_sample


def spatial_domains(adata: AnnData, label_key: str | None, pred_key: str | None, point_size: float | None = None) -> plt.Figure:
    """One pair of panels per sample: ground truth and matched prediction, y as image rows (down)."""
    keys = [k for k in (label_key, pred_key) if k is not None and k in adata.obs]
    if not keys:
        raise ValueError("nothing to colour by: give a label or a prediction column present in obs")
    samples = _samples(adata)
    rows, cols = _grid(len(samples), len(keys))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 2.2, 2.6 * rows + 0.4), squeeze=False)
    categories = sorted({str(v) for k in keys for v in adata.obs[k].dropna().unique()})
    colours = palette(categories)
    xy = np.asarray(adata.obsm["spatial"])
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, sample in enumerate(samples):
        members = _members(adata, sample)
        size = point_size or _point_size(len(members))
        for j, key in enumerate(keys):
            ax = axes[i // (cols // len(keys)), (i % (cols // len(keys))) * len(keys) + j]
            values = adata.obs[key].astype(object).to_numpy()[members]
            colour = [colours.get(str(v), UNMATCHED_COLOR) if pd.notna(v) else "#FFFFFF" for v in values]
            ax.scatter(xy[members, 0], xy[members, 1], c=colour, s=size, linewidths=0)
            ax.set_xlim(xy[members, 0].min() - 5, xy[members, 0].max() + 5)
            ax.set_ylim(xy[members, 1].max() + 5, xy[members, 1].min() - 5)  # image rows grow downwards
            ax.set_aspect("equal")
            ax.set_title(f"{sample}\n{'truth' if key == label_key else 'GIST'}", fontsize=8)
    handles = [Line2D([], [], marker="o", ls="", color=colours[c], label=c) for c in categories]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
    return fig


def umap_compare(adata: AnnData, label_key: str, use_rep: str = "pred", seed: int = 0) -> plt.Figure:
    """UMAP of the fused latent next to UMAP of the expression (PCA 30), coloured by labels."""
    import scanpy as sc

    panels = []
    for title, rep in ((f"GIST ({use_rep})", use_rep), ("expression (PCA)", None)):
        work = AnnData(X=np.asarray(adata.X, dtype=np.float32), obs=adata.obs[[label_key]].copy())
        if rep is None:
            sc.pp.pca(work, n_comps=min(30, work.n_vars - 1, work.n_obs - 1), random_state=seed)
            rep = "X_pca"
        else:
            work.obsm[rep] = np.asarray(adata.obsm[rep])
        sc.pp.neighbors(work, n_neighbors=15, use_rep=rep, random_state=seed)
        sc.tl.umap(work, random_state=seed)
        panels.append((title, work.obsm["X_umap"]))
    categories = sorted(adata.obs[label_key].dropna().astype(str).unique())
    colours = palette(categories)
    labels = adata.obs[label_key].astype(object).to_numpy()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6))
    size = _point_size(adata.n_obs)
    for ax, (title, emb) in zip(axes, panels):
        ax.scatter(emb[:, 0], emb[:, 1], c=[colours.get(str(v), UNMATCHED_COLOR) for v in labels], s=size, linewidths=0)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP1")
        ax.set_ylabel("UMAP2")
    handles = [Line2D([], [], marker="o", ls="", color=colours[c], label=c) for c in categories]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    return fig


def present_genes(adata: AnnData, genes: Sequence[str]) -> list[str]:
    """The genes present in ``adata`` (absent ones reported in one warning)."""
    absent = [g for g in genes if g not in adata.var_names]
    if absent:
        warnings.warn(f"genes not in the data, skipped: {', '.join(absent)}", stacklevel=2)
    return [g for g in genes if g in adata.var_names]


def stacked_violins(adata: AnnData, genes: Sequence[str], groupbys: Sequence[str]) -> plt.Figure:
    """Stacked violins of ``genes``: raw (``X``) vs denoised (``layers['recon']``), per grouping."""
    import scanpy as sc

    fig, axes = plt.subplots(len(groupbys), 2, figsize=(0.45 * len(genes) * 2 + 5, 3.2 * len(groupbys) + 0.6),
                             squeeze=False)
    for row, groupby in enumerate(groupbys):
        view = adata[adata.obs[groupby].notna()]
        for col, (layer, title) in enumerate(((None, "raw (log-normalised)"), ("recon", "denoised (GIST)"))):
            ax = axes[row, col]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sc.pl.stacked_violin(view, list(genes), groupby=groupby, layer=layer, ax=ax, show=False,
                                     dendrogram=False, title=f"{title} by {groupby}")
    fig.tight_layout()
    return fig


def gene_map(adata: AnnData, gene: str, point_size: float | None = None) -> plt.Figure:
    """Per-sample spatial map of one gene: raw (``X``) and denoised (``layers['recon']``)."""
    if gene not in adata.var_names:
        raise ValueError(f"gene {gene!r} is not in the data")
    column = adata.var_names.get_loc(gene)
    raw = np.asarray(adata.X[:, column].toarray() if hasattr(adata.X, "toarray") else adata.X[:, column]).ravel()
    recon = np.asarray(adata.layers["recon"][:, column]).ravel()
    samples = _samples(adata)
    rows, cols = _grid(len(samples), 2)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 1.2, 2.6 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    xy = np.asarray(adata.obsm["spatial"])
    for i, sample in enumerate(samples):
        members = _members(adata, sample)
        for j, (values, title) in enumerate(((raw, "raw"), (recon, "denoised"))):
            ax = axes[i // (cols // 2), (i % (cols // 2)) * 2 + j]
            vmax = np.percentile(values[members], 99) or 1.0
            art = ax.scatter(xy[members, 0], xy[members, 1], c=values[members], cmap="viridis", vmin=0, vmax=vmax,
                             s=point_size or _point_size(len(members)), linewidths=0)
            ax.set_ylim(xy[members, 1].max() + 5, xy[members, 1].min() - 5)
            ax.set_aspect("equal")
            ax.set_title(f"{sample}\n{gene} {title}", fontsize=8)
            fig.colorbar(art, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    return fig
