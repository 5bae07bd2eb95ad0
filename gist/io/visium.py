"""10x Visium output folders (``spaceranger count`` ``outs/``): the count matrix as HDF5 or as the mtx
folder (filtered, else raw), ``spatial/`` positions, scale factors and images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from gist.errors import GistInputError
from gist.io._validate import check_coordinates, read_csv_checked, require_columns, require_file
from gist.io.image import image_shape, spatial_entry
from gist.io.tenx import find_matrix, read_10x_matrix
from gist.keys import LIBRARY_KEY, SPATIAL_KEY

#: Count matrices looked for, in this order, each as ``<stem>.h5`` then as the ``<stem>/`` mtx folder.
MATRIX_STEMS = ("filtered_feature_bc_matrix", "raw_feature_bc_matrix")
POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]


def _positions(spatial_dir: Path) -> pd.DataFrame:
    new, old = spatial_dir / "tissue_positions.csv", spatial_dir / "tissue_positions_list.csv"
    if new.is_file():
        frame = read_csv_checked(new, "tissue positions")
        require_columns(frame, POSITION_COLUMNS, f"tissue positions {new}")
    elif old.is_file():
        frame = read_csv_checked(old, "tissue positions", header=None)
        if frame.shape[1] != len(POSITION_COLUMNS):
            raise GistInputError(f"tissue positions {old}: {frame.shape[1]} columns, expected {len(POSITION_COLUMNS)}")
        frame.columns = POSITION_COLUMNS
    else:
        raise GistInputError(f"no tissue positions in {spatial_dir} (expected tissue_positions.csv or tissue_positions_list.csv)")
    return frame.set_index("barcode")


def _count_path(path: Path, count_file: str | None) -> Path:
    """The count matrix of a Visium folder: ``count_file`` (file or mtx folder), else the first of
    :data:`MATRIX_STEMS` present."""
    if count_file is None:
        return find_matrix(path, MATRIX_STEMS, "Visium count matrix")
    counts_path = path / count_file
    if not counts_path.exists():
        raise GistInputError(f"Visium count matrix not found: {counts_path} (expected a 10x .h5 file or mtx folder)")
    return counts_path


def read_visium(
    path: str | Path,
    *,
    count_file: str | None = None,
    library_id: str | None = None,
    fullres_image: str | Path | None = None,
    labels: str | Path | None = None,
    label_key: str = "label",
    barcode_column: str | None = None,
) -> AnnData:
    """Read a Visium ``outs/`` folder (scanpy's ``read_visium`` layout) as one sample.

    Parameters
    ----------
    path
        Folder holding the count matrix and ``spatial/`` (``tissue_positions.csv`` or
        ``tissue_positions_list.csv``, ``scalefactors_json.json``, ``tissue_hires_image.png`` or
        ``tissue_lowres_image.png``).
    count_file
        The count matrix inside ``path``: a 10x HDF5 file or an mtx folder (``matrix.mtx``,
        ``features.tsv``, ``barcodes.tsv``, gzipped or not). Default: the first of
        ``filtered_feature_bc_matrix.h5``, ``filtered_feature_bc_matrix/``, ``raw_feature_bc_matrix.h5``,
        ``raw_feature_bc_matrix/``. From a raw matrix only the spots in tissue are kept.
    library_id
        Sample name (default: the folder's name; for ``outs/`` its parent's).
    fullres_image
        The full-resolution tissue image. Without it the hires PNG is recorded, with
        ``image_scalef = tissue_hires_scalef`` (else the lowres PNG with ``tissue_lowres_scalef``).
    labels
        Optional CSV of spot labels keyed by barcode.
    label_key
        Column of ``labels`` holding the label; stored under the same name in ``obs``.
    barcode_column
        Column of ``labels`` holding barcodes (default: the first column).

    Returns
    -------
    AnnData
        Raw counts in ``X``; ``obsm['spatial']`` = (column, row) in full-resolution pixels;
        ``obs['sample']``; ``uns['spatial'][library_id]`` with scale factors and image path.
    """
    path = Path(path)
    if not path.is_dir():
        raise GistInputError(f"Visium folder not found: {path}")
    counts_path = _count_path(path, count_file)
    adata = read_10x_matrix(counts_path)
    library_id = library_id or (path.parent.name if path.name == "outs" else path.name)

    spatial_dir = path / "spatial"
    positions = _positions(spatial_dir)
    missing = adata.obs_names.difference(positions.index)
    if len(missing):
        raise GistInputError(f"{len(missing)} barcode(s) of {counts_path} have no tissue position, first {missing[0]!r}")
    positions = positions.loc[adata.obs_names]
    if counts_path.name.startswith("raw"):  # every spot of the slide: keep those Space Ranger put in tissue
        in_tissue = positions["in_tissue"].to_numpy() == 1
        if not in_tissue.any():
            raise GistInputError(f"no spot of {counts_path} is in tissue (in_tissue = 1 in {spatial_dir})")
        adata, positions = adata[in_tissue].copy(), positions[in_tissue]
    for col in ("in_tissue", "array_row", "array_col"):
        adata.obs[col] = positions[col].to_numpy()
    coords = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)
    check_coordinates(coords, f"tissue positions in {spatial_dir}", adata.obs_names)
    adata.obsm[SPATIAL_KEY] = coords

    scale_path = require_file(spatial_dir / "scalefactors_json.json", "Visium scale factors")
    try:
        factors = json.loads(scale_path.read_text())
    except json.JSONDecodeError as err:
        raise GistInputError(f"Visium scale factors {scale_path} are not valid JSON: {err}") from None
    if fullres_image is not None:
        image_path, scalef = Path(fullres_image), 1.0
    elif (spatial_dir / "tissue_hires_image.png").is_file():
        image_path, scalef = spatial_dir / "tissue_hires_image.png", float(factors.get("tissue_hires_scalef", 1.0))
    elif (spatial_dir / "tissue_lowres_image.png").is_file():
        image_path, scalef = spatial_dir / "tissue_lowres_image.png", float(factors.get("tissue_lowres_scalef", 1.0))
    else:
        image_path, scalef = None, 1.0
    shape = image_shape(image_path) if image_path is not None else None

    if labels is not None:
        table = read_csv_checked(labels, "label file")
        key_col = barcode_column or table.columns[0]
        require_columns(table, [key_col, label_key], f"label file {labels}")
        table = table.drop_duplicates(subset=key_col).set_index(key_col)
        adata.obs[label_key] = table[label_key].reindex(adata.obs_names).astype("category").to_numpy()
        if adata.obs[label_key].isna().all():
            raise GistInputError(f"label file {labels}: no barcode in column {key_col!r} matches {counts_path}")

    adata.obs[LIBRARY_KEY] = pd.Categorical([library_id] * adata.n_obs)
    adata.uns["spatial"] = {
        library_id: spatial_entry(
            source="visium",
            image_path=None if image_path is None else image_path.resolve(),
            image_shape=shape,
            image_scalef=scalef,
            spot_diameter_fullres=factors.get("spot_diameter_fullres"),
            scalefactors={k: float(v) for k, v in factors.items() if isinstance(v, (int, float))},
        )
    }
    return adata
