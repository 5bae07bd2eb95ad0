"""The paper's figures (``gist.pl``): spatial domains, UMAPs, stacked violins, gene maps.

Each function takes the AnnData (all samples; ``library_key`` splits them into panels), returns
the matplotlib figure and writes it only when ``save`` names a file.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from anndata import AnnData  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from gist.utils import atomic_path  # noqa: E402
from gist.keys import CLUSTER_KEY, DENOISED_LAYER, LATENT_KEY, LIBRARY_KEY, MATCHED_KEY, SPATIAL_KEY  # noqa: E402
import scipy.sparse as sp
from gist.tl._inputs import log_normalize
import scanpy as sc

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


def _samples(adata: AnnData, library_key: str | None) -> list[str]:
    if library_key is None or library_key not in adata.obs:
        return ["all"]
    return [str(s) for s in pd.unique(adata.obs[library_key].astype(str))]


def _members(adata: AnnData, sample: str, library_key: str | None) -> np.ndarray:
    if sample == "all":
        return np.arange(adata.n_obs)
    return np.flatnonzero(adata.obs[library_key].astype(str).to_numpy() == sample)


def log_expression(adata: AnnData) -> np.ndarray:
    """``X`` on the model's scale (normalize_total 1e4 + log1p): as is when it already is (test.py's
    gist.h5ad), computed when ``X`` holds raw counts (whole numbers, as after :func:`gist.tl.fit`)."""

    values = adata.X.data if sp.issparse(adata.X) else np.asarray(adata.X)
    if values.size and np.array_equal(values, np.round(values)):
        return log_normalize(adata.X)
    return adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X, dtype=np.float32)


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file, then rename); the format is the suffix's."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    return Path(path)


def _finish(fig: plt.Figure, save: str | Path | None, dpi: int = 150) -> plt.Figure:
    """Write ``fig`` to ``save`` when given; return it."""
    if save is not None:
        save_figure(fig, save, dpi)
    return fig


def _point_size(n: int) -> float:
    return float(np.clip(3000.0 / max(n, 1), 1.0, 30.0))


def _grid(n_panels: int, per_sample: int) -> tuple[int, int]:
    samples_per_row = max(1, math.ceil(math.sqrt(n_panels)))
    rows = math.ceil(n_panels / samples_per_row)
    return rows, samples_per_row * per_sample


def spatial(adata: AnnData, label_key: str | None = None, cluster_key: str | None = MATCHED_KEY,
            library_key: str | None = LIBRARY_KEY, point_size: float | None = None,
            save: str | Path | None = None) -> plt.Figure:
    """Spatial domain maps: per sample, the labels beside the (matched) clusters, y as image rows.

    Parameters
    ----------
    adata
        Cells with ``obsm['spatial']`` and the columns to colour by.
    label_key, cluster_key
        obs columns drawn side by side (either may be ``None`` or absent). The default cluster
        column is the matched clusters of :func:`gist.tl.score`, else the clusters of
        :func:`gist.tl.cluster`.
    library_key
        obs column of the samples (one pair of panels each).
    point_size
        Marker size (default: from the number of cells).
    save
        File to write the figure to (format from its suffix).
    """
    if cluster_key == MATCHED_KEY and MATCHED_KEY not in adata.obs:
        cluster_key = CLUSTER_KEY  # clustered, not yet scored
    keys = [k for k in (label_key, cluster_key) if k is not None and k in adata.obs]
    if not keys:
        raise ValueError("nothing to colour by: give a label or a prediction column present in obs")
    samples = _samples(adata, library_key)
    rows, cols = _grid(len(samples), len(keys))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 2.2, 2.6 * rows + 0.4), squeeze=False)
    categories = sorted({str(v) for k in keys for v in adata.obs[k].dropna().unique()})
    colours = palette(categories)
    xy = np.asarray(adata.obsm[SPATIAL_KEY])
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, sample in enumerate(samples):
        members = _members(adata, sample, library_key)
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
    return _finish(fig, save)


def umap(adata: AnnData, label_key: str, use_rep: str = LATENT_KEY, seed: int = 0,
         save: str | Path | None = None) -> plt.Figure:
    """UMAP of ``obsm[use_rep]`` (the fused latent) next to UMAP of the expression (PCA 30 of
    ``X``), coloured by ``obs[label_key]``; written to ``save`` when given."""
    panels = []
    for title, rep in ((f"GIST ({use_rep})", use_rep), ("expression (PCA)", None)):
        work = AnnData(X=log_expression(adata), obs=adata.obs[[label_key]].copy())
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
    return _finish(fig, save)


def present_genes(adata: AnnData, genes: Sequence[str]) -> list[str]:
    """The genes present in ``adata`` (absent ones reported in one warning)."""
    absent = [g for g in genes if g not in adata.var_names]
    if absent:
        warnings.warn(f"genes not in the data, skipped: {', '.join(absent)}", stacklevel=2)
    return [g for g in genes if g in adata.var_names]


def violin(adata: AnnData, genes: Sequence[str], groupbys: Sequence[str], layer: str = DENOISED_LAYER,
           save: str | Path | None = None) -> plt.Figure:
    """Stacked violins of ``genes``: raw (``X``) beside denoised (``layers[layer]``), one row per
    obs column in ``groupbys``; written to ``save`` when given."""
    fig, axes = plt.subplots(len(groupbys), 2, figsize=(0.45 * len(genes) * 2 + 5, 3.2 * len(groupbys) + 0.6),
                             squeeze=False)
    columns = [adata.var_names.get_loc(g) for g in genes]
    shown = AnnData(X=log_expression(adata)[:, columns], obs=adata.obs[list(groupbys)].copy(),
                    var=adata.var.loc[list(genes)].copy(), layers={layer: np.asarray(adata[:, list(genes)].layers[layer])})
    for row, groupby in enumerate(groupbys):
        view = shown[shown.obs[groupby].notna()]
        for col, (source, title) in enumerate(((None, "raw (log-normalised)"), (layer, "denoised (GIST)"))):
            ax = axes[row, col]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sc.pl.stacked_violin(view, list(genes), groupby=groupby, layer=source, ax=ax, show=False,
                                     dendrogram=False, title=f"{title} by {groupby}")
    fig.tight_layout()
    return _finish(fig, save)


def gene_map(adata: AnnData, gene: str, library_key: str | None = LIBRARY_KEY, layer: str = DENOISED_LAYER,
             point_size: float | None = None, save: str | Path | None = None) -> plt.Figure:
    """Per-sample spatial map of one gene: raw (``X``) beside denoised (``layers[layer]``);
    written to ``save`` when given."""
    if gene not in adata.var_names:
        raise ValueError(f"gene {gene!r} is not in the data")
    column = adata.var_names.get_loc(gene)
    raw = log_expression(adata)[:, column].ravel()
    recon = np.asarray(adata.layers[layer][:, column]).ravel()
    samples = _samples(adata, library_key)
    rows, cols = _grid(len(samples), 2)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 1.2, 2.6 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    xy = np.asarray(adata.obsm[SPATIAL_KEY])
    for i, sample in enumerate(samples):
        members = _members(adata, sample, library_key)
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
    return _finish(fig, save)
