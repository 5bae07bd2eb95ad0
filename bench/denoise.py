"""Denoising evaluation: hold out part of the observed counts, predict them, score the prediction.

The protocol: in every cell a random ``fraction`` of the non-zero counts is set to zero, the model
is trained on what remains, and its reconstruction is compared with the held-out values. Everything
is compared on the model's scale, ``log1p(count * 1e4 / library size)`` with the library size of the
*masked* cell (the data the model saw): Pearson correlation and RMSE over the held-out entries, the same
per gene (median over genes), and how well the prediction ranks held-out entries above entries that
were zero all along (ROC AUC). The baselines (:data:`DENOISE_BASELINES`) use the same masked data:
``raw`` (the held-out positions are zeros, as in the masked input), ``neighbour_mean`` (the mean of the
cell's spatial graph neighbours), ``magic`` (MAGIC) and ``scvi`` (scVI's normalised expression).
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


#: Genes need at least this many held-out entries to get a per-gene score.
MIN_GENE_ENTRIES = 10


def gene_scores(truth: np.ndarray, predicted: np.ndarray, cols: np.ndarray,
                min_entries: int = MIN_GENE_ENTRIES) -> dict[str, float]:
    """Median over genes of the per-gene correlation and RMSE at the held-out entries.

    A gene is scored when it has at least ``min_entries`` held-out entries; its correlation is
    skipped when either side is constant there. ``nan`` when no gene qualifies.
    """
    truth = np.asarray(truth, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    corrs, rmses = [], []
    order = np.argsort(cols, kind="stable")
    genes, starts = np.unique(cols[order], return_index=True)
    for part in np.split(order, starts[1:]):
        if len(part) < min_entries:
            continue
        t, p = truth[part], predicted[part]
        rmses.append(np.sqrt(np.mean((t - p) ** 2)))
        if t.std() > 0 and p.std() > 0:
            corrs.append(np.corrcoef(t, p)[0, 1])
    median = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
    return {"gene_corr": median(corrs), "gene_rmse": median(rmses)}


def score_denoiser(masked: np.ndarray, held: HeldOut, predicted: np.ndarray) -> dict[str, float]:
    """Every score of one prediction (log-normalised scale, same shape as ``masked``): ``corr`` and
    ``rmse`` over all held-out entries, ``auc`` (:func:`detection_auc`), ``gene_corr`` and
    ``gene_rmse`` (:func:`gene_scores`)."""
    if predicted.shape != masked.shape:
        raise GistInputError(f"prediction shape {predicted.shape} differs from the counts' {masked.shape}")
    truth = held_out_truth(masked, held)
    at = np.asarray(predicted)[held.rows, held.cols]
    return (score_prediction(truth, at) | {"auc": detection_auc(masked, held, predicted)}
            | gene_scores(truth, at, held.cols))


def magic_denoise(expression: np.ndarray, seed: int = 0) -> np.ndarray:
    """MAGIC (``magic-impute``) with its default settings on ``expression`` (log-normalised), same scale."""
    import magic

    return np.asarray(magic.MAGIC(random_state=seed, verbose=0, n_jobs=1).fit_transform(np.asarray(expression)),
                      dtype=np.float32)


def scvi_denoise(counts: np.ndarray, batches: np.ndarray, seed: int = 0, max_epochs: int | None = None) -> np.ndarray:
    """scVI's normalised expression (default model, one batch per sample), scaled to 1e4 counts per
    cell and log1p-transformed: the scale of the other predictions. Trained with scvi-tools' own
    early stopping on its validation ELBO (``early_stopping=True``; its default would run 400 epochs on
    every set here, 4-10 minutes each on these 2 cores); ``max_epochs`` caps it (tests)."""
    import anndata
    import scvi

    scvi.settings.seed = seed
    scvi.settings.dl_num_workers = 0
    data = anndata.AnnData(sp.csr_matrix(np.asarray(counts, dtype=np.float32)))
    data.obs["batch"] = np.asarray(batches).astype(str)
    scvi.model.SCVI.setup_anndata(data, batch_key="batch" if len(set(data.obs["batch"])) > 1 else None)
    model = scvi.model.SCVI(data)
    model.train(max_epochs=max_epochs, accelerator="cpu", enable_progress_bar=False, early_stopping=True)
    expected = model.get_normalized_expression(library_size=TARGET_SUM, return_numpy=True)
    return np.log1p(np.asarray(expected, dtype=np.float32))


def baseline_prediction(method: str, masked: np.ndarray, connectivities: sp.spmatrix, batches: np.ndarray,
                        seed: int = 0) -> np.ndarray:
    """A baseline of :data:`DENOISE_BASELINES` on the masked counts, on the log-normalised scale."""
    expression = log_normalize(masked)
    if method == "raw":
        return expression
    if method == "neighbour_mean":
        return neighbour_mean(expression, connectivities)
    if method == "magic":
        return magic_denoise(expression, seed)
    if method == "scvi":
        return scvi_denoise(masked, batches, seed)
    raise GistInputError(f"unknown denoising baseline {method!r} (choose from {', '.join(DENOISE_BASELINES)})")


#: The denoisers users already run, scored on the same masks as GIST (the masked input itself is ``raw``).
DENOISE_BASELINES = ("raw", "neighbour_mean", "magic", "scvi")


#: Markers chosen per labelled region on the selection half (split-half markers).
MARKERS_PER_LABEL = 5


def split_half_markers(expression: np.ndarray, labels: np.ndarray, seed: int = 0,
                       per_label: int = MARKERS_PER_LABEL) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each label's most specific genes, chosen on one half of the labelled cells; the other half is
    where they are scored.

    The halves are drawn within each label (seeded). On the selection half a gene's specificity for
    a label is Welch's t statistic of its expression inside the label against the rest; the
    ``per_label`` highest are the label's markers.

    Parameters
    ----------
    expression
        ``(cells, genes)`` log-normalised expression the markers are chosen on (the raw data).
    labels
        ``(cells,)`` labels; cells whose label is missing (``None``/``nan``/``""``) are in neither half.
    seed
        Seed of the split.
    per_label
        Markers per label.

    Returns
    -------
    (dict, numpy.ndarray)
        Label -> marker gene indices, and the rows of the scoring half.
    """
    labels = np.asarray(labels, dtype=object)
    known = np.array([not (v is None or v == "" or (isinstance(v, float) and np.isnan(v))) for v in labels])
    rng = np.random.default_rng(seed)
    select, score = [], []
    for label in sorted(set(labels[known].astype(str))):
        rows = rng.permutation(np.flatnonzero(known & (labels.astype(str) == label)))
        select.append(rows[: len(rows) // 2])
        score.append(rows[len(rows) // 2:])
    chosen = np.concatenate(select)
    x = np.asarray(expression, dtype=np.float64)[chosen]
    chosen_labels = labels[chosen].astype(str)
    markers = {}
    for label in sorted(set(chosen_labels)):
        inside, outside = x[chosen_labels == label], x[chosen_labels != label]
        if len(inside) < 2 or len(outside) < 2:
            continue
        spread = np.sqrt(inside.var(0, ddof=1) / len(inside) + outside.var(0, ddof=1) / len(outside))
        t = np.divide(inside.mean(0) - outside.mean(0), spread, out=np.full(x.shape[1], -np.inf), where=spread > 0)
        markers[label] = np.argsort(-t, kind="stable")[:per_label]
    return markers, np.sort(np.concatenate(score))


def marker_auroc(values: np.ndarray, labels: np.ndarray, markers: dict[str, np.ndarray], rows: np.ndarray) -> float:
    """How well each label's markers, as ``values`` gives them, separate the label from the rest on
    ``rows``: the ROC AUC of every (label, marker) pair, averaged (0.5 = chance)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=object)[rows].astype(str)
    values = np.asarray(values)[rows]
    aucs = [roc_auc_score(labels == label, values[:, gene]) for label, genes in markers.items() for gene in genes
            if 0 < (labels == label).sum() < len(labels)]
    return float(np.mean(aucs)) if aucs else float("nan")
