"""10x Genomics Visium HD output folders (binned outputs), read with ``spatialdata-io``.

One bin size is read (``binned_outputs/square_008um/`` by default). Bin centres come in
full-resolution pixels; they are placed on the image patches are cut from: the full-resolution
microscope image when one is given or found (``microscope_image/``), else the hires PNG, through
the scale factors.
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


def _bin_folder(path: Path, bin_size: int) -> Path:
    name = f"square_{int(bin_size):03d}um"
    binned = path / "binned_outputs"
    folder = binned / name
    if not folder.is_dir():
        have = sorted(p.name for p in binned.iterdir() if p.is_dir()) if binned.is_dir() else []
        raise GistInputError(f"Visium HD bin size {bin_size} um not found: no {folder} (have {have or 'no binned_outputs/'})")
    for rel in ("filtered_feature_bc_matrix.h5", "spatial/tissue_positions.parquet", "spatial/scalefactors_json.json"):
        require_file(folder / rel, f"Visium HD {name}/{rel}")
    return folder


def read_visium_hd(path: str | Path, bin_size: int = 8, *, fullres_image: str | Path | None = None,
                   sample: str | None = None, channels: Sequence[int] | None = None) -> AnnData:
    """Read one bin size of a Visium HD ``outs/`` folder as one sample.

    Parameters
    ----------
    path
        The Space Ranger ``outs/`` folder (``*feature_slice.h5``, ``binned_outputs/``, ``spatial/``).
    bin_size
        Bin side in microns (2, 8 or 16 as Space Ranger writes them).
    fullres_image
        The full-resolution microscope image (default: the one in ``microscope_image/``, else the
        hires PNG is used).
    sample
        Sample name (default: the folder's name, or the dataset prefix of its files).
    channels
        Image channels drawn as red, green, blue (default: an RGB H&E image as it is).

    Returns
    -------
    AnnData
        Raw counts in ``X``; ``obsm['spatial']`` = bin centres in pixels of the image used;
        ``obs['sample']`` and the bins' ``array_row``/``array_col``/``in_tissue``;
        ``uns['spatial'][sample]`` with that image and the bin's width in its pixels as the spot diameter.
    """
    from spatialdata_io import visium_hd


    path = Path(path)
    if not path.is_dir():
        raise GistInputError(f"Visium HD folder not found: {path}")
    folder = _bin_folder(path, bin_size)
    factors = json.loads((folder / "spatial" / "scalefactors_json.json").read_text())
    if not float(factors.get("microns_per_pixel", 0) or 0) > 0:
        raise GistInputError(f"{folder / 'spatial' / 'scalefactors_json.json'}: microns_per_pixel must be > 0")
    if fullres_image is not None:
        require_file(fullres_image, "Visium HD full-resolution image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sdata = visium_hd(path, bin_size=int(bin_size), load_segmentations_only=False, fullres_image_file=fullres_image)
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
