"""The paper's merge of NanoString CosMx cell types into 8 classes.

GIST (like SiGra before it) evaluates Lung13 on 8 merged classes, stored in
``obs['merge_cell_type']``. This module is the one place the merge is defined:

==============  =========================================================================
class           NanoString types merged into it
==============  =========================================================================
lymphocyte      B-cell, NK, plasmablast, Treg, T CD4 naive, T CD4 memory, T CD8 naive,
                T CD8 memory (any type starting with ``T CD`` or ``T cell``)
myeloid         monocyte, macrophage, mDC, pDC
tumors          tumor 5, tumor 6, tumor 9, tumor 12, tumor 13 (any ``tumor ...``)
epithelial      epithelial
mast            mast
endothelial     endothelial
fibroblast      fibroblast
neutrophil      neutrophil
==============  =========================================================================

Matching ignores case, spaces, ``-`` and ``_`` (``B cell`` == ``B-cell``). Types outside the
table become NaN and are reported, never guessed.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

PAPER_CLASSES: tuple[str, ...] = (
    "lymphocyte",
    "myeloid",
    "tumors",
    "epithelial",
    "mast",
    "endothelial",
    "fibroblast",
    "neutrophil",
)

#: NanoString type -> paper class. Keys are in NanoString's spelling.
MERGE_MAP: dict[str, str] = {
    "B-cell": "lymphocyte",
    "NK": "lymphocyte",
    "plasmablast": "lymphocyte",
    "Treg": "lymphocyte",
    "T CD4 naive": "lymphocyte",
    "T CD4 memory": "lymphocyte",
    "T CD8 naive": "lymphocyte",
    "T CD8 memory": "lymphocyte",
    "monocyte": "myeloid",
    "macrophage": "myeloid",
    "mDC": "myeloid",
    "pDC": "myeloid",
    "epithelial": "epithelial",
    "mast": "mast",
    "endothelial": "endothelial",
    "fibroblast": "fibroblast",
    "neutrophil": "neutrophil",
}

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^tumou?rs?\d*$"), "tumors"),
    (re.compile(r"^tcd\d.*$|^tcell.*$"), "lymphocyte"),
)


def _key(name: str) -> str:
    return re.sub(r"[\s\-_]+", "", str(name)).lower()


_LOOKUP = {_key(k): v for k, v in MERGE_MAP.items()} | {_key(c): c for c in PAPER_CLASSES}


def merge_class(cell_type: str) -> str | None:
    """Return the paper class of one NanoString cell type, or ``None`` if it has none."""
    key = _key(cell_type)
    if key in _LOOKUP:
        return _LOOKUP[key]
    for pattern, target in _PATTERNS:
        if pattern.match(key):
            return target
    return None


def merge_cell_types(cell_types: pd.Series | np.ndarray | list, warn: bool = True) -> pd.Categorical:
    """Map NanoString cell types onto the paper's 8 classes.

    Parameters
    ----------
    cell_types
        One NanoString type per cell (missing values stay missing).
    warn
        Warn, naming them, when some types have no class (they become NaN).

    Returns
    -------
    pandas.Categorical
        Categories are :data:`PAPER_CLASSES` in their fixed order.
    """
    series = pd.Series(np.asarray(cell_types, dtype=object))
    uniques = series.dropna().unique()
    table = {t: merge_class(t) for t in uniques}
    unknown = sorted(str(t) for t, c in table.items() if c is None)
    if unknown and warn:
        warnings.warn(
            f"cell types without a paper class, set to NaN: {', '.join(unknown)} "
            f"(known: {', '.join(MERGE_MAP)}, tumor N)",
            stacklevel=2,
        )
    merged = series.map(lambda t: table.get(t) if pd.notna(t) else None)
    return pd.Categorical(merged, categories=list(PAPER_CLASSES))
