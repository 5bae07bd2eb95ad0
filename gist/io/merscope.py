"""Vizgen MERSCOPE output folders (a region's ``cell_by_gene.csv``, ``cell_metadata.csv``, ``images/``).

The file names may carry a prefix (a data release names them ``<dataset>_cell_by_gene.csv``).
Cell centres (``center_x``, ``center_y``) are in microns; ``images/micron_to_mosaic_pixel_transform.csv``
(a 3 x 3 affine matrix) takes them to pixels of the mosaic images ``images/mosaic_<stain>_z<z>.tif``.
Read with pandas only (the file conventions are those of ``spatialdata_io.merscope``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from gist.errors import GistInputError
from gist.io._validate import (
    check_coordinates,
    check_count_matrix,
    find_one,
    numeric_columns,
    read_csv_checked,
    require_columns,
)
from gist.io.image import check_inside, spatial_entry, tiff_shape
from gist.keys import LIBRARY_KEY, SPATIAL_KEY

COUNTS_FILE = "cell_by_gene.csv"
METADATA_FILE = "cell_metadata.csv"
TRANSFORM_FILE = "images/micron_to_mosaic_pixel_transform.csv"
CELL_X, CELL_Y = "center_x", "center_y"
#: Columns of ``cell_by_gene.csv`` that are blank barcodes, not genes (moved to ``obsm['blank_counts']``).
BLANK_PATTERN = re.compile(r"^blank", re.IGNORECASE)


def _cell_table(path: Path, what: str) -> pd.DataFrame:
    """A MERSCOPE CSV indexed by its first column (the cell id: ``cell``, ``EntityID`` or unnamed), as text."""
    frame = read_csv_checked(path, what, index_col=0, converters={0: str})  # ids as written (38 digits in vpt output)
    frame.index = pd.Index(frame.index.astype(str).str.strip(), dtype=str)
    if (frame.index == "").any():
        raise GistInputError(f"{what} {path}: empty cell ids in the first column")
    if not frame.index.is_unique:
        dup = frame.index[frame.index.duplicated()][0]
        raise GistInputError(f"{what} {path}: duplicate cell id {dup!r}; expected each cell once")
    return frame


def micron_to_pixel(path: Path) -> np.ndarray:
    """The 3 x 3 affine matrix of ``images/micron_to_mosaic_pixel_transform.csv`` (space- or comma-separated)."""
    try:
        matrix = np.loadtxt(path, delimiter=None if "," not in path.read_text() else ",", ndmin=2)
    except ValueError as err:
        raise GistInputError(f"MERSCOPE transform {path} is not a 3 x 3 matrix of numbers: {err}") from None
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        raise GistInputError(f"MERSCOPE transform {path}: expected a 3 x 3 matrix of finite numbers, got shape "
                             f"{matrix.shape}")
    return matrix


def _image(path: Path, stain: str, z_layer: int) -> tuple[Path | None, np.ndarray | None]:
    """The mosaic image of ``stain`` at ``z_layer`` and the micron-to-pixel transform; the image
    needs the transform."""
    transform = path / TRANSFORM_FILE
    image = path / "images" / f"mosaic_{stain}_z{int(z_layer)}.tif"
    if not transform.is_file():
        if image.is_file():
            raise GistInputError(f"MERSCOPE transform not found: {transform} (needed to place the cells on {image.name})")
        return None, None
    return (image if image.is_file() else None), micron_to_pixel(transform)


def read_merscope(path: str | Path, *, sample: str | None = None, stain: str = "DAPI", z_layer: int = 3) -> AnnData:
    """Read a MERSCOPE region folder as one sample.

    Parameters
    ----------
    path
        The folder holding ``*cell_by_gene.csv`` and ``*cell_metadata.csv`` (``center_x``,
        ``center_y`` in microns), optionally ``images/micron_to_mosaic_pixel_transform.csv`` and
        ``images/mosaic_<stain>_z<z_layer>.tif``.
    sample
        Sample name (default: the folder's name).
    stain, z_layer
        The mosaic image patches are cut from (default ``mosaic_DAPI_z3.tif``, the middle layer).

    Returns
    -------
    AnnData
        Raw counts (genes only) in ``X`` (float32 CSR); ``obs`` with the metadata columns and
        ``sample``; ``obsm['spatial']`` = cell centres in mosaic pixels (column, row) when the
        transform is there, else in microns; ``obsm['spatial_um']`` in microns;
        ``obsm['blank_counts']``; ``uns['spatial'][sample]`` with the mosaic image, if any.

    Raises
    ------
    GistInputError
        If a file is missing or malformed, or a cell of the counts has no metadata row.
    """
    path = Path(path)
    if not path.is_dir():
        raise GistInputError(f"MERSCOPE folder not found: {path} (expected a folder with {COUNTS_FILE})")
    counts_path = find_one(path, f"*{COUNTS_FILE}", f"MERSCOPE {COUNTS_FILE}")
    meta_path = find_one(path, f"*{METADATA_FILE}", f"MERSCOPE {METADATA_FILE}")
    counts = _cell_table(counts_path, "MERSCOPE counts")
    meta = _cell_table(meta_path, "MERSCOPE cell metadata")
    require_columns(meta, [CELL_X, CELL_Y], f"MERSCOPE cell metadata {meta_path}")
    missing = counts.index.difference(meta.index)
    if len(missing):
        raise GistInputError(f"{len(missing)} cell(s) of {counts_path} have no row in {meta_path}, first {missing[0]!r}")
    meta = meta.loc[counts.index]

    blank_cols = [c for c in counts.columns if BLANK_PATTERN.match(c)]
    gene_cols = [c for c in counts.columns if c not in blank_cols]
    if not gene_cols:
        raise GistInputError(f"MERSCOPE counts {counts_path} have no gene columns")
    source = f"MERSCOPE counts {counts_path}"
    x = numeric_columns(counts, gene_cols, source, dtype=np.float32)
    check_count_matrix(x, source, gene_cols, list(counts.index), whole=False)
    microns = numeric_columns(meta, [CELL_X, CELL_Y], f"MERSCOPE cell metadata {meta_path}")
    check_coordinates(microns, f"MERSCOPE cell metadata {meta_path}", list(meta.index))

    sample = sample or path.name
    image, transform = _image(path, stain, z_layer)
    spatial = microns if transform is None else (np.c_[microns, np.ones(len(microns))] @ transform.T)[:, :2]
    shape = None
    if image is not None:
        shape = tiff_shape(image, "MERSCOPE mosaic image")
        check_inside(spatial, shape, sample, f"check {path / TRANSFORM_FILE}")

    obs = meta.copy()
    obs[LIBRARY_KEY] = pd.Categorical([sample] * len(obs))
    adata = AnnData(X=sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=pd.Index(gene_cols, dtype=str)))
    adata.obsm[SPATIAL_KEY] = spatial
    adata.obsm["spatial_um"] = microns
    if blank_cols:
        adata.obsm["blank_counts"] = pd.DataFrame(numeric_columns(counts, blank_cols, source, dtype=np.float32),
                                                  index=adata.obs_names, columns=blank_cols)
    entry = spatial_entry(source="merscope", image_path=None if image is None else image.resolve(), image_shape=shape)
    if transform is not None:
        entry["metadata"]["micron_to_pixel"] = transform
    adata.uns["spatial"] = {sample: entry}
    return adata
