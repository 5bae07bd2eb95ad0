"""Preprocessing on one AnnData with all samples (scanpy's ``pp``): graph, image features, genes.

>>> import gist
>>> adata = gist.io.read_cosmx("dataset/nanostring")           # doctest: +SKIP
>>> gist.pp.spatial_graph(adata)                               # doctest: +SKIP
>>> gist.pp.image_features(adata, extractor="stats")           # doctest: +SKIP
>>> adata = gist.pp.select_genes(adata)                        # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from gist.errors import GistInputError
from gist.pp.graph import spatial_graph
from gist.keys import IMG_KEY, LIBRARY_KEY, UNS_KEY
from gist.io.samples import split_samples

__all__ = ["spatial_graph", "image_features", "select_genes"]


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
) -> np.ndarray:
    """Embed an image patch around every cell; writes ``obsm[key_added]``.

    Parameters
    ----------
    adata
        Cells with ``obsm['spatial']`` and each sample's image in ``uns['spatial'][sample]``.
    extractor
        ``stats`` or ``he`` (no weights), ``uni``, ``virchow2``, ``ctranspath`` or ``timm:<architecture>``
        (with local ``weights``).
    weights
        Path of the foundation model's weights (never downloaded).
    library_key
        obs column of the samples (each has its own image).
    patch_size
        Window side in image pixels (default: the Visium spot diameter, else 240 as the paper).
    pad, flip_y, batch_size, num_workers, device, precision
        As ``extract_features.py``'s flags of the same names.
    key_added
        obsm key of the features.
    extractor_kwargs, pool
        For ``timm:<architecture>``: keyword arguments of ``timm.create_model`` and the token pooling
        (``cls``, ``mean``, ``cls+mean``; :mod:`gist.pp.extractors`).

    Returns
    -------
    numpy.ndarray
        ``(cells, features)`` float32, rows in ``adata``'s order.
    """
    from gist.device import resolve_device
    from gist.pp.extract import DESCRIPTORS, ExtractConfig, default_patch_size, sample_features
    from gist.pp.extractors import check_extractor_name, create_extractor

    if check_extractor_name(extractor) == "none":
        raise GistInputError("extractor 'none' computes no image features; choose stats or a foundation model")
    parts, order = split_samples(adata, library_key)
    config = ExtractConfig(extractor=extractor, weights=weights, patch_size=patch_size or default_patch_size(parts),
                           pad=pad, flip_y=flip_y, batch_size=batch_size, num_workers=num_workers, device=device,
                           precision=precision, extractor_kwargs=extractor_kwargs, pool=pool)
    model = None if extractor in DESCRIPTORS else create_extractor(extractor, weights, extractor_kwargs, pool)
    dev = resolve_device(device)
    features = np.concatenate([sample_features(p, str(p.obs[library_key].iloc[0]) if library_key in p.obs else "all",
                                               config, model, dev) for p in parts])
    out = np.empty_like(features, dtype=np.float32)
    out[order] = features
    adata.obsm[key_added] = out
    return out


def select_genes(adata: AnnData, n_top_genes: int | None = None, verbose: bool = True) -> AnnData:
    """The genes the model will see (:mod:`gist.pp.genes`): ``var['highly_variable']`` when present,
    else all genes up to 3,000, else the 3,000 (or ``n_top_genes``) most variable by scanpy's
    ``seurat_v3`` on the raw counts of all samples pooled.

    Returns
    -------
    AnnData
        ``adata`` restricted to those genes (a copy when genes drop), with the rule in
        ``uns['gist']['genes']``.
    """
    from gist.pp.genes import select_genes as choose

    (kept,), choice = choose([adata], n_top_genes, verbose=verbose)
    kept.uns[UNS_KEY] = dict(kept.uns.get(UNS_KEY, {})) | {"genes": {"rule": choice.rule, "n_genes": len(choice.genes)}}
    return kept
