"""10x Genomics Visium HD output folders (binned outputs).

One bin size is read (``binned_outputs/square_008um/`` by default), or the one bin folder given.
Bin centres come in full-resolution pixels; they are placed on the image patches are cut from: the
full-resolution microscope image when one is given or found (``microscope_image/``), else the hires
PNG (else the lowres PNG), through the scale factors. A complete ``outs/`` folder (with
``*feature_slice.h5``) is read with ``spatialdata-io``; a bin folder alone, or an ``outs/`` folder
without the feature slice, is read directly (HDF5 or mtx matrix, ``tissue_positions.parquet``).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from gist.errors import GistInputError
from gist.io._validate import check_coordinates, require_columns, require_file
from gist.io.image import check_inside, image_shape, spatial_entry
from gist.io.spatialdata import to_anndata
from gist.io.tenx import find_matrix, read_10x_matrix
from gist.io.visium import MATRIX_STEMS, POSITION_COLUMNS
from gist.keys import LIBRARY_KEY, SPATIAL_KEY

DEFAULT_BIN_SIZE = 8
BIN_FOLDER = re.compile(r"^square_(\d+)um$")
POSITIONS = "spatial/tissue_positions.parquet"
SCALE_FACTORS = "spatial/scalefactors_json.json"


def bin_folder_size(path: Path) -> int | None:
    """The bin side (microns) of a ``square_<bin>um/`` folder holding ``spatial/``, else ``None``."""
    match = BIN_FOLDER.match(Path(path).name)
    return int(match.group(1)) if match and (Path(path) / "spatial").is_dir() else None


def _bin_folder(path: Path, bin_size: int) -> Path:
    name = f"square_{int(bin_size):03d}um"
    binned = path / "binned_outputs"
    folder = binned / name
    if not folder.is_dir():
        have = sorted(p.name for p in binned.iterdir() if p.is_dir()) if binned.is_dir() else []
        raise GistInputError(f"Visium HD bin size {bin_size} um not found: no {folder} (have {have or 'no binned_outputs/'})")
    for rel in (POSITIONS, SCALE_FACTORS):
        require_file(folder / rel, f"Visium HD {name}/{rel}")
    return folder


def _scale_factors(folder: Path) -> dict:
    scale_path = require_file(folder / SCALE_FACTORS, f"Visium HD {folder.name}/{SCALE_FACTORS}")
    try:
        factors = json.loads(scale_path.read_text())
    except json.JSONDecodeError as err:
        raise GistInputError(f"Visium HD scale factors {scale_path} are not valid JSON: {err}") from None
    if not float(factors.get("microns_per_pixel", 0) or 0) > 0:
        raise GistInputError(f"{scale_path}: microns_per_pixel must be > 0")
    return factors


def read_visium_hd(path: str | Path, bin_size: int | None = None, *, fullres_image: str | Path | None = None,
                   sample: str | None = None, channels: Sequence[int] | None = None,
                   dataset_id: str | None = None) -> AnnData:
    """Read one bin size of a Visium HD ``outs/`` folder, or one bin folder, as one sample.

    Parameters
    ----------
    path
        The Space Ranger ``outs/`` folder (``*feature_slice.h5``, ``binned_outputs/``, ``spatial/``),
        or one bin folder ``binned_outputs/square_<bin>um/`` (the count matrix as
        ``filtered_feature_bc_matrix.h5`` or its mtx folder, ``spatial/tissue_positions.parquet``,
        ``spatial/scalefactors_json.json``).
    bin_size
        Bin side in microns (2, 8 or 16 as Space Ranger writes them; default: 8, or the bin folder's).
    fullres_image
        The full-resolution microscope image (default: the one in ``microscope_image/``, else the
        hires PNG, else the lowres PNG is used).
    sample
        Sample name (default: ``dataset_id``).
    channels
        Image channels drawn as red, green, blue (default: an RGB H&E image as it is).
    dataset_id
        The dataset's name (default: the prefix of ``*feature_slice.h5``; without that file, the
        ``outs/`` folder's name).

    Returns
    -------
    AnnData
        Raw counts in ``X``; ``obsm['spatial']`` = bin centres in pixels of the image used;
        ``obs['sample']`` and the bins' ``array_row``/``array_col``/``in_tissue``;
        ``uns['spatial'][sample]`` with that image and the bin's width in its pixels as the spot diameter.
    """
    path = Path(path)
    if not path.is_dir():
        raise GistInputError(f"Visium HD folder not found: {path}")
    if fullres_image is not None:
        require_file(fullres_image, "Visium HD full-resolution image")
    size = bin_folder_size(path)
    if size is not None:
        if bin_size is not None and int(bin_size) != size:
            raise GistInputError(f"Visium HD bin folder {path} holds {size} um bins, not bin_size {bin_size} um")
        outs = path.parent.parent if path.parent.name == "binned_outputs" else path.parent
        return _read_bins(path, outs, fullres_image, sample, channels, dataset_id)
    bin_size = DEFAULT_BIN_SIZE if bin_size is None else int(bin_size)
    folder = _bin_folder(path, bin_size)
    if not any(path.glob("*feature_slice.h5")):
        return _read_bins(folder, path, fullres_image, sample, channels, dataset_id)
    require_file(folder / "filtered_feature_bc_matrix.h5", f"Visium HD {folder.name}/filtered_feature_bc_matrix.h5")
    return _read_with_spatialdata(path, folder, bin_size, fullres_image, sample, channels, dataset_id)


def _read_with_spatialdata(path: Path, folder: Path, bin_size: int, fullres_image, sample, channels,
                           dataset_id) -> AnnData:
    """A complete ``outs/`` folder, through ``spatialdata_io.visium_hd``."""
    from spatialdata_io import visium_hd

    factors = _scale_factors(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sdata = visium_hd(path, dataset_id=dataset_id, bin_size=int(bin_size), load_segmentations_only=False,
                              fullres_image_file=fullres_image)
        except GistInputError:
            raise
        except Exception as err:  # spatialdata-io raises many types for a damaged folder
            raise GistInputError(f"Visium HD folder {path} could not be read: {type(err).__name__}: {err}") from None
    table_key = folder.name
    region = sdata.tables[table_key].uns["spatialdata_attrs"]["region"]
    dataset_id = region[: -len(table_key) - 1] if region.endswith(f"_{table_key}") else region
    full, hires = f"{dataset_id}_full_image", f"{dataset_id}_hires_image"
    image_key = full if full in sdata.images else hires
    if image_key not in sdata.images:
        raise GistInputError(f"Visium HD folder {path}: no image to cut patches from (no full-resolution image, no "
                             "spatial/tissue_hires_image.png); pass fullres_image=")
    if image_key == full:
        image_file = Path(fullres_image) if fullres_image is not None else \
            next(p for p in sorted((path / "microscope_image").iterdir()) if p.is_file())
        scale = 1.0
    else:
        image_file = next(p for p in sorted(path.rglob("tissue_hires_image.png")))
        scale = float(factors["tissue_hires_scalef"])
    adata = to_anndata(sdata, table_key=table_key, image_key=image_key, coordinate_system=dataset_id,
                       sample=sample or dataset_id or path.name, channels=channels, image_path=image_file.resolve(),
                       image_is_file=True, source="visium_hd", spot_diameter_px=float(factors["spot_diameter_fullres"]) * scale,
                       what=f"Visium HD {path}",
                       outside_hint="check the scale factors in spatial/scalefactors_json.json")
    return adata


def _bin_positions(folder: Path) -> pd.DataFrame:
    """``spatial/tissue_positions.parquet`` of a bin folder, indexed by barcode."""
    where = require_file(folder / POSITIONS, f"Visium HD {folder.name}/{POSITIONS}")
    try:
        frame = pd.read_parquet(where)
    except Exception as err:  # pyarrow raises many types for a damaged file
        raise GistInputError(f"Visium HD tissue positions {where} are unreadable: {type(err).__name__}: {err}") from None
    require_columns(frame, POSITION_COLUMNS, f"Visium HD tissue positions {where}")
    return frame.set_index("barcode")


def _bin_image(folder: Path, outs: Path, fullres_image, factors: dict) -> tuple[Path | None, float]:
    """The image patches are cut from and its scale from full-resolution pixels: ``fullres_image``,
    else ``microscope_image/``, else the hires PNG, else the lowres PNG (of the bin folder or of
    ``outs/``), else none."""
    if fullres_image is not None:
        return Path(fullres_image), 1.0
    micro = outs / "microscope_image"
    if micro.is_dir():
        files = sorted(p for p in micro.iterdir() if p.is_file())
        if files:
            return files[0], 1.0
    for kind in ("hires", "lowres"):
        for where in (folder / "spatial", outs / "spatial"):
            if (where / f"tissue_{kind}_image.png").is_file():
                return where / f"tissue_{kind}_image.png", float(factors[f"tissue_{kind}_scalef"])
    return None, 1.0


def _read_bins(folder: Path, outs: Path, fullres_image, sample, channels, dataset_id) -> AnnData:
    """One bin folder read directly: counts, bin centres on the image used, the bin's width in it."""
    factors = _scale_factors(folder)
    positions = _bin_positions(folder)
    counts_path = find_matrix(folder, MATRIX_STEMS, f"Visium HD {folder.name} count matrix")
    adata = read_10x_matrix(counts_path)
    missing = adata.obs_names.difference(positions.index)
    if len(missing):
        raise GistInputError(f"{len(missing)} bin(s) of {counts_path} have no row in {folder / POSITIONS}, "
                             f"first {missing[0]!r}")
    positions = positions.loc[adata.obs_names]
    for col in ("in_tissue", "array_row", "array_col"):
        adata.obs[col] = positions[col].to_numpy()
    fullres = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)
    check_coordinates(fullres, f"Visium HD tissue positions {folder / POSITIONS}", adata.obs_names)
    image_file, scale = _bin_image(folder, outs, fullres_image, factors)
    dataset_id = dataset_id or outs.name
    sample = sample or dataset_id
    pixels = fullres * scale
    shape = None
    if image_file is not None:
        shape = image_shape(image_file)
        check_inside(pixels, shape, sample, f"check the scale factors in {folder / SCALE_FACTORS}")
    adata.obs[LIBRARY_KEY] = pd.Categorical([sample] * adata.n_obs)
    adata.obsm[SPATIAL_KEY] = pixels
    adata.obsm[f"spatial_{dataset_id}"] = fullres
    entry = spatial_entry(source="visium_hd", image_path=None if image_file is None else image_file.resolve(),
                          image_shape=shape, image_scalef=1.0,
                          spot_diameter_fullres=float(factors["spot_diameter_fullres"]) * scale)
    entry["metadata"]["coordinate_system"] = dataset_id
    if channels is not None:
        entry["metadata"]["image_channels"] = [int(c) for c in channels]
    adata.uns["spatial"] = {sample: entry}
    return adata
