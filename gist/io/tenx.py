"""10x Genomics count matrices, as Cell Ranger, Space Ranger and Xenium Onboard Analysis write them:
the HDF5 file (``*feature_bc_matrix.h5``, ``cell_feature_matrix.h5``) or the Matrix Market folder
(``matrix.mtx``, ``features.tsv`` or ``genes.tsv``, ``barcodes.tsv``; gzipped or not).

Read with h5py, scipy and pandas rather than scanpy, which refuses a v3 HDF5 file whose index
arrays are stored as floats, and mtx files whether gzipped or not, whatever their names say (both
occur in real exports: a ``.tsv.gz`` that is plain text).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
from anndata import AnnData

from gist.errors import GistInputError

GENE_EXPRESSION = "Gene Expression"
MTX_FILES = {"matrix": ("matrix.mtx.gz", "matrix.mtx"),
             "features": ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"),
             "barcodes": ("barcodes.tsv.gz", "barcodes.tsv")}


def _texts(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values)]


def _integers(values, name: str, path: Path) -> np.ndarray:
    """An index array as int64, refusing non-integral values (a float array is accepted when whole)."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise GistInputError(f"10x matrix {path}: matrix/{name} holds non-integer values; expected indices")
    return values.astype(np.int64)


def _anndata(counts: sp.spmatrix, barcodes: list[str], var: pd.DataFrame, gex_only: bool, source: str) -> AnnData:
    """Cells x features AnnData (float32 CSR), gene names as ``var_names``, made unique."""
    if gex_only and "feature_types" in var and (var["feature_types"] == GENE_EXPRESSION).any():
        keep = (var["feature_types"] == GENE_EXPRESSION).to_numpy()
        counts, var = counts[:, keep], var[keep]
    if not len(var):
        raise GistInputError(f"{source}: no gene-expression features")
    names = pd.Index(var["name"].to_numpy(), dtype=str)
    adata = AnnData(X=sp.csr_matrix(counts, dtype=np.float32), obs=pd.DataFrame(index=pd.Index(barcodes, dtype=str)),
                    var=var.drop(columns="name").set_index(names))
    adata.var_names_make_unique()
    return adata


def read_10x_h5(path: str | Path, *, gex_only: bool = True) -> AnnData:
    """A 10x HDF5 count matrix (v3 layout: ``matrix/`` with ``features/``).

    Parameters
    ----------
    path
        The ``.h5`` file.
    gex_only
        Keep only ``Gene Expression`` features (drops control probes, antibody capture, ...).

    Returns
    -------
    AnnData
        Counts (cells x genes, float32 CSR), barcodes as ``obs_names``, gene names as ``var_names``
        with ``var['gene_ids']`` and ``var['feature_types']``.
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "matrix" not in f:  # the v2 layout (one group per genome): scanpy reads it
                import scanpy as sc

                return sc.read_10x_h5(path, gex_only=gex_only)
            g = f["matrix"]
            shape = tuple(_integers(g["shape"][()], "shape", path))
            data = np.asarray(g["data"][()])
            indices = _integers(g["indices"][()], "indices", path)
            indptr = _integers(g["indptr"][()], "indptr", path)
            barcodes = _texts(g["barcodes"][()])
            feats = g["features"]
            var = pd.DataFrame({"name": _texts(feats["name"][()]), "gene_ids": _texts(feats["id"][()])})
            if "feature_type" in feats:
                var["feature_types"] = _texts(feats["feature_type"][()])
    except GistInputError:
        raise
    except Exception as err:  # h5py raises several types for a damaged or foreign file
        raise GistInputError(f"10x matrix {path} is unreadable: {type(err).__name__}: {err}") from None
    try:
        counts = sp.csc_matrix((data, indices, indptr), shape=shape).T  # stored genes x cells
    except ValueError as err:
        raise GistInputError(f"10x matrix {path} is inconsistent: {err}") from None
    return _anndata(counts, barcodes, var, gex_only, f"10x matrix {path}")


def _mtx_file(folder: Path, kind: str) -> Path:
    for name in MTX_FILES[kind]:
        if (folder / name).is_file():
            return folder / name
    raise GistInputError(f"10x matrix folder {folder}: {MTX_FILES[kind][0]} not found (expected one of "
                         f"{', '.join(MTX_FILES[kind])})")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _read_mtx(path: Path) -> sp.spmatrix:
    with (gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")) as f:
        return scipy.io.mmread(f)


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, dtype=str, compression="gzip" if _is_gzip(path) else None)


def read_10x_mtx(folder: str | Path, *, gex_only: bool = True) -> AnnData:
    """A 10x Matrix Market folder (``matrix.mtx``, ``features.tsv``/``genes.tsv``, ``barcodes.tsv``,
    each gzipped or not); returns what :func:`read_10x_h5` returns."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GistInputError(f"10x matrix folder not found: {folder}")
    paths = {kind: _mtx_file(folder, kind) for kind in MTX_FILES}
    try:
        counts = _read_mtx(paths["matrix"])
        feats = _read_tsv(paths["features"])
        barcodes = _read_tsv(paths["barcodes"])[0].tolist()
    except Exception as err:  # scipy and pandas raise many types for damaged files
        raise GistInputError(f"10x matrix folder {folder} is unreadable: {type(err).__name__}: {err}") from None
    var = pd.DataFrame({"name": feats[1 if feats.shape[1] > 1 else 0], "gene_ids": feats[0]})
    if feats.shape[1] > 2:
        var["feature_types"] = feats[2]
    if counts.shape != (len(var), len(barcodes)):
        raise GistInputError(f"10x matrix folder {folder}: {paths['matrix'].name} is {counts.shape[0]} x "
                             f"{counts.shape[1]}, expected {len(var)} features x {len(barcodes)} barcodes")
    return _anndata(sp.csr_matrix(counts).T, barcodes, var, gex_only, f"10x matrix folder {folder}")


def read_10x_matrix(path: str | Path, *, gex_only: bool = True) -> AnnData:
    """:func:`read_10x_h5` for a file, :func:`read_10x_mtx` for a folder."""
    path = Path(path)
    return read_10x_mtx(path, gex_only=gex_only) if path.is_dir() else read_10x_h5(path, gex_only=gex_only)


def find_matrix(folder: Path, stems: Sequence[str], what: str) -> Path:
    """The first count matrix of ``folder`` among ``stems``, each tried as ``<stem>.h5`` then as
    the ``<stem>/`` mtx folder; one error naming every file looked for when there is none."""
    for stem in stems:
        if (folder / f"{stem}.h5").is_file():
            return folder / f"{stem}.h5"
        if (folder / stem).is_dir():
            return folder / stem
    tried = ", ".join(f"{s}.h5 or {s}/" for s in stems)
    raise GistInputError(f"{what} not found in {folder} (expected {tried})")
