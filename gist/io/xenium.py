"""10x Genomics Xenium output folders, read with ``spatialdata-io``.

The cell-feature matrix gives the counts; each cell's centroid (``cells.parquet``, microns) becomes a
pixel position in the morphology image through the pixel size of ``experiment.xenium``, so that
patches are cut from the cell itself. The morphology image (``morphology_focus.ome.tif``, or the
``morphology_focus/`` folder from XOA 2.0 on) is a multi-channel 16-bit fluorescence stack: DAPI
first, then the boundary and interior stains when the segmentation kit was used.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

from anndata import AnnData

from gist.errors import GistInputError
from gist.io._validate import require_file
from gist.io.spatialdata import to_anndata

#: Files every Xenium output folder holds that the reader needs.
XENIUM_FILES = ("experiment.xenium", "cell_feature_matrix.h5", "cells.parquet", "cells.zarr.zip")
MORPHOLOGY = "morphology_focus"


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


def _check_folder(path: Path) -> None:
    if not path.is_dir():
        raise GistInputError(f"Xenium output folder not found: {path}")
    for name in XENIUM_FILES:
        require_file(path / name, f"Xenium {name}")
    if not ((path / f"{MORPHOLOGY}.ome.tif").is_file() or (path / MORPHOLOGY).is_dir()):
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
    sample
        Sample name (default: the folder's name).
    channels
        Morphology channels drawn as red, green, blue for the image features (default: the first
        three: DAPI, boundary, interior stain; ``[0]``: DAPI alone).
    image_key
        The image patches are cut from: ``morphology_focus`` (default), ``morphology_mip`` (XOA < 2)
        or an aligned post-Xenium image (``he_image``, ``if_image``).

    Returns
    -------
    AnnData
        Raw counts (gene-expression features only) in ``X``; ``obsm['spatial']`` = centroid in
        morphology pixels (column, row); ``obsm['spatial_global']`` the same (the Xenium global frame
        is the morphology image's); ``obs['sample']``; ``uns['spatial'][sample]`` pointing at the folder.
    """
    path = Path(path)
    _check_folder(path)
    size = pixel_size(path)
    sdata = _read(path, table=True, image=image_key)
    adata = to_anndata(sdata, table_key="table", image_key=image_key, sample=sample or path.name, channels=channels,
                       image_path=path.resolve(), source="xenium", what=f"Xenium {path}",
                       outside_hint=f"check pixel_size {size:g} microns per pixel in experiment.xenium")
    adata.uns["spatial"][adata.obs["sample"].iloc[0]]["metadata"]["pixel_size_um"] = size
    return adata
