"""How alike neighbours already are: Moran's I of a representation on the spatial graph.

A label-free description of a section, computed from the input alone: near 1 when each cell's
components vary smoothly in space (neighbours alike), near 0 when they are spatially random (each
cell its own), negative when neighbours differ systematically. The benchmark shows it on every
development set (BENCHMARKS.md) beside what the clustering-time average does there.
"""

from __future__ import annotations

import numpy as np
import scanpy as sc
import scipy.sparse as sp

from gist.errors import GistInputError


def symmetric_links(graph) -> sp.csr_matrix:
    """``graph`` as an unweighted symmetric adjacency without self-loops (CSR)."""
    adj = sp.csr_matrix(graph, dtype=np.float64)
    adj = ((adj + adj.T) > 0).astype(np.float64).tolil()
    adj.setdiag(0.0)
    adj = adj.tocsr()
    adj.eliminate_zeros()
    return adj


def morans_i(values: np.ndarray, graph) -> np.ndarray:
    """Moran's I of each column of ``values`` (cells x features) on ``graph`` (made symmetric,
    unweighted, without self-loops), by scanpy's ``metrics.morans_i``; NaN for a constant column.

    Raises
    ------
    GistInputError
        If ``graph`` is not cells x cells for ``values``' rows, or has no edge.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    adj = symmetric_links(graph)
    if adj.shape != (values.shape[0], values.shape[0]):
        raise GistInputError(f"graph of shape {adj.shape} does not fit {values.shape[0]} cells")
    if adj.nnz == 0:
        raise GistInputError("the spatial graph has no edge: Moran's I needs neighbours")
    out = np.full(values.shape[1], np.nan)
    varying = values.std(axis=0) > 1e-12
    if varying.any():
        out[varying] = np.atleast_1d(sc.metrics.morans_i(adj, values[:, varying].T))
    return out


def neighbour_similarity(values: np.ndarray, graph) -> float:
    """Moran's I of the columns of ``values`` averaged with their variances as weights (components
    that carry more of the variance count more): a section's one-number answer to "how alike are
    neighbours already"."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    scores = morans_i(values, graph)
    weights = values.var(axis=0)
    keep = np.isfinite(scores)
    if not keep.any():
        return float("nan")
    return float(np.sum(scores[keep] * weights[keep]) / np.sum(weights[keep]))
