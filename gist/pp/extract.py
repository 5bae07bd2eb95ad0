"""Per-sample image features + spatial graph, written as prepared ``.h5ad`` files.

``extract_samples`` takes one AnnData (``obs['sample']``, each sample's image in
``uns['spatial'][sample]``) and writes every sample to one ``<out>/<sample>.h5ad`` with
``obsm['imgs']`` and the radius (or KNN) graph, plus ``<out>/manifest.json``. Files are written
atomically; ``resume`` skips samples the manifest records as done with the same settings.
"""

from __future__ import annotations

import json
import pickle
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from anndata import AnnData
from tqdm.auto import tqdm

from gist.device import resolve_device
from gist.errors import GistInputError
from gist.io._validate import check_samples
from gist.io.image import check_inside, get_image, image_coordinates
from gist.io.samples import join_samples, sample_name, sample_parts
from gist.keys import CONNECTIVITIES_KEY, HVG_KEY, IMG_KEY, LIBRARY_KEY, SPATIAL_UNS_KEY
from gist.pp.extractors import REGISTRY, check_extractor_name, create_extractor, embed_patches, extractor_kind
from gist.pp.genes import seurat_v3_genes
from gist.pp.graph import build_graphs
from gist.pp.patches import PAD_MODES, DevicePatches, PatchDataset
from gist.utils import atomic_path, exclusive_folder

MANIFEST = "manifest.json"


@dataclass
class ExtractConfig:
    """Settings of one extraction run (recorded in the manifest and in ``uns['gist_features']``)."""

    extractor: str = "stats"  # stats, he, a preset (uni, virchow2, ctranspath, effnet_lite0), timm:<architecture> or none
    weights: str | None = None
    extractor_kwargs: dict | None = None  # timm:<architecture>: keyword arguments of timm.create_model
    pool: str | None = None  # timm:<architecture>: cls, mean or cls+mean (None: the model's own pooling)
    patch_size: int = 240
    pad: str = "reflect"
    flip_y: bool = False
    batch_size: int = 32
    num_workers: int = 0
    device: str = "auto"
    precision: str = "fp32"
    rad_cutoff: float | None = None  # None (and no k_cutoff): the radius rule of gist.pp.graph.build_graphs
    k_cutoff: int | None = None
    n_top_genes: int | None = None  # mark this many most variable genes in var['highly_variable']
    channels: tuple[int, ...] | None = None  # image channels drawn as R, G, B (None: the image's or reader's default)

    def key(self) -> dict:
        """The settings that change the features (used by ``resume``)."""
        key = {k: v for k, v in asdict(self).items() if k not in ("batch_size", "num_workers", "device")}
        return key | {"channels": None if self.channels is None else list(self.channels)}  # as JSON holds it


#: The paper's window around a CosMx cell, in pixels.
PAPER_PATCH_SIZE = 240


def default_patch_size(adata: AnnData) -> int:
    """The window side in image pixels: a Visium spot's diameter (``spot_diameter_fullres`` times
    the image's scale factor, at least 8 px) when a sample's ``uns['spatial']`` entry records one,
    else the paper's 240."""
    for entry in adata.uns.get("spatial", {}).values():
        diameter = entry.get("scalefactors", {}).get("spot_diameter_fullres")
        if diameter:
            return max(8, int(round(diameter * entry.get("metadata", {}).get("image_scalef", 1.0))))
    return PAPER_PATCH_SIZE


def sample_features(adata: AnnData, name: str, config: ExtractConfig, extractor=None, device="cpu") -> np.ndarray | None:
    """Image features of one sample's cells with ``config.extractor`` (``None`` for ``none``).

    ``extractor`` is the model from :func:`gist.pp.extractors.create_extractor` (unused for ``stats``).
    """
    kind = extractor_kind(config.extractor)
    if kind == "none":
        return None
    try:
        image = get_image(adata, channels=config.channels)
    except GistInputError as err:
        raise GistInputError(
            f"{err}. Pass --image PATH, or --extractor none to prepare the sample without image features"
        ) from None
    coords = image_coordinates(adata)
    if config.flip_y:
        coords = np.column_stack([coords[:, 0], image.shape[0] - coords[:, 1]])
    check_inside(coords, image.shape, name)
    if kind == "descriptor":
        return REGISTRY[config.extractor].describe(image, coords, config.patch_size)
    # on a GPU the windows are cut and resized there (image uploaded once); on the CPU by loader workers
    size = extractor.input_size
    dataset = (DevicePatches(image, coords, config.patch_size, size, config.pad, device) if device.type == "cuda"
               else PatchDataset(image, coords, config.patch_size, size, config.pad))
    return embed_patches(extractor, dataset, batch_size=config.batch_size, num_workers=config.num_workers,
                         device=device, precision=config.precision, desc=name).numpy()


