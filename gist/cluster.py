"""Clustering the latent: leiden with a resolution search to a target number of clusters."""

from __future__ import annotations

import warnings

import numpy as np
from anndata import AnnData

LEIDEN_KWARGS = {"flavor": "igraph", "n_iterations": 2, "directed": False}


def _leiden(adata: AnnData, resolution: float, seed: int, key: str) -> int:
    import scanpy as sc

    sc.tl.leiden(adata, resolution=resolution, random_state=seed, key_added=key, **LEIDEN_KWARGS)
    return int(adata.obs[key].nunique())


def res_search(
    adata: AnnData,
    ncluster: int,
    seed: int = 0,
    use_rep: str = "pred",
    key_added: str = "leiden",
    max_iter: int = 30,
) -> float:
    """Find a leiden resolution in [0, 3] that gives exactly ``ncluster`` clusters.

    Builds ``sc.pp.neighbors(n_neighbors=8, use_rep=use_rep)`` and bisects the resolution. When the
    count cannot be hit within ``max_iter`` steps, the closest resolution is used and a warning
    says so (the original raises ``NotImplementedError``). ``obs[key_added]`` holds the clusters
    of the returned resolution.

    Returns
    -------
    float
        The resolution.
    """
    import scanpy as sc

    if use_rep not in adata.obsm:
        raise KeyError(f"obsm[{use_rep!r}] not found (have {list(adata.obsm)})")
    sc.pp.neighbors(adata, n_neighbors=8, use_rep=use_rep, random_state=seed)
    low, high = 0.0, 3.0
    best = (np.inf, 1.0)
    for _ in range(max_iter):
        mid = (low + high) / 2
        count = _leiden(adata, mid, seed, key_added)
        best = min(best, (abs(count - ncluster), mid))
        if count == ncluster:
            return mid
        if count > ncluster:
            high = mid
        else:
            low = mid
    count = _leiden(adata, best[1], seed, key_added)
    warnings.warn(
        f"res_search: no resolution in [0, 3] gives {ncluster} clusters; using {best[1]:.4f} with {count}",
        stacklevel=2,
    )
    return best[1]
