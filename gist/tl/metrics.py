"""Scoring clusters against labels: Hungarian matching, ARI, NMI and per-class F1."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from gist.io._validate import MISSING_LABEL_TEXTS, labelled_mask  # noqa: F401 (part of this module's API)


def n_labels(labels) -> int:
    """How many distinct labels the labelled cells carry (missing ones, see :func:`labelled_mask`, not counted)."""
    values = np.asarray(labels, dtype=object)
    return int(len(np.unique(values[labelled_mask(values)].astype(str))))


def hungarian_match(labels, clusters) -> dict[str, str]:
    """Map each cluster to at most one label so that the matched cells are as many as possible.

    Clusters left without a label (more clusters than labels) map to ``"unmatched_<cluster>"``.

    Returns
    -------
    dict
        cluster -> label (both as strings).
    """
    table = pd.crosstab(pd.Series(np.asarray(clusters, dtype=str), name="cluster"),
                        pd.Series(np.asarray(labels, dtype=str), name="label"))
    rows, cols = linear_sum_assignment(-table.to_numpy())
    mapping = {table.index[r]: table.columns[c] for r, c in zip(rows, cols)}
    return {c: mapping.get(c, f"unmatched_{c}") for c in table.index}


def compare_labels(labels, clusters) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """ARI, NMI and per-class precision/recall/F1 after Hungarian matching.

    Cells whose label is missing (:func:`labelled_mask`) are left out.

    Returns
    -------
    (dict, DataFrame, ndarray)
        Summary scores (``ari``, ``nmi``, ``accuracy``, ``macro_f1``, ``n_cells``), the per-class
        table, and the matched label of every cell (``None`` where the label is missing).
    """
    labels = pd.Series(np.asarray(labels, dtype=object))
    clusters = np.asarray(clusters).astype(str)
    known = labelled_mask(labels)
    y = labels[known].astype(str).to_numpy()
    c = clusters[known]
    mapping = hungarian_match(y, c)
    matched_all = np.array([mapping.get(x, f"unmatched_{x}") for x in clusters], dtype=object)
    pred = matched_all[known]
    rows = []
    for cls in sorted(set(y)):
        tp = int(np.sum((pred == cls) & (y == cls)))
        n_pred, n_true = int(np.sum(pred == cls)), int(np.sum(y == cls))
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": cls, "n_cells": n_true, "n_predicted": n_pred, "precision": precision,
                     "recall": recall, "f1": f1})
    table = pd.DataFrame(rows)
    summary = {
        "ari": float(adjusted_rand_score(y, c)),
        "nmi": float(normalized_mutual_info_score(y, c)),
        "accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
        "macro_f1": float(table["f1"].mean()) if len(table) else float("nan"),
        "n_cells": int(len(y)),
    }
    return summary, table, matched_all