def _read_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    if not path.is_file():
        return {"samples": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise GistInputError(f"{path} is not valid JSON ({err}); delete it to start afresh") from None


def extract_samples(
    adata: AnnData,
    out_dir: str | Path,
    config: ExtractConfig,
    resume: bool = False,
    progress: bool = True,
    source: str = "data",
    strict: bool = False,
) -> dict:
    """Compute image features and graphs for every sample of ``adata`` and write each sample to
    ``out_dir`` (locked against a second run meanwhile, see :func:`gist.utils.exclusive_folder`).

    Parameters
    ----------
    adata
        All samples (``obs['sample']``; without it, one sample), raw counts in ``X``,
        ``obsm['spatial']`` and each sample's image in ``uns['spatial'][sample]``.
    out_dir
        The folder of the prepared files and ``manifest.json``.
    config
        The extraction settings.
    resume
        Skip samples the manifest records as done with the same settings.
    progress
        Show progress bars and the checks' and graph's messages.
    source, strict
        The data's name in messages and ``--strict`` of the sample checks
        (:func:`gist.io._validate.check_samples`).

    Returns
    -------
    dict
        The manifest: settings and, per sample, file, cells, feature width, seconds and cells/s.
    """
    # the checks, graphs and files are per sample; genes are chosen over all samples pooled; graphs
    # and genes are decided before anything is written
    adatas = check_samples(sample_parts(adata), source, strict=strict, verbose=progress)
    check_extractor_name(config.extractor)
    if config.pad not in PAD_MODES:
        raise GistInputError(f"--pad must be one of {PAD_MODES}, got {config.pad!r}")
    graph_rule = build_graphs(adatas, config.rad_cutoff, config.k_cutoff, rebuild=True, verbose=progress)
    hvg = None
    if config.n_top_genes is not None:
        if config.n_top_genes < 1:
            raise GistInputError(f"--n_top_genes must be a positive number, got {config.n_top_genes}")
        hvg = set(seurat_v3_genes(adatas, config.n_top_genes)) if config.n_top_genes < adatas[0].n_vars else None
    out_dir = Path(out_dir)
    with exclusive_folder(out_dir, "extract_features.py"):
        return _extract(adatas, out_dir, config, resume, progress, graph_rule, hvg)


def _extract(adatas: list[AnnData], out_dir: Path, config: ExtractConfig, resume: bool, progress: bool,
             graph_rule: str, hvg: set | None) -> dict:
    device = resolve_device(config.device)
    extractor = None
    if extractor_kind(config.extractor) == "foundation":
        extractor = create_extractor(config.extractor, config.weights, config.extractor_kwargs, config.pool)
    manifest = _read_manifest(out_dir) if resume else {"samples": {}}
    if resume and manifest.get("config", config.key()) != config.key():
        raise GistInputError(f"--resume: {out_dir / MANIFEST} was written with other settings {manifest['config']}")
    manifest["config"] = config.key()
    bar = tqdm(adatas, desc="samples", unit="sample", disable=not progress)
    for i, adata in enumerate(bar):
        name = sample_name(adata, f"sample{i}")
        target = out_dir / f"{name}.h5ad"
        if resume and name in manifest["samples"] and target.is_file():
            continue
        start = time.perf_counter()
        features = sample_features(adata, name, config, extractor, device)
        seconds = time.perf_counter() - start
        adata = adata.copy()
        if features is None and IMG_KEY in adata.obsm:  # --extractor none keeps features the input has
            features = np.asarray(adata.obsm[IMG_KEY])
        if features is not None:
            adata.obsm[IMG_KEY] = np.ascontiguousarray(features, dtype=np.float32)
        adata.uns["gist_features"] = {k: ("" if v is None else v) for k, v in config.key().items()} | {"graph": graph_rule}
        if hvg is not None:
            adata.var[HVG_KEY] = adata.var_names.isin(hvg)
        with atomic_path(target) as tmp:
            adata.write_h5ad(tmp)
        rate = adata.n_obs / seconds if seconds > 0 else float("inf")
        manifest["samples"][name] = {
            "file": target.name, "cells": int(adata.n_obs), "genes": int(adata.n_vars),
            "img_dim": 0 if features is None else int(features.shape[1]),
            "edges": int(adata.obsp[CONNECTIVITIES_KEY].nnz),
            "seconds": round(seconds, 3), "cells_per_s": round(rate, 1),
        }
        bar.set_postfix(sample=name, cells_per_s=f"{rate:.0f}")
        with atomic_path(out_dir / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def read_pickled(path: str | Path) -> AnnData:
    """Import the original's pickled list of AnnData (``adatas_list.pkl``) as one AnnData, the
    samples told apart by ``obs['sample']`` (``sample<i>`` where a sample has none).

    Unpickling runs code from the file: only use files you trust.

    Parameters
    ----------
    path
        The pickle file.

    Returns
    -------
    AnnData
        The samples side by side (:func:`gist.io.samples.join_samples`), each sample's one image
        entry in ``uns['spatial']`` under its name.
    """
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f"pickle not found: {path}")
    warnings.warn(f"unpickling {path} runs code from that file; only use files you trust", stacklevel=2)
    with path.open("rb") as fh:
        obj = pickle.load(fh)  # noqa: S301 - the user asked for it explicitly with --from-pickle
    adatas = obj if isinstance(obj, (list, tuple)) else [obj]
    if not adatas or not all(isinstance(a, AnnData) for a in adatas):
        raise GistInputError(f"{path} does not hold a list of AnnData objects")
    for i, adata in enumerate(adatas):
        if LIBRARY_KEY not in adata.obs:
            adata.obs[LIBRARY_KEY] = f"sample{i}"
        images = adata.uns.get(SPATIAL_UNS_KEY)
        name = sample_name(adata, f"sample{i}")
        if isinstance(images, dict) and len(images) == 1 and name not in images:
            # a sample's one image, whatever its key, stays its image (each is found by its sample's name)
            adata.uns[SPATIAL_UNS_KEY] = {name: next(iter(images.values()))}
    return join_samples(list(adatas), entries_as_read=True)
