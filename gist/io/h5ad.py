"""Any ``.h5ad`` with coordinates in ``obsm['spatial']``, plus an optional image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from anndata import read_h5ad as _read_h5ad

from gist.errors import GistInputError
from gist.io._validate import check_coordinates, check_count_matrix, check_sample_column
from gist.io.celltypes import merge_cell_types
from gist.io.image import image_shape, spatial_entry
from gist.io.samples import join_samples
from gist.keys import LIBRARY_KEY, SPATIAL_KEY


def _read_file(path: Path) -> AnnData:
    """``anndata.read_h5ad`` with a damaged file reported as an input error."""
    try:
        return _read_h5ad(path)
    except Exception as err:  # h5py/anndata raise many types for a damaged file
        raise GistInputError(f"{path} is not a readable .h5ad file: {err}") from None


def _embedded_image(adata: AnnData, source: str) -> dict | None:
    """The ``uns['spatial']`` entry for an image stored in the file (scanpy's Visium layout), or None."""
    spatial = adata.uns.get("spatial")
    if not isinstance(spatial, dict) or len(spatial) != 1:
        return None
    entry = next(iter(spatial.values()))
    images = entry.get("images", {}) if isinstance(entry, dict) else {}
    factors = dict(entry.get("scalefactors", {})) if isinstance(entry, dict) else {}
    for resolution in ("hires", "lowres"):
        if resolution in images and f"tissue_{resolution}_scalef" in factors:
            image = np.asarray(images[resolution])
            if image.dtype != np.uint8:  # scanpy stores floats in [0, 1]
                image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
            if image.ndim != 3 or image.shape[2] < 3:
                raise GistInputError(f"{source}: uns['spatial'] image {resolution!r} has shape {image.shape}; expected (h, w, 3)")
            return spatial_entry(
                source="h5ad", images={resolution: image[..., :3]}, image_shape=image.shape,
                image_scalef=float(factors[f"tissue_{resolution}_scalef"]),
                spot_diameter_fullres=factors.get("spot_diameter_fullres"),
                scalefactors={k: float(v) for k, v in factors.items() if isinstance(v, (int, float))},
            )
    return None


def read_h5ad(
    path: str | Path,
    *,
    image_path: str | Path | None = None,
    library_key: str | None = None,
    sample: str | None = None,
    label_key: str | None = None,
    merge: bool = False,
    spatial_key: str = SPATIAL_KEY,
    image_scalef: float = 1.0,
) -> AnnData:
    """Read a spatial ``.h5ad`` as one AnnData with ``obs['sample']`` (from ``library_key``, or the
    file's name) and each sample's image entry in ``uns['spatial'][sample]``.

    Parameters
    ----------
    path
        An ``.h5ad`` file whose ``obsm[spatial_key]`` holds (x, y) coordinates and ``X`` raw counts.
    image_path
        The tissue image the coordinates refer to (optional; recorded in ``uns['spatial']``).
    library_key
        obs column that splits the file into samples (default: one sample).
    sample
        Name of the single sample (default: the file's stem). Ignored with ``library_key``.
    label_key
        obs column of the labels; checked to exist.
    merge
        Add ``obs['merge_cell_type']`` from ``obs[label_key]`` with the paper's CosMx merge map.
    spatial_key
        Key of the coordinates in ``obsm``; they are stored as ``obsm['spatial']``.
    image_scalef
        Factor from ``obsm['spatial']`` to pixels of ``image_path``.

    Notes
    -----
    Without ``image_path``, an image the file itself holds in scanpy's Visium layout
    (``uns['spatial'][library]['images']['hires' or 'lowres']`` with ``scalefactors``) is used:
    the hires image when present, else the lowres one, with its ``tissue_<res>_scalef`` as the
    factor from ``obsm['spatial']`` (full-resolution pixels) to the image, and
    ``spot_diameter_fullres`` kept for the patch size.

    Returns
    -------
    AnnData
        The samples one after the other (grouped by ``library_key``, in its sorted order), with
        ``obs['sample']`` and ``uns['spatial'][sample]``.
    """
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f".h5ad file not found: {path}")
    adata = _read_file(path)
    source = str(path)
    if spatial_key not in adata.obsm:
        raise GistInputError(f"{source}: obsm has no {spatial_key!r} coordinates (has {list(adata.obsm)})")
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)[:, :2]
    check_coordinates(coords, f"{source} obsm[{spatial_key!r}]", adata.obs_names)
    adata.obsm[SPATIAL_KEY] = coords
    if not adata.obs_names.is_unique:
        dup = adata.obs_names[adata.obs_names.duplicated()][0]
        raise GistInputError(f"{source}: duplicate cell id {dup!r} in obs_names; expected unique ids")
    check_count_matrix(adata.X, source, list(adata.var_names), list(adata.obs_names), whole=False)
    if label_key is not None and label_key not in adata.obs:
        raise GistInputError(f"{source}: label column {label_key!r} not in obs (have {list(adata.obs.columns)})")
    if merge:
        if label_key is None:
            raise GistInputError("merge=True needs label_key, the column of NanoString cell types")
        adata.obs["merge_cell_type"] = merge_cell_types(adata.obs[label_key].astype(object).to_numpy())
    shape = image_shape(image_path) if image_path is not None else None
    resolved = Path(image_path).resolve() if image_path is not None else None
    embedded = _embedded_image(adata, source) if image_path is None else None

    if library_key is None:
        groups = [(sample or path.stem, adata)]
    else:
        if library_key not in adata.obs:
            raise GistInputError(f"{source}: library_key {library_key!r} not in obs (have {list(adata.obs.columns)})")
        check_sample_column(adata.obs, library_key, source)
        groups = [(str(k), adata[idx].copy()) for k, idx in adata.obs.groupby(library_key, observed=True).indices.items()]
    out = []
    for name, part in groups:
        part.obs[LIBRARY_KEY] = pd.Categorical([name] * part.n_obs)
        if embedded is not None:
            part.uns["spatial"] = {name: embedded}
        else:
            part.uns["spatial"] = {
                name: spatial_entry(source="h5ad", image_path=resolved, image_shape=shape, image_scalef=image_scalef)
            }
        out.append(part)
    return join_samples(out, entries_as_read=True)


def load_prepared(path: str | Path) -> list[AnnData]:
    """Read prepared samples: one ``.h5ad`` (split by ``obs['sample']``) or a folder of per-sample files."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.h5ad"))
        if not files:
            raise GistInputError(f"no .h5ad files in {path} (expected one prepared file per sample)")
    elif path.is_file():
        files = [path]
    else:
        raise GistInputError(f"prepared data not found: {path} (expected an .h5ad file or a folder of them)")
    adatas = []
    for file in files:
        adata = _read_file(file)
        if LIBRARY_KEY not in adata.obs:
            adata.obs[LIBRARY_KEY] = pd.Categorical([file.stem] * adata.n_obs)
        check_sample_column(adata.obs, LIBRARY_KEY, str(file))
        for name in adata.obs[LIBRARY_KEY].astype(str).unique():
            part = adata[adata.obs[LIBRARY_KEY].astype(str) == name].copy() if adata.obs[LIBRARY_KEY].nunique() > 1 else adata
            adatas.append(part)
    return adatas
