"""Checks shared by the readers: each failure becomes one :class:`GistInputError`."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gist.errors import GistInputError
from gist.io.samples import sample_name
from gist.keys import IMG_KEY, SPATIAL_KEY

#: Label texts that mean "no label": how a missing value reads once a column went through ``astype(str)``
#: (the DLPFC annotation stores its 39 unannotated spots as the category ``"nan"``).
MISSING_LABEL_TEXTS = frozenset({"nan", "NaN", "None", "<NA>", ""})


def labelled_mask(labels) -> np.ndarray:
    """``True`` where a cell has a label: not missing and not a text in :data:`MISSING_LABEL_TEXTS`.

    Parameters
    ----------
    labels
        One label per cell (array, list or ``pandas.Series``, categorical or not).

    Returns
    -------
    ndarray of bool
    """
    values = pd.Series(np.asarray(labels, dtype=object))
    present = values.notna().to_numpy()
    texts = values[present].astype(str).str.strip()
    present[present] = ~texts.isin(MISSING_LABEL_TEXTS).to_numpy()
    return present


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` as a :class:`Path`, or raise if it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f"{what} not found: {path} (expected an existing file)")
    return path


def find_one(root: Path, pattern: str, what: str, required: bool = True) -> Path | None:
    """The one file of ``root`` matching ``pattern``: ``None`` when there is none and it is not
    ``required``, else one error naming the pattern (none) or the files (several)."""
    hits = sorted(root.glob(pattern))
    if len(hits) == 1:
        return hits[0]
    if not hits and not required:
        return None
    if not hits:
        raise GistInputError(f"no {what} in {root} (expected a file matching {pattern!r})")
    raise GistInputError(f"several {what}s in {root}: {[h.name for h in hits]}; pass the one to use explicitly")


def read_csv_checked(path: str | Path, what: str, **kwargs) -> pd.DataFrame:
    """Read a CSV file, turning every pandas parsing failure into one clear error."""
    path = require_file(path, what)
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise GistInputError(f"{what} {path} is empty (expected a CSV file with a header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise GistInputError(f"{what} {path} is not a readable CSV file: {err}") from None
    except ValueError as err:  # e.g. usecols naming a column the file lacks
        raise GistInputError(f"{what} {path}: {err}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def require_columns(frame: pd.DataFrame, columns: Iterable[str], source: str) -> None:
    """Raise naming the first missing column and the columns that were found."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:12])) + (" ..." if frame.shape[1] > 12 else "")
        raise GistInputError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))} (found: {found})"
        )


def numeric_columns(frame: pd.DataFrame, columns: Sequence[str], source: str, dtype=np.float64) -> np.ndarray:
    """Return ``frame[columns]`` as numbers, naming the first non-numeric value if any."""
    values = frame[list(columns)]
    for col in values.columns[[not pd.api.types.is_numeric_dtype(t) for t in values.dtypes]]:
        converted = pd.to_numeric(values[col], errors="coerce")
        bad = converted.isna() & values[col].notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise GistInputError(
                f"{source}: column {col!r} holds the non-numeric value {values[col].iloc[row]!r} "
                f"(data row {row + 1}); expected numbers"
            )
        values = values.assign(**{col: converted})
    return values.to_numpy(dtype=dtype)




def check_coordinates(coords: np.ndarray, source: str, ids: Sequence | None = None) -> None:
    """Coordinates must be an (n, 2) array of finite numbers."""
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise GistInputError(f"{source}: expected (n_cells, 2) coordinates, got shape {coords.shape}")
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        who = f"cell {ids[first]!r}" if ids is not None else f"row {first}"
        raise GistInputError(
            f"{source}: {int(bad.sum())} cell(s) have missing (NaN) or infinite coordinates, first {who}; "
            "expected finite pixel positions"
        )


def check_unique(frame: pd.DataFrame, keys: Sequence[str], source: str) -> None:
    """Raise naming the first duplicated key combination."""
    dup = frame.duplicated(subset=list(keys), keep=False)
    if dup.any():
        first = frame.loc[dup, list(keys)].iloc[0].to_dict()
        raise GistInputError(
            f"{source}: duplicate cell id {first} ({int(dup.sum())} rows share an id); "
            f"expected each ({', '.join(keys)}) once"
        )


#: Samples with fewer cells are refused (a graph, a batch and a clustering need more).
MIN_CELLS_PER_SAMPLE = 10


def check_sample_column(obs: pd.DataFrame, key: str, source: str) -> None:
    """Every cell must name its sample in ``obs[key]``: a column that is missing (NaN, None) for some
    or all cells would train them as one unnamed sample or drop them."""
    named = labelled_mask(obs[key])
    if named.all():
        return
    missing = int((~named).sum())
    what = "is entirely missing (NaN)" if missing == len(obs) else f"is missing (NaN) for {missing} of {len(obs)} cells"
    raise GistInputError(f"{source}: the sample column obs[{key!r}] {what}; expected a sample name for every cell "
                         f"(fill it, or drop the column to read the file as one sample)")


