"""All samples in one AnnData, or one AnnData per sample: the two shapes of the data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from gist.keys import LIBRARY_KEY


def split_samples(adata: AnnData, library_key: str = LIBRARY_KEY) -> tuple[list[AnnData], np.ndarray]:
    """One AnnData per sample (``obs[library_key]``, in order of first appearance; the whole object
    when the column is absent) and the row order of their concatenation in ``adata``
    (``adata[order]`` lines up with the parts one after the other)."""
    if library_key not in adata.obs:
        return [adata], np.arange(adata.n_obs)
    codes, _ = pd.factorize(adata.obs[library_key].astype(str), use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    parts = [adata[members].copy() for members in np.split(order, bounds)]
    return parts, order


def join_samples(adatas: list[AnnData]) -> AnnData:
    """Samples side by side in one AnnData: obs, obsm and layers stacked, ``obsp`` (the graphs)
    block-diagonal, each sample's ``uns['spatial']`` entry kept."""
    if len(adatas) == 1:
        return adatas[0]
    joined = ad.concat(adatas, merge="same", uns_merge="unique", pairwise=True)
    if LIBRARY_KEY in joined.obs:
        joined.obs[LIBRARY_KEY] = pd.Categorical(joined.obs[LIBRARY_KEY].astype(str))
    return joined
