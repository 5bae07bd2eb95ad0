"""Denoising evaluation: hold out part of the observed counts, predict them, score the prediction.

The protocol: in every cell a random ``fraction`` of the non-zero counts is set to zero, the model
is trained on what remains, and its reconstruction is compared with the held-out values. Everything
is compared on the model's scale, ``log1p(count * 1e4 / library size)`` with the library size of the
*masked* cell (the data the model saw), and by how well the prediction ranks held-out entries above
entries that were zero all along (ROC AUC). Two baselines use the same masked data: ``raw`` (the held-out
positions are zeros, as in the masked input) and ``neighbour_mean`` (the mean of the cell's spatial
graph neighbours, i.e. spatial smoothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gist.tl._inputs import TARGET_SUM, log_normalize
from gist.errors import GistInputError


@dataclass
class HeldOut:
    """Positions and counts removed from a count matrix by :func:`mask_counts`."""

    rows: np.ndarray  # (n,) cell index
    cols: np.ndarray  # (n,) gene index
    counts: np.ndarray  # (n,) the removed counts


def mask_counts(counts, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, HeldOut]:
    """Zero a random ``fraction`` of each cell's non-zero counts.

    Parameters
    ----------
    counts
        ``(cells, genes)`` raw counts, dense or sparse.
    fraction
        Share of each cell's non-zero entries to hold out, rounded to the nearest integer per cell
        (cells with a single non-zero count keep it whenever the rounding gives 0).
    seed
        Seed of the random choice.

    Returns
    -------
    (numpy.ndarray, HeldOut)
        The masked counts (dense float32) and what was removed.
    """
    if not 0 < fraction < 1:
        raise GistInputError(f"the held-out fraction must be in (0, 1), got {fraction}")
    dense = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    masked = dense.astype(np.float32, copy=True)
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for i in range(masked.shape[0]):
        nonzero = np.flatnonzero(masked[i])
        n_hold = int(round(fraction * len(nonzero)))
        if n_hold:
            chosen = np.sort(rng.choice(nonzero, size=n_hold, replace=False))
            rows.append(np.full(n_hold, i))
            cols.append(chosen)
    rows_arr = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols_arr = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    held = HeldOut(rows_arr, cols_arr, masked[rows_arr, cols_arr].copy())
    masked[rows_arr, cols_arr] = 0
    return masked, held


def held_out_truth(masked: np.ndarray, held: HeldOut) -> np.ndarray:
    """The held-out counts on the model's scale: ``log1p(count * 1e4 / masked library size)``."""
    totals = masked.sum(axis=1)
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(held.counts * scale[held.rows])


def neighbour_mean(values: np.ndarray, connectivities: sp.spmatrix) -> np.ndarray:
    """Mean of ``values`` over each cell's graph neighbours (the cell's own row when it has none)."""
    adj = sp.csr_matrix(connectivities, dtype=np.float32)
    adj.setdiag(0)
    adj.eliminate_zeros()
    adj.data[:] = 1.0
    degree = np.asarray(adj.sum(axis=1)).ravel()
    smoothed = adj @ values
    lonely = degree == 0
    smoothed[~lonely] /= degree[~lonely, None]
    smoothed[lonely] = values[lonely]
    return np.asarray(smoothed, dtype=np.float32)


def score_prediction(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Pearson correlation and RMSE between held-out values and their predictions."""
    truth = np.asarray(truth, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if truth.shape != predicted.shape or truth.size < 2:
        raise GistInputError(f"need two equal-length vectors of >= 2 values, got {truth.shape} and {predicted.shape}")
    corr = float(np.corrcoef(truth, predicted)[0, 1]) if predicted.std() > 0 and truth.std() > 0 else float("nan")
    return {"corr": corr, "rmse": float(np.sqrt(np.mean((truth - predicted) ** 2)))}


def detection_auc(masked: np.ndarray, held: HeldOut, predicted: np.ndarray, seed: int = 0) -> float:
    """How well ``predicted`` ranks held-out entries above entries that were zero all along.

    As many truly-zero entries as there are held-out ones are drawn at random (seeded); the
    score is the ROC AUC of telling the two sets apart by the predicted value (0.5 = chance,
    e.g. for the raw data, which is zero at both).
    """
    from sklearn.metrics import roc_auc_score

    zero = masked == 0
    zero[held.rows, held.cols] = False
    rows, cols = np.nonzero(zero)
    if len(rows) == 0 or len(held.rows) == 0:
        return float("nan")
    pick = np.random.default_rng(seed).choice(len(rows), size=min(len(rows), len(held.rows)), replace=False)
    values = np.concatenate([predicted[held.rows, held.cols], predicted[rows[pick], cols[pick]]])
    truth = np.concatenate([np.ones(len(held.rows)), np.zeros(len(pick))])
    return float(roc_auc_score(truth, values))


def denoising_scores(masked: np.ndarray, held: HeldOut, recon: np.ndarray, connectivities: sp.spmatrix) -> dict[str, dict]:
    """Scores of ``recon`` and of the two baselines at the held-out positions.

    Parameters
    ----------
    masked
        The masked counts the model was trained on, ``(cells, genes)``.
    held
        The removed entries (:func:`mask_counts`).
    recon
        The model's reconstruction on the log-normalised scale (``layers['recon']``), same shape.
    connectivities
        The spatial graph (``obsp['spatial_connectivities']``) of the same cells, in the same order.

    Returns
    -------
    dict
        ``{"model": {...}, "raw": {...}, "neighbour_mean": {...}}``, each with ``corr`` and ``rmse``
        (at the held-out entries) and ``auc`` (:func:`detection_auc`: held-out versus truly-zero
        entries), plus ``"held_out"``: the number of held-out entries.
    """
    if recon.shape != masked.shape:
        raise GistInputError(f"reconstruction shape {recon.shape} differs from the counts' {masked.shape}")
    truth = held_out_truth(masked, held)
    at = (held.rows, held.cols)
    smoothed = neighbour_mean(log_normalize(masked), connectivities)
    recon = np.asarray(recon)
    return {
        "model": score_prediction(truth, recon[at]) | {"auc": detection_auc(masked, held, recon)},
        # the raw data is zero at every held-out entry: corr is undefined (nan), AUC is chance
        "raw": score_prediction(truth, np.zeros_like(truth)) | {"auc": 0.5},
        "neighbour_mean": score_prediction(truth, smoothed[at]) | {"auc": detection_auc(masked, held, smoothed)},
        "held_out": int(len(truth)),
    }
