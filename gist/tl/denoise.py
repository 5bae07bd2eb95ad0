"""Denoised expression from the fused latent: each cell's expression averaged over the cells the
model places next to it.

GIST's fused latent already combines a cell's expression, its spatial neighbours and (with an image)
its histology. Averaging the log-normalised expression over a cell's nearest neighbours in that
latent (the cell included) borrows counts from cells of the same state wherever they lie, as MAGIC
does in expression PCA space and as a spatial neighbour mean does in the tissue.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from gist.errors import GistInputError

#: Neighbours in the fused latent whose expression is averaged (the cell itself is one of them).
DEFAULT_DENOISE_NEIGHBORS = 30


def latent_knn_graph(latent: np.ndarray, n_neighbors: int = DEFAULT_DENOISE_NEIGHBORS) -> sp.csr_matrix:
    """Row-normalised ``(cells, cells)`` averaging operator over each cell's ``n_neighbors`` nearest
    cells in ``latent`` (Euclidean; the cell itself included, so each row has ``n_neighbors`` entries of
    ``1 / n_neighbors``; fewer cells than that: all of them).

    Parameters
    ----------
    latent
        ``(cells, dims)`` finite embedding, e.g. ``obsm['X_gist']``.
    n_neighbors
        Cells averaged per row, the cell included (>= 1).
    """
    latent = np.asarray(latent, dtype=np.float32)
    if latent.ndim != 2 or latent.shape[0] == 0 or not np.isfinite(latent).all():
        raise GistInputError(f"the latent must be a finite (cells, dims) array, got shape {latent.shape}")
    if n_neighbors < 1:
        raise GistInputError(f"n_neighbors must be >= 1, got {n_neighbors}")
    k = min(int(n_neighbors), latent.shape[0])
    index = NearestNeighbors(n_neighbors=k).fit(latent).kneighbors(latent, return_distance=False)
    # kneighbors of the fitted points lists each point first unless it has exact duplicates: put it first
    own = np.arange(latent.shape[0])
    has_own = (index == own[:, None]).any(axis=1)
    index[~has_own, -1] = own[~has_own]
    rows = np.repeat(own, k)
    return sp.csr_matrix((np.full(rows.size, 1.0 / k, np.float32), (rows, index.ravel())), shape=(len(own), len(own)))


def latent_neighbour_mean(expression, latent: np.ndarray, n_neighbors: int = DEFAULT_DENOISE_NEIGHBORS) -> np.ndarray:
    """The denoised expression: ``expression`` averaged over each cell's ``n_neighbors`` nearest
    cells in ``latent`` (:func:`latent_knn_graph`), dense float32.

    Parameters
    ----------
    expression
        ``(cells, genes)`` log-normalised expression (dense or sparse), rows in the latent's order.
    latent
        ``(cells, dims)`` fused latent of the same cells.
    n_neighbors
        Cells averaged per row, the cell included.
    """
    if expression.shape[0] != np.shape(latent)[0]:
        raise GistInputError(f"expression has {expression.shape[0]} rows but the latent {np.shape(latent)[0]}")
    smoothed = latent_knn_graph(latent, n_neighbors) @ expression
    return np.asarray(smoothed.toarray() if sp.issparse(smoothed) else smoothed, dtype=np.float32)
