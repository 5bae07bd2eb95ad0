"""All samples in one AnnData, or one AnnData per sample: the two shapes of the data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from gist.keys import LIBRARY_KEY, SPATIAL_NET_KEY, SPATIAL_UNS_KEY


def sample_name(adata: AnnData, fallback: str) -> str:
    """The sample of a one-sample AnnData (its first ``obs[LIBRARY_KEY]``), else ``fallback``."""
    if LIBRARY_KEY in adata.obs and adata.n_obs:
        return str(adata.obs[LIBRARY_KEY].iloc[0])
    return fallback


def sample_rows(adata: AnnData, library_key: str) -> tuple[list[str], list[np.ndarray]]:
    """Each sample's name and rows (``obs[library_key]`` as text, in order of first appearance; a
    missing value is a sample of its own)."""
    codes, names = pd.factorize(adata.obs[library_key].astype(str), use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return [str(n) for n in names], np.split(order, bounds)


def split_samples(adata: AnnData, library_key: str = LIBRARY_KEY) -> tuple[list[AnnData], np.ndarray]:
    """One AnnData per sample (``obs[library_key]``, in order of first appearance; the whole object
    when the column is absent) and the row order of their concatenation in ``adata``
    (``adata[order]`` lines up with the parts one after the other).

    Each part keeps its own ``uns['spatial'][sample]`` entry (the same arrays, not copies) and no
    ``uns['Spatial_Net']`` (its graph is in ``obsp``)."""
    if library_key not in adata.obs:
        return [adata], np.arange(adata.n_obs)
    names, rows = sample_rows(adata, library_key)
    # the images of all samples (uns['spatial']) and the joined edge table (uns['Spatial_Net']) are
    # not copied into every part: with 250 FOVs that was 250 copies of everything (out of memory)
    heavy = {key: adata.uns.pop(key) for key in (SPATIAL_UNS_KEY, SPATIAL_NET_KEY) if key in adata.uns}
    try:
        parts = [adata[members].copy() for members in rows]
    finally:
        adata.uns.update(heavy)
    images = heavy.get(SPATIAL_UNS_KEY, {})
    for part, name in zip(parts, names):
        if name in images:
            part.uns[SPATIAL_UNS_KEY] = {name: images[name]}  # the sample's own entry, shared, not copied
    return parts, np.concatenate(rows)


def sample_parts(adata: AnnData, library_key: str = LIBRARY_KEY) -> list[AnnData]:
    """The samples of ``adata`` for a step that works one sample at a time: the parts of
    :func:`split_samples` (copies), or ``[adata]`` itself when it holds one sample."""
    if library_key not in adata.obs or adata.obs[library_key].astype(str).nunique() <= 1:
        return [adata]
    return split_samples(adata, library_key)[0]


def join_samples(adatas: list[AnnData], entries_as_read: bool = False) -> AnnData:
    """Samples side by side in one AnnData: obs, obsm and layers stacked, ``obsp`` (the graphs)
    block-diagonal, each sample's ``uns['spatial']`` entry kept.

    Parameters
    ----------
    adatas
        The samples, each with its own ``uns['spatial']`` entry.
    entries_as_read
        Keep every sample's ``uns['spatial']`` entry exactly as it is (the readers: an empty
        ``images`` of a sample read without its image stays), rather than as anndata's ``unique``
        merge of ``uns`` leaves it.

    Returns
    -------
    AnnData
        The one sample itself, else the joined samples with ``obs['sample']`` categorical.
    """
    if len(adatas) == 1:
        return adatas[0]
    joined = ad.concat(adatas, merge="same", uns_merge="unique", pairwise=True)
    if LIBRARY_KEY in joined.obs:
        joined.obs[LIBRARY_KEY] = pd.Categorical(joined.obs[LIBRARY_KEY].astype(str))
    if entries_as_read:
        joined.uns[SPATIAL_UNS_KEY] = {name: entry for a in adatas
                                       for name, entry in a.uns.get(SPATIAL_UNS_KEY, {}).items()}
    return joined
