"""10x Genomics Xenium output folders.

The cell-feature matrix gives the counts; each cell's centroid (``cells.parquet``, microns) becomes a
pixel position in the morphology image through the pixel size of ``experiment.xenium``, so that
patches are cut from the cell itself. The morphology image (``morphology_focus.ome.tif``, or the
``morphology_focus/`` folder from XOA 2.0 on) is a multi-channel 16-bit fluorescence stack: DAPI
first, then the boundary and interior stains when the segmentation kit was used.

A complete folder is read with ``spatialdata-io``. One without the optional ``cells.zarr.zip`` or
without the morphology image is read directly: counts from ``cell_feature_matrix.h5`` (or the
``cell_feature_matrix/`` mtx folder), centroids from ``cells.parquet`` (or ``cells.csv.gz``), the
morphology image file when there is one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from gist.errors import GistInputError
from gist.io._validate import check_coordinates, read_csv_checked, require_columns, require_file
from gist.io.image import check_inside, spatial_entry, tiff_shape
from gist.io.spatialdata import to_anndata
from gist.io.tenx import find_matrix, read_10x_matrix
from gist.keys import LIBRARY_KEY, SPATIAL_KEY

#: Files every Xenium output folder holds that the ``spatialdata-io`` reader needs.
XENIUM_FILES = ("experiment.xenium", "cell_feature_matrix.h5", "cells.parquet", "cells.zarr.zip")
#: Cell tables, in the order they are looked for (centroids in microns).
CELL_FILES = ("cells.parquet", "cells.csv.gz")
CELL_COLUMNS = ["cell_id", "x_centroid", "y_centroid"]
MORPHOLOGY = "morphology_focus"
#: The image file of each morphology element, for the direct reader (XOA 2: DAPI of the focus folder).
MORPHOLOGY_FILES = {MORPHOLOGY: (f"{MORPHOLOGY}.ome.tif", f"{MORPHOLOGY}/{MORPHOLOGY}_0000.ome.tif"),
                    "morphology_mip": ("morphology_mip.ome.tif",)}


def pixel_size(path: Path) -> float:
    """The microns per morphology-image pixel recorded in ``experiment.xenium``."""
    specs_path = require_file(path / "experiment.xenium", "Xenium specification")
    try:
        specs = json.loads(specs_path.read_text())
        size = float(specs["pixel_size"])
    except json.JSONDecodeError as err:
        raise GistInputError(f"Xenium specification {specs_path} is not valid JSON: {err}") from None
    except (KeyError, TypeError, ValueError):
        raise GistInputError(f"Xenium specification {specs_path} has no numeric 'pixel_size' (microns per pixel)") from None
    if not size > 0:
        raise GistInputError(f"Xenium specification {specs_path}: pixel_size must be > 0 microns, got {size}")
    return size


def _has_morphology(path: Path) -> bool:
    return (path / f"{MORPHOLOGY}.ome.tif").is_file() or (path / MORPHOLOGY).is_dir()


def _complete(path: Path, image: str) -> bool:
    """Whether ``spatialdata-io`` can read the folder: every file of :data:`XENIUM_FILES` and the image."""
    if not all((path / name).is_file() for name in XENIUM_FILES):
        return False
    if image == MORPHOLOGY:
        return _has_morphology(path)
    return image not in MORPHOLOGY_FILES or (path / MORPHOLOGY_FILES[image][0]).is_file()


def _check_folder(path: Path) -> None:
    if not path.is_dir():
        raise GistInputError(f"Xenium output folder not found: {path}")
    for name in XENIUM_FILES:
        require_file(path / name, f"Xenium {name}")
    if not _has_morphology(path):
        raise GistInputError(f"Xenium morphology image not found in {path} (expected {MORPHOLOGY}.ome.tif or "
                             f"{MORPHOLOGY}/ with morphology_focus_0000.ome.tif)")


def _read(path: Path, table: bool, image: str):
    from spatialdata_io import xenium

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return xenium(path, cells_boundaries=False, nucleus_boundaries=False, cells_as_circles=table,
                          cells_labels=False, nucleus_labels=False, transcripts=False,
                          morphology_mip=image == "morphology_mip", morphology_focus=image == MORPHOLOGY,
                          aligned_images=image not in (MORPHOLOGY, "morphology_mip"), cells_table=table)
        except GistInputError:
            raise
        except Exception as err:  # spatialdata-io raises many types for a damaged folder
            raise GistInputError(f"Xenium folder {path} could not be read: {type(err).__name__}: {err}") from None


def xenium_images(path: str | Path, element: str = MORPHOLOGY) -> dict:
    """The image elements of a Xenium folder (lazy), for :func:`gist.io.image.get_image`."""
    path = Path(path)
    _check_folder(path)
    return dict(_read(path, table=False, image=element).images)


def read_xenium(path: str | Path, *, sample: str | None = None, channels: Sequence[int] | None = None,
                image_key: str = MORPHOLOGY) -> AnnData:
    """Read a Xenium output folder as one sample.

    Parameters
    ----------
    path
        The folder ``xeniumranger``/the instrument wrote (``experiment.xenium``,
        ``cell_feature_matrix.h5``, ``cells.parquet``, ``cells.zarr.zip`` and the morphology image).
        Without ``cells.zarr.zip`` or the morphology image it is read directly: counts from
        ``cell_feature_matrix.h5`` or ``cell_feature_matrix/``, centroids from ``cells.parquet`` or
        ``cells.csv.gz``, and no image when there is none (extract with ``--extractor none``).
    sample
        Sample name (default: the folder's name).
    channels
        Morphology channels drawn as red, green, blue for the image features (default: the first
        three: DAPI, boundary, interior stain; ``[0]``: DAPI alone).
    image_key
        The image patches are cut from: ``morphology_focus`` (default), ``morphology_mip`` (XOA < 2)
        or an aligned post-Xenium image (``he_image``, ``if_image``; needs ``cells.zarr.zip``).

    Returns
    -------
    AnnData
        Raw counts (gene-expression features only) in ``X``; ``obsm['spatial']`` = centroid in
        morphology pixels (column, row); ``obsm['spatial_global']`` the same (the Xenium global frame
        is the morphology image's); ``obs['sample']``; ``uns['spatial'][sample]`` pointing at the folder.
    """
    path = Path(path)
    if not path.is_dir():
        raise GistInputError(f"Xenium output folder not found: {path}")
    size = pixel_size(path)
    if not _complete(path, image_key):
        return _read_direct(path, size, sample or path.name, channels, image_key)
    _check_folder(path)
    sdata = _read(path, table=True, image=image_key)
    adata = to_anndata(sdata, table_key="table", image_key=image_key, sample=sample or path.name, channels=channels,
                       image_path=path.resolve(), source="xenium", what=f"Xenium {path}",
                       outside_hint=f"check pixel_size {size:g} microns per pixel in experiment.xenium")
    adata.uns["spatial"][adata.obs["sample"].iloc[0]]["metadata"]["pixel_size_um"] = size
    return adata


def _cells(path: Path) -> tuple[pd.DataFrame, Path]:
    """The cell table (``cells.parquet``, else ``cells.csv.gz``) indexed by ``cell_id`` as text."""
    where = next((path / name for name in CELL_FILES if (path / name).is_file()), None)
    if where is None:
        raise GistInputError(f"Xenium {CELL_FILES[0]} not found: {path / CELL_FILES[0]} (nor {CELL_FILES[1]}; "
                             "expected the cell centroids x_centroid, y_centroid in microns)")
    if where.suffix == ".parquet":
        try:
            frame = pd.read_parquet(where)
        except Exception as err:  # pyarrow raises many types for a damaged file
            raise GistInputError(f"Xenium cells {where} are unreadable: {type(err).__name__}: {err}") from None
    else:
        frame = read_csv_checked(where, "Xenium cells")
    frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed:") or str(c) == ""])
    require_columns(frame, CELL_COLUMNS, f"Xenium cells {where}")
    ids = [v.decode() if isinstance(v, bytes) else str(v) for v in frame["cell_id"]]
    return frame.drop(columns="cell_id").set_index(pd.Index(ids, dtype=str)), where


def _read_direct(path: Path, size: float, sample: str, channels: Sequence[int] | None, image_key: str) -> AnnData:
    """A Xenium folder without ``cells.zarr.zip`` or without the morphology image (module docstring)."""
    if image_key not in MORPHOLOGY_FILES:
        require_file(path / "cells.zarr.zip", f"Xenium cells.zarr.zip (needed for the aligned image {image_key!r})")
    adata = read_10x_matrix(find_matrix(path, ("cell_feature_matrix",), "Xenium cell-feature matrix"))
    cells, where = _cells(path)
    missing = adata.obs_names.difference(cells.index)
    if len(missing):
        raise GistInputError(f"{len(missing)} cell(s) of the cell-feature matrix in {path} have no row in {where}, "
                             f"first {missing[0]!r}")
    cells = cells.loc[adata.obs_names]
    microns = cells[["x_centroid", "y_centroid"]].to_numpy(dtype=np.float64)
    check_coordinates(microns, f"Xenium cells {where}", adata.obs_names)
    pixels = microns / size
    image = next((path / name for name in MORPHOLOGY_FILES[image_key] if (path / name).is_file()), None) \
        if image_key in MORPHOLOGY_FILES else None
    shape = None
    if image is not None:
        shape = tiff_shape(image, "Xenium morphology image")
        check_inside(pixels, shape, sample, f"check pixel_size {size:g} microns per pixel in experiment.xenium")
    adata.obs = cells.drop(columns=["x_centroid", "y_centroid"]).set_index(adata.obs_names)
    adata.obs[LIBRARY_KEY] = pd.Categorical([sample] * adata.n_obs)
    adata.obsm[SPATIAL_KEY] = pixels
    adata.obsm["spatial_global"] = pixels.copy()
    entry = spatial_entry(source="xenium", image_path=None if image is None else image.resolve(), image_shape=shape)
    entry["metadata"]["pixel_size_um"] = size
    entry["metadata"]["cells_file"] = str(where.resolve())
    if channels is not None:
        entry["metadata"]["image_channels"] = [int(c) for c in channels]
    adata.uns["spatial"] = {sample: entry}
    return adata
