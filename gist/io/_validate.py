"""Checks shared by the readers: each failure becomes one :class:`GistInputError`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gist.errors import GistInputError


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` as a :class:`Path`, or raise if it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f"{what} not found: {path} (expected an existing file)")
    return path


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


def check_counts(counts: np.ndarray, source: str, genes: Sequence[str]) -> None:
    """Counts must be finite and non-negative."""
    finite = np.isfinite(counts)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise GistInputError(
            f"{source}: gene {genes[col]!r} has a missing or infinite count in cell row {row}; "
            "expected finite, non-negative counts"
        )
    if (counts < 0).any():
        row, col = np.argwhere(counts < 0)[0]
        raise GistInputError(
            f"{source}: gene {genes[col]!r} has the negative count {counts[row, col]} in cell row {row}; "
            "expected raw, non-negative counts"
        )


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
