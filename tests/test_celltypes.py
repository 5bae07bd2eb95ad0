import numpy as np
import pandas as pd
import pytest

from gist.io.celltypes import MERGE_MAP, PAPER_CLASSES, merge_cell_types

NANOSTRING_TYPES = {
    "B-cell": "lymphocyte", "NK": "lymphocyte", "plasmablast": "lymphocyte", "Treg": "lymphocyte",
    "T CD4 naive": "lymphocyte", "T CD4 memory": "lymphocyte", "T CD8 naive": "lymphocyte",
    "T CD8 memory": "lymphocyte", "monocyte": "myeloid", "macrophage": "myeloid", "mDC": "myeloid",
    "pDC": "myeloid", "tumor 5": "tumors", "tumor 6": "tumors", "tumor 9": "tumors", "tumor 12": "tumors",
    "tumor 13": "tumors", "epithelial": "epithelial", "mast": "mast", "endothelial": "endothelial",
    "fibroblast": "fibroblast", "neutrophil": "neutrophil",
}


def test_every_nanostring_type_lands_in_its_class():
    merged = merge_cell_types(list(NANOSTRING_TYPES))
    assert list(merged.astype(str)) == list(NANOSTRING_TYPES.values())
    assert list(merged.categories) == list(PAPER_CLASSES) and len(PAPER_CLASSES) == 8
    assert set(MERGE_MAP.values()) <= set(PAPER_CLASSES)


def test_spelling_variants_and_missing_values():
    merged = merge_cell_types(["B cell", "T_CD8_memory", "Tumor_12", "MAST", None, np.nan])
    assert list(pd.Series(merged).astype(object).where(pd.notna(merged), None)) == [
        "lymphocyte", "lymphocyte", "tumors", "mast", None, None]


def test_unknown_types_become_nan_with_a_warning_naming_them():
    with pytest.warns(UserWarning, match="alien"):
        merged = merge_cell_types(["alien", "mast"])
    assert pd.isna(merged[0]) and merged[1] == "mast"