def check_count_matrix(x, source: str, genes: Sequence[str], cells: Sequence[str] | None = None, strict: bool = False,
                       whole: bool = True) -> None:
    """Raw counts: numeric, finite and non-negative (errors naming the first gene and cell), and,
    with ``whole``, whole numbers (a warning that raw counts are expected, an error with ``strict``).
    The one count check: readers call it with ``whole=False`` (:func:`check_samples` warns later);
    ``cells`` defaults to row numbers."""

    values = x.data if sp.issparse(x) else np.asarray(x)
    if cells is None:
        cells = [f"row {i}" for i in range(x.shape[0])]
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
        raise GistInputError(f"{source}: X has dtype {values.dtype}; expected numeric raw counts")
    if sp.issparse(x):
        coo = sp.coo_matrix(x)
        bad = ~np.isfinite(coo.data) | (coo.data < 0)
        if bad.any():
            i = int(np.argmax(bad))
            value, row, col = coo.data[i], coo.row[i], coo.col[i]
            kind = "negative" if np.isfinite(value) else "missing or infinite"
            raise GistInputError(
                f"{source}: gene {genes[col]!r} has a {kind} count ({value}) in cell {cells[row]!r} "
                f"({int(bad.sum())} such value(s)); expected finite, non-negative raw counts"
            )
        fractional = coo.data != np.round(coo.data)
    else:
        dense = np.asarray(x)
        bad = ~np.isfinite(dense) | (dense < 0)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            value = dense[row, col]
            kind = "negative" if np.isfinite(value) else "missing or infinite"
            raise GistInputError(
                f"{source}: gene {genes[col]!r} has a {kind} count ({value}) in cell {cells[row]!r} "
                f"({int(bad.sum())} such value(s)); expected finite, non-negative raw counts"
            )
        fractional = dense != np.round(dense)
    if whole and fractional.any():
        message = (f"{source}: X holds non-integer values ({int(fractional.sum())} entries); GIST expects raw "
                   "counts (it normalises and log-transforms them itself)")
        if strict:
            raise GistInputError(message + " - refused under --strict")
        warnings.warn(message + "; pass the raw counts, or --strict to refuse such input", stacklevel=3)


def check_samples(adatas: list, source: str, strict: bool = False, min_cells: int = MIN_CELLS_PER_SAMPLE,
                  verbose: bool = True) -> list:
    """Every check on samples before they reach the model; returns the samples to use.

    Errors (:class:`GistInputError` naming the sample, the field, the first offending cell and what
    was expected): no sample; non-numeric, NaN/Inf or negative counts; a sample without counts;
    fewer than ``min_cells`` cells; duplicated gene names; missing or non-finite coordinates;
    non-finite image features; other genes than the first sample. Non-integer counts warn (error
    with ``strict``). Fixed with a message: cells without any count are dropped (with how many);
    duplicated cell names are made unique (as scanpy's ``obs_names_make_unique``) with a warning.
    """
    if not adatas:
        raise GistInputError(f"{source}: no samples to use")
    out = []
    seen: set[str] = set()
    for i, adata in enumerate(adatas):
        name = sample_name(adata, f"#{i}")
        where = f"{source}, sample {name!r}"
        if not adata.var_names.is_unique:
            dup = adata.var_names[adata.var_names.duplicated()][0]
            raise GistInputError(f"{where}: gene {dup!r} appears more than once in var_names; expected unique gene names")
        if "spatial" not in adata.obsm:
            raise GistInputError(f"{where}: obsm has no 'spatial' coordinates (has {list(adata.obsm)})")
        check_coordinates(np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2], f"{where} obsm['spatial']",
                          adata.obs_names)
        check_count_matrix(adata.X, where, list(adata.var_names), list(adata.obs_names), strict=strict)
        totals = np.asarray(adata.X.sum(axis=1)).ravel()
        if not (totals > 0).any():
            raise GistInputError(f"{where}: every cell has zero counts; expected raw counts")
        if (totals <= 0).any():
            empty = int((totals <= 0).sum())
            if verbose:
                print(f"{where}: dropped {empty} cell(s) with no counts (first {adata.obs_names[totals <= 0][0]!r})")
            adata = adata[totals > 0].copy()
        if adata.n_obs < min_cells:
            raise GistInputError(f"{where}: {adata.n_obs} cell(s) with counts; at least {min_cells} are needed per sample")
        if IMG_KEY in adata.obsm:
            img = np.asarray(adata.obsm[IMG_KEY])
            if img.ndim != 2 or not np.isfinite(img).all():
                raise GistInputError(f"{where}: obsm['imgs'] must be (cells, features) finite numbers, got shape "
                                     f"{img.shape}{'' if img.ndim != 2 else ' with NaN/Inf'}")
        if not adata.obs_names.is_unique or seen.intersection(adata.obs_names):
            if not adata.is_view:
                adata = adata.copy()
            clash = adata.obs_names[adata.obs_names.duplicated() | adata.obs_names.isin(list(seen))][0]
            warnings.warn(f"{where}: cell name {clash!r} is not unique; names are made unique (prefixed with the "
                          "sample and numbered)", stacklevel=2)
            adata.obs_names = [f"{name}:{c}" if c in seen else c for c in adata.obs_names]
            adata.obs_names_make_unique()
        seen.update(adata.obs_names)
        out.append(adata)
    genes = list(out[0].var_names)
    for i, adata in enumerate(out[1:], start=1):
        if list(adata.var_names) != genes:
            raise GistInputError(
                f"{source}, sample {sample_name(adata, f'#{i}')!r} has other genes than sample "
                f"{sample_name(out[0], '#0')!r} ({adata.n_vars} vs {len(genes)}); expected one gene panel"
            )
    return out
