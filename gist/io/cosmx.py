"""NanoString CosMx SMI flat files (``*_exprMat_file.csv``, ``*_metadata_file.csv``, ``CellComposite/``)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from gist.errors import GistInputError
from gist.io._validate import (
    check_coordinates,
    check_count_matrix,
    check_unique,
    find_one,
    numeric_columns,
    read_csv_checked,
    require_columns,
)
from gist.io.celltypes import merge_cell_types
from gist.io.image import image_shape, spatial_entry
from gist.io.samples import join_samples
from gist.keys import LIBRARY_KEY, SPATIAL_KEY

KEYS = ["fov", "cell_ID"]
X_COL, Y_COL = "CenterX_local_px", "CenterY_local_px"
#: Positions on the slide (pixels), used when there are neither images nor ``fov_shape``.
GLOBAL_X, GLOBAL_Y = "CenterX_global_px", "CenterY_global_px"
#: Columns of the expression matrix that are probes, not genes (moved to ``obsm['control_counts']``).
CONTROL_PATTERN = re.compile(r"^(NegPrb|Negative|NegControl|SystemControl|FalseCode)", re.IGNORECASE)
CELL_TYPE_COLUMNS = ("cell_type", "cellType", "CellType", "celltype")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: The paper drops cells closer than this to the FOV border (their 120 px patch would not fit).
PAPER_EDGE_MARGIN = 60


def _keyed_table(path: Path, what: str) -> pd.DataFrame:
    frame = read_csv_checked(path, what)
    require_columns(frame, KEYS, f"{what} {path}")
    keys = numeric_columns(frame, KEYS, f"{what} {path}")
    if np.isnan(keys).any():
        raise GistInputError(f"{what} {path}: empty fov or cell_ID values; expected integers")
    frame[KEYS] = keys.astype(np.int64)
    check_unique(frame, KEYS, f"{what} {path}")
    return frame


def fov_image_path(image_dir: Path, fov: int) -> Path:
    """Path of FOV ``fov``'s composite image, ``CellComposite_F{fov:03d}.jpg`` (or .png/.tif)."""
    stem = f"CellComposite_F{int(fov):03d}"
    for suffix in IMAGE_SUFFIXES:
        for candidate in (image_dir / f"{stem}{suffix}", image_dir / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise GistInputError(
        f"composite image for fov {fov} not found: expected {image_dir / (stem + '.jpg')} "
        "(pass image_dir=None with fov_shape=(height, width) to read without images)"
    )


def read_cosmx(
    root: str | Path,
    *,
    expr_file: str | Path | None = None,
    metadata_file: str | Path | None = None,
    annotation_file: str | Path | None = None,
    image_dir: str | Path | None = "CellComposite",
    fovs: Iterable[int] | None = None,
    cell_type_key: str | None = None,
    merge: bool = True,
    drop_unlabelled: bool = True,
    edge_margin: float = PAPER_EDGE_MARGIN,
    flip_y: bool = True,
    fov_shape: tuple[int, int] | None = None,
    sample_prefix: str | None = None,
) -> AnnData:
    """Read a CosMx flat-file export as one AnnData, FOVs told apart by ``obs['sample']``, with the
    paper's preprocessing.

    Parameters
    ----------
    root
        Folder of the export (holds ``*_exprMat_file.csv``, ``*_metadata_file.csv`` and
        ``CellComposite/CellComposite_F001.jpg``, ...).
    expr_file, metadata_file
        Override the files found in ``root``. The metadata file needs ``fov``, ``cell_ID``,
        ``CenterX_local_px`` and ``CenterY_local_px``; it may be left out when
        ``annotation_file`` has those columns.
    annotation_file
        Optional cell annotation (e.g. the paper's ``matched_annotation_all.csv``) joined on
        ``(fov, cell_ID)``; its columns take precedence over the metadata's.
    image_dir
        Folder of the composite images, relative to ``root`` unless absolute. ``None`` reads
        without images: with ``fov_shape``, local positions flipped and edge-filtered as with
        images; without it, the slide positions ``CenterX_global_px``/``CenterY_global_px`` as
        exported (else the local ones; no y flip, no edge filter: there is no image to cut patches
        from).
    fovs
        Only these FOVs (default: all in the expression file).
    cell_type_key
        Column of the cell types (default: the first of ``cell_type``, ``cellType``,
        ``CellType``, ``celltype`` present, else no labels). Stored as ``obs['cell_type']``.
    merge
        Add ``obs['merge_cell_type']``, the paper's 8 classes (:mod:`gist.io.celltypes`).
    drop_unlabelled
        Drop cells without a cell type, as the paper does (only when labels exist).
    edge_margin
        Drop cells whose centre lies closer than this many pixels to the image border
        (paper: 60). ``0`` keeps every cell.
    flip_y
        Convert ``CenterY_local_px`` (y up) to image rows: ``row = height - y`` (paper).
    fov_shape
        ``(height, width)`` of every FOV image, used when images are not read.
    sample_prefix
        Prefix of the sample names (default: the expression file's name before
        ``_exprMat_file``). Samples are named ``{prefix}_fov{fov:03d}``.

    Returns
    -------
    AnnData
        The FOVs one after the other, in FOV order: raw counts in ``X`` (float32 CSR); ``obs``
        with ``fov``, ``cell_ID``, ``sample``, the metadata columns and the labels;
        ``obsm['spatial']`` = (column, row) pixel position in the FOV's composite image (the
        global pixel position when read with neither images nor ``fov_shape``);
        ``obsm['control_counts']`` with the negative-probe/system-control counts;
        ``uns['spatial'][sample]`` with each FOV's image path and shape.

    Raises
    ------
    GistInputError
        If the files are missing or malformed, or no cell is left after the edge and label filters.
    """
    root = Path(root)
    if not root.is_dir():
        raise GistInputError(f"CosMx folder not found: {root} (expected a folder with *_exprMat_file.csv)")
    expr_path = Path(expr_file) if expr_file else find_one(root, "*exprMat_file.csv", "expression matrix")
    meta_path = Path(metadata_file) if metadata_file else find_one(
        root, "*metadata_file.csv", "metadata file", required=annotation_file is None
    )
    prefix = sample_prefix or re.sub(r"_?exprMat_file$", "", expr_path.stem) or "cosmx"

    expr = _keyed_table(expr_path, "expression matrix")
    expr = expr[expr["cell_ID"] != 0].reset_index(drop=True)  # cell 0 collects transcripts outside any cell
    feature_cols = [c for c in expr.columns if c not in KEYS]
    control_cols = [c for c in feature_cols if CONTROL_PATTERN.match(c)]
    gene_cols = [c for c in feature_cols if c not in control_cols]
    if not gene_cols:
        raise GistInputError(f"expression matrix {expr_path} has no gene columns besides fov and cell_ID")
    source = f"expression matrix {expr_path}"
    counts = numeric_columns(expr, gene_cols, source, dtype=np.float32)
    check_count_matrix(counts, source, gene_cols, whole=False)
    controls = numeric_columns(expr, control_cols, source, dtype=np.float32) if control_cols else None
    expr = expr[KEYS]

    table = _cell_table(meta_path, annotation_file)
    on_slide = image_dir is None and fov_shape is None
    has_global = {GLOBAL_X, GLOBAL_Y} <= set(table.reset_index().columns)
    xy_cols = [GLOBAL_X, GLOBAL_Y] if on_slide and has_global else [X_COL, Y_COL]
    require_columns(table.reset_index(), xy_cols, f"metadata {meta_path or annotation_file}")
    label_col = _label_column(table, cell_type_key, meta_path or annotation_file)

    wanted = sorted(expr["fov"].unique()) if fovs is None else sorted(int(f) for f in fovs)
    missing_fovs = sorted(set(wanted) - set(expr["fov"].unique()))
    if missing_fovs:
        raise GistInputError(f"fov(s) {missing_fovs} not in {expr_path} (it has {sorted(expr['fov'].unique())})")

    adatas = []
    for fov in wanted:
        rows = np.flatnonzero((expr["fov"] == fov).to_numpy())
        keys = pd.MultiIndex.from_frame(expr.iloc[rows])
        known = keys.isin(table.index)
        if not known.all():
            warnings.warn(
                f"fov {fov}: {int((~known).sum())} cell(s) of {expr_path.name} have no row in the "
                "metadata/annotation and are dropped",
                stacklevel=2,
            )
        rows = rows[known]
        obs = table.reindex(keys[known]).reset_index()
        source = f"fov {fov} of {meta_path or annotation_file}"
        xy = numeric_columns(obs, xy_cols, source)
        check_coordinates(xy, source, obs["cell_ID"].to_numpy())

        if on_slide:
            image_path, shape = None, None
            col, row, keep = xy[:, 0], xy[:, 1], np.ones(len(xy), dtype=bool)
        else:
            image_path, shape = _fov_image(root, image_dir, fov, fov_shape)
            height, width = shape
            col = xy[:, 0]
            row = height - xy[:, 1] if flip_y else xy[:, 1]
            keep = (
                (col >= edge_margin) & (col <= width - edge_margin) & (row >= edge_margin) & (row <= height - edge_margin)
            )
        if label_col is not None and drop_unlabelled:
            keep &= obs[label_col].notna().to_numpy()
        if not keep.any():
            warnings.warn(f"fov {fov}: no cell left after the edge/label filters; skipped", stacklevel=2)
            continue
        rows, obs = rows[keep], obs[keep].reset_index(drop=True)
        adatas.append(
            _fov_anndata(
                counts[rows], None if controls is None else controls[rows], gene_cols, control_cols, obs,
                np.column_stack([col[keep], row[keep]]), f"{prefix}_fov{int(fov):03d}", label_col, merge,
                image_path, shape,
            )
        )
    if not adatas:
        raise GistInputError(f"no cell of {root} is left after the edge and label filters")
    return join_samples(adatas, entries_as_read=True)


def _cell_table(meta_path: Path | None, annotation_file: str | Path | None) -> pd.DataFrame:
    """Metadata joined with the optional annotation, indexed by (fov, cell_ID)."""
    table = _keyed_table(meta_path, "metadata file").set_index(KEYS) if meta_path else None
    if annotation_file is not None:
        anno = _keyed_table(Path(annotation_file), "annotation file").set_index(KEYS)
        anno = anno.drop(columns=[c for c in anno.columns if str(c).startswith("Unnamed:")])
        if table is not None:
            # The annotation is authoritative for the columns it has (a cell it leaves unlabelled
            # stays unlabelled); only coordinates fall back to the metadata where it lacks them.
            order = list(table.columns) + [c for c in anno.columns if c not in table.columns]
            fallback = table[[c for c in table.columns if c not in anno.columns or c in (X_COL, Y_COL)]]
            anno = anno.combine_first(fallback).reindex(columns=order)
        table = anno
    return table


def _label_column(table: pd.DataFrame, cell_type_key: str | None, source) -> str | None:
    if cell_type_key is not None:
        if cell_type_key not in table.columns:
            raise GistInputError(
                f"cell type column {cell_type_key!r} not in {source} (columns: {list(table.columns)[:12]})"
            )
        return cell_type_key
    return next((c for c in CELL_TYPE_COLUMNS if c in table.columns), None)


def _fov_image(root: Path, image_dir, fov: int, fov_shape) -> tuple[Path | None, tuple[int, int]]:
    if image_dir is None:
        return None, (int(fov_shape[0]), int(fov_shape[1]))
    folder = Path(image_dir) if Path(image_dir).is_absolute() else root / image_dir
    path = fov_image_path(folder, fov)
    return path, image_shape(path)


def _fov_anndata(
    counts, controls, gene_cols, control_cols, obs, spatial, sample, label_col, merge, image_path, shape
) -> AnnData:
    obs = obs.copy()
    obs[LIBRARY_KEY] = pd.Categorical([sample] * len(obs))
    if label_col is not None:
        obs["cell_type"] = obs.pop(label_col).astype("category")
        if merge:
            obs["merge_cell_type"] = merge_cell_types(obs["cell_type"].astype(object))
    obs.index = pd.Index([f"{sample}_{c}" for c in obs["cell_ID"]])
    adata = AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=pd.Index(gene_cols, dtype=str)))
    adata.obsm[SPATIAL_KEY] = spatial.astype(np.float64)
    if controls is not None:
        adata.obsm["control_counts"] = pd.DataFrame(controls, index=adata.obs_names, columns=control_cols)
    adata.uns["spatial"] = {
        sample: spatial_entry(
            source="cosmx",
            image_path=None if image_path is None else image_path.resolve(),
            image_shape=shape,
        )
    }
    return adata
