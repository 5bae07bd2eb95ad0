"""Denoised expression from the fused latent: each cell's expression averaged over the cells the
model places next to it (:func:`latent_neighbour_mean`), or diffused over them (:func:`latent_diffusion`).

GIST's fused latent already combines a cell's expression, its spatial neighbours and (with an image)
its histology. Averaging the log-normalised expression over a cell's nearest neighbours in that
latent (the cell included) borrows counts from cells of the same state wherever they lie, as MAGIC
does in expression PCA space and as a spatial neighbour mean does in the tissue.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from gist._docs import doc_params
from gist.errors import GistInputError

#: Parameter texts shared by the denoisers' docstrings.
_PARAMS = {
    "expression": "``(cells, genes)`` log-normalised expression (dense or sparse), rows in the latent's order.",
    "latent": "``(cells, dims)`` fused latent of the same cells.",
}

#: Neighbours in the fused latent whose expression is averaged (the cell itself is one of them).
DEFAULT_DENOISE_NEIGHBORS = 30
#: The neighbour counts ``n_neighbors='auto'`` chooses from (:func:`calibrate_neighbors`).
CANDIDATE_NEIGHBORS = (10, 20, 30, 50, 100)
#: Share of the non-zero entries hidden to choose the neighbour count, and at most this many cells hold them.
CALIBRATION_FRACTION = 0.1
CALIBRATION_MAX_CELLS = 5000


def _check_rows(expression, latent: np.ndarray) -> None:
    if expression.shape[0] != np.shape(latent)[0]:
        raise GistInputError(f"expression has {expression.shape[0]} rows but the latent {np.shape(latent)[0]}")


def _dense(values) -> np.ndarray:
    return np.asarray(values.toarray() if sp.issparse(values) else values, dtype=np.float32)


def _neighbour_index(latent: np.ndarray, n_neighbors: int) -> np.ndarray:
    """``(cells, min(n_neighbors, cells))`` indices of each cell's nearest cells in ``latent``, the
    cell itself first (nearest first after it)."""
    latent = np.asarray(latent, dtype=np.float32)
    if latent.ndim != 2 or latent.shape[0] == 0 or not np.isfinite(latent).all():
        raise GistInputError(f"the latent must be a finite (cells, dims) array, got shape {latent.shape}")
    if n_neighbors < 1:
        raise GistInputError(f"n_neighbors must be >= 1, got {n_neighbors}")
    k = min(int(n_neighbors), latent.shape[0])
    index = NearestNeighbors(n_neighbors=k).fit(latent).kneighbors(latent, return_distance=False)
    # kneighbors of the fitted points lists each point first unless it has exact duplicates: put it first
    own = np.arange(latent.shape[0])
    at = np.argmax(index == own[:, None], axis=1)
    missing = ~(index == own[:, None]).any(axis=1)
    at[missing] = k - 1  # not listed (duplicates): it replaces the farthest
    index[own, at] = index[own, 0]
    index[:, 0] = own
    return index


def _averaging_operator(index: np.ndarray, n_neighbors: int) -> sp.csr_matrix:
    """Row-normalised operator averaging each row over the first ``n_neighbors`` columns of ``index``."""
    k = min(int(n_neighbors), index.shape[1])
    n = index.shape[0]
    rows = np.repeat(np.arange(n), k)
    return sp.csr_matrix((np.full(rows.size, 1.0 / k, np.float32), (rows, index[:, :k].ravel())), shape=(n, n))


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
    return _averaging_operator(_neighbour_index(latent, n_neighbors), n_neighbors)


def calibrate_neighbors(expression, latent: np.ndarray, candidates: tuple[int, ...] = CANDIDATE_NEIGHBORS,
                        fraction: float = CALIBRATION_FRACTION, max_cells: int = CALIBRATION_MAX_CELLS,
                        seed: int = 0) -> tuple[int, dict[int, float]]:
    """The neighbour count whose latent-kNN mean best predicts hidden entries (noise2self).

    ``fraction`` of the non-zero entries of at most ``max_cells`` cells (drawn with ``seed``) are set
    to 0; each candidate count's mean (:func:`latent_knn_graph`) of the rest predicts them, and the
    count with the smallest RMSE at those entries wins. No labels: only the expression itself.

    Returns
    -------
    (int, dict)
        The chosen count and every candidate's RMSE.
    """
    rng = np.random.default_rng(seed)
    csr = sp.csr_matrix(expression, dtype=np.float32, copy=True)
    rows = np.sort(rng.choice(csr.shape[0], size=min(max_cells, csr.shape[0]), replace=False))
    chosen = np.zeros(csr.shape[0], bool)
    chosen[rows] = True
    entry_rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    hide = chosen[entry_rows] & (csr.data != 0) & (rng.random(csr.nnz) < fraction)
    if not hide.any():
        return int(candidates[0]), {}
    truth = csr.data[hide].copy()
    hidden_rows, hidden_cols = entry_rows[hide], csr.indices[hide]
    csr.data[hide] = 0
    errors = {}
    index = _neighbour_index(latent, max(candidates))
    for k in candidates:
        op = _averaging_operator(index, k)[rows]
        predicted = op @ csr  # only the rows that hold hidden entries
        position = np.searchsorted(rows, hidden_rows)
        values = np.asarray(predicted[position, hidden_cols]).ravel()
        errors[int(k)] = float(np.sqrt(np.mean((values - truth) ** 2)))
    return min(errors, key=errors.get), errors


@doc_params(**_PARAMS)
def latent_neighbour_mean(expression, latent: np.ndarray, n_neighbors: int | str = DEFAULT_DENOISE_NEIGHBORS,
                          seed: int = 0) -> np.ndarray:
    """The denoised expression: ``expression`` averaged over each cell's ``n_neighbors`` nearest
    cells in ``latent`` (:func:`latent_knn_graph`), dense float32.

    Parameters
    ----------
    expression
        {expression}
    latent
        {latent}
    n_neighbors
        Cells averaged per row, the cell included; ``'auto'``: the count of
        :data:`CANDIDATE_NEIGHBORS` that best predicts hidden entries (:func:`calibrate_neighbors`,
        drawn with ``seed``).
    seed
        Seed of the calibration (``n_neighbors='auto'`` only).
    """
    _check_rows(expression, latent)
    if n_neighbors == "auto":
        n_neighbors, _ = calibrate_neighbors(expression, latent, seed=seed)
    elif isinstance(n_neighbors, str):
        raise GistInputError(f"n_neighbors must be a count or 'auto', got {n_neighbors!r}")
    return _dense(latent_knn_graph(latent, n_neighbors) @ expression)


#: Neighbours and steps of :func:`latent_diffusion` (MAGIC diffuses 3 steps too).
DIFFUSION_NEIGHBORS = 15
DIFFUSION_STEPS = 3


@doc_params(**_PARAMS)
def latent_diffusion(expression, latent: np.ndarray, n_neighbors: int = DIFFUSION_NEIGHBORS,
                     steps: int = DIFFUSION_STEPS) -> np.ndarray:
    """The denoised expression: ``expression`` diffused ``steps`` times over the symmetrised
    ``n_neighbors``-nearest-neighbour graph of ``latent`` (each step a row-normalised average over
    the cell and its neighbours), dense float32; as MAGIC diffuses over an expression PCA graph.

    Parameters
    ----------
    expression
        {expression}
    latent
        {latent}
    n_neighbors
        Nearest cells per cell, the cell included, before symmetrising.
    steps
        Diffusion steps (>= 1).
    """
    _check_rows(expression, latent)
    if steps < 1:
        raise GistInputError(f"steps must be >= 1, got {steps}")
    knn = latent_knn_graph(latent, n_neighbors)
    sym = (knn + knn.T).tocsr()
    op = sp.diags(1.0 / np.asarray(sym.sum(axis=1)).ravel()) @ sym
    values = expression
    for _ in range(int(steps)):
        values = op @ values
    return _dense(values)


#: The denoisers that read the fused latent, by the name a recipe gives them (:data:`gist.tl.recipes.DENOISERS`).
LATENT_DENOISERS = {
    "latent_knn": lambda expression, latent: latent_neighbour_mean(expression, latent, "auto"),
    "latent_diffusion": latent_diffusion,
}


def denoise_from_latent(name: str, expression, latent: np.ndarray) -> np.ndarray:
    """The denoised expression of :data:`LATENT_DENOISERS` ``name`` (``latent_knn``: the self-calibrated
    latent-kNN mean; ``latent_diffusion``: 3 steps over the 15-NN graph), dense float32."""
    if name not in LATENT_DENOISERS:
        raise GistInputError(f"unknown latent denoiser {name!r} (choose from {', '.join(LATENT_DENOISERS)})")
    return LATENT_DENOISERS[name](expression, latent)
