import json

import cv2
import numpy as np
import pandas as pd
import pytest

from gist.errors import GistInputError
from layouts import write_10x_h5
from gist.io import get_image, image_coordinates, read_visium

N_SPOTS, N_GENES, HIRES_SCALEF = 12, 6, 0.25


@pytest.fixture
def visium_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "sectionA"
    (root / "spatial").mkdir(parents=True)
    counts = rng.poisson(2.0, size=(N_SPOTS, N_GENES))
    barcodes = [f"AAAC{i:04d}-1" for i in range(N_SPOTS)]
    write_10x_h5(root / "filtered_feature_bc_matrix.h5", counts, barcodes, [f"GENE{i}" for i in range(N_GENES)])
    rows = rng.uniform(100, 700, N_SPOTS)
    cols = rng.uniform(100, 900, N_SPOTS)
    positions = pd.DataFrame({
        "barcode": barcodes[::-1] + ["AAAC9999-1"],  # other order, plus an off-tissue spot
        "in_tissue": [1] * N_SPOTS + [0],
        "array_row": list(range(N_SPOTS)) + [0], "array_col": list(range(N_SPOTS)) + [0],
        "pxl_row_in_fullres": list(rows[::-1]) + [0.0], "pxl_col_in_fullres": list(cols[::-1]) + [0.0],
    })
    positions.to_csv(root / "spatial" / "tissue_positions.csv", index=False)
    (root / "spatial" / "scalefactors_json.json").write_text(json.dumps(
        {"tissue_hires_scalef": HIRES_SCALEF, "tissue_lowres_scalef": 0.05, "spot_diameter_fullres": 89.5,
         "fiducial_diameter_fullres": 144.6}))
    hires = np.zeros((200, 250, 3), np.uint8)
    cv2.imwrite(str(root / "spatial" / "tissue_hires_image.png"), hires)
    return root, counts, barcodes, rows, cols


def test_reads_counts_positions_and_hires_image(visium_dir):
    root, counts, barcodes, rows, cols = visium_dir
    adata = read_visium(root)
    assert list(adata.obs_names) == barcodes and adata.obs["sample"].iloc[0] == "sectionA"
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    np.testing.assert_allclose(adata.obsm["spatial"], np.column_stack([cols, rows]))
    entry = adata.uns["spatial"]["sectionA"]
    assert entry["scalefactors"]["spot_diameter_fullres"] == 89.5
    assert entry["metadata"]["image_scalef"] == HIRES_SCALEF and entry["metadata"]["image_shape"] == [200, 250]
    np.testing.assert_allclose(image_coordinates(adata), adata.obsm["spatial"] * HIRES_SCALEF)
    assert get_image(adata).shape == (200, 250, 3)


def test_old_positions_file_fullres_image_and_labels(visium_dir, tmp_path):
    root, counts, barcodes, rows, cols = visium_dir
    new = root / "spatial" / "tissue_positions.csv"
    pd.read_csv(new).to_csv(root / "spatial" / "tissue_positions_list.csv", index=False, header=False)
    new.unlink()
    fullres = tmp_path / "full.tif"
    cv2.imwrite(str(fullres), np.zeros((800, 1000, 3), np.uint8))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"barcode": barcodes[:8], "region": ["tumour", "stroma"] * 4}).to_csv(labels, index=False)
    adata = read_visium(root, library_id="A1", fullres_image=fullres, labels=labels, label_key="region")
    meta = adata.uns["spatial"]["A1"]["metadata"]
    assert meta["image_scalef"] == 1.0 and meta["image_shape"] == [800, 1000]
    np.testing.assert_allclose(adata.obsm["spatial"], np.column_stack([cols, rows]))
    assert list(adata.obs["region"][:8].astype(str)) == ["tumour", "stroma"] * 4
    assert adata.obs["region"][8:].isna().all()


def test_missing_positions_and_label_column_are_named(visium_dir, tmp_path):
    root, counts, barcodes, *_ = visium_dir
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"barcode": barcodes, "x": 1}).to_csv(labels, index=False)
    with pytest.raises(GistInputError, match=r"missing column\(s\) 'label'"):
        read_visium(root, labels=labels)
    positions = root / "spatial" / "tissue_positions.csv"
    pd.read_csv(positions).iloc[2:].to_csv(positions, index=False)
    with pytest.raises(GistInputError, match="no tissue position"):
        read_visium(root)
    positions.unlink()
    with pytest.raises(GistInputError, match="tissue_positions.csv or tissue_positions_list.csv"):
        read_visium(root)
