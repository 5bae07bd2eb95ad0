"""Cluster a result and score it against labels; the expression-only baseline for comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

from gist.errors import GistInputError
from gist.keys import CLUSTER_KEY, CONNECTIVITIES_KEY, LATENT_KEY, MATCHED_KEY
from gist.tl.clustering import cluster_rep
from gist.tl.metrics import compare_labels, labelled_mask, n_labels
from gist.utils import atomic_path


def evaluate(adata: AnnData, label_key: str | None, ncluster: int | None, method: str, seed: int = 0,
             use_rep: str = LATENT_KEY, smooth: bool = False) -> tuple[dict, pd.DataFrame | None]:
    """Cluster ``obsm[use_rep]`` (averaged over graph neighbourhoods with ``smooth``) and, when
    labels exist, score the clusters. Cells without a label are clustered but not scored.

    Writes ``obs['gist_cluster']`` and, with labels, ``obs['gist_matched']`` (cluster names after
    Hungarian matching). ``ncluster`` defaults to the number of label classes.

    Returns
    -------
    (dict, DataFrame or None)
        Metrics (``ari``, ``nmi``, ``n_clusters``, ``method``, ``resolution``, ``label_key``,
        ``cluster_key``, ...) and the per-class table (``None`` without labels).
    """
    if label_key is not None and label_key not in adata.obs:
        raise GistInputError(f"label column {label_key!r} not in obs (have {list(adata.obs.columns)})")
    if ncluster is None:
        if label_key is None:
            raise GistInputError("clustering needs --ncluster N when the data has no --label_key")
        ncluster = n_labels(adata.obs[label_key])
    run = cluster_rep(adata, method, int(ncluster), seed=seed, use_rep=use_rep, key_added=CLUSTER_KEY, smooth=smooth)
    metrics = run | {"ncluster": int(ncluster), "seed": seed, "label_key": label_key or "", "cluster_key": CLUSTER_KEY,
                     "use_rep": use_rep}
    if label_key is None:
        return metrics, None
    summary, table = match_clusters(adata, label_key, CLUSTER_KEY, MATCHED_KEY)
    metrics |= summary | {"matched_key": MATCHED_KEY}
    return metrics, table


def expression_baseline(adata: AnnData, label_key: str, ncluster: int, method: str, seed: int = 0,
                        smooth: bool = False) -> dict:
    """Scanpy's standard expression-only route on the same cells: PCA (30) of the log-normalised
    input, then the same clustering (with the same neighbour averaging when ``smooth``). Leaves
    ``adata`` untouched."""
    x = adata.X.toarray() if sp.issparse(adata.X) else adata.X
    work = AnnData(X=np.asarray(x, dtype=np.float32), obs=adata.obs[[label_key]].copy())
    if smooth:
        work.obsp[CONNECTIVITIES_KEY] = adata.obsp[CONNECTIVITIES_KEY]
    sc.pp.pca(work, n_comps=min(30, work.n_vars - 1, work.n_obs - 1), random_state=seed)
    metrics, _ = evaluate(work, label_key, ncluster, method, seed=seed, use_rep="X_pca", smooth=smooth)
    return metrics


def write_metrics(metrics: dict, table: pd.DataFrame | None, result_path: str | Path) -> list[Path]:
    """``metrics.json`` and ``metrics_per_class.csv`` in ``result_path`` (atomically)."""
    result_path = Path(result_path)
    written = []
    with atomic_path(result_path / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=str))
    written.append(result_path / "metrics.json")
    if table is not None:
        with atomic_path(result_path / "metrics_per_class.csv") as tmp:
            table.to_csv(tmp, index=False)
        written.append(result_path / "metrics_per_class.csv")
    return written


def match_clusters(adata: AnnData, label_key: str, cluster_key: str, key_added: str) -> tuple[dict, pd.DataFrame]:
    """Score ``obs[cluster_key]`` against ``obs[label_key]`` on the labelled cells (Hungarian
    matching, :func:`gist.tl.metrics.compare_labels`); writes the matched label of every labelled
    cell to ``obs[key_added]``. Returns the scores and the per-class table."""
    labelled = labelled_mask(adata.obs[label_key])
    summary, table, matched = compare_labels(adata.obs[label_key].to_numpy()[labelled], adata.obs[cluster_key].to_numpy()[labelled])
    names = np.full(adata.n_obs, None, dtype=object)
    names[labelled] = matched.astype(str)
    adata.obs[key_added] = pd.Categorical(names)
    return summary, table
