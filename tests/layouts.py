"""Small platform output folders in their documented file layouts, written by tests (no downloads).

Each writer draws every cell (or bin) as a bright disk at its known pixel position, so that a test
can check that a reader puts each cell on its own pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp


def write_10x_h5(path, counts, barcodes, genes, feature_type: str = "Gene Expression") -> None:
    """A minimal Cell Ranger v3 HDF5 matrix (genes x barcodes, CSC)."""
    matrix = sp.csc_matrix(np.asarray(counts).T)
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array(barcodes, dtype="S")
        g["data"] = matrix.data.astype(np.int32)
        g["indices"] = matrix.indices.astype(np.int64)
        g["indptr"] = matrix.indptr.astype(np.int64)
        g["shape"] = np.array(matrix.shape, dtype=np.int32)
        feats = g.create_group("features")
        feats["id"] = np.array([f"ENSG{i:05d}" for i in range(len(genes))], dtype="S")
        feats["name"] = np.array(genes, dtype="S")
        feats["feature_type"] = np.array([feature_type] * len(genes), dtype="S")
        feats["genome"] = np.array(["GRCh38"] * len(genes), dtype="S")
        feats["_all_tag_keys"] = np.array([b"genome"])


def scattered_positions(n: int, size: int, margin: int, min_gap: float, seed: int) -> np.ndarray:
    """``n`` (x, y) pixel positions inside a ``size`` square, at least ``min_gap`` apart."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < n:
        p = rng.uniform(margin, size - margin, 2)
        if all(np.hypot(*(p - q)) >= min_gap for q in out):
            out.append(p)
    return np.array(out)


def disks(shape: tuple[int, int], centres: np.ndarray, radius: float, value: float) -> np.ndarray:
    """A ``shape`` image, 0 with a disk of ``value`` at each (x, y) centre."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape, dtype=np.float64)
    for x, y in centres:
        image[(xx - x) ** 2 + (yy - y) ** 2 <= radius ** 2] = value
    return image


def write_xenium(root: Path, n_cells: int = 200, n_genes: int = 20, size: int = 256, pixel_size: float = 0.2125,
                 seed: int = 0) -> dict:
    """A Xenium Onboard Analysis 1.x output folder: ``experiment.xenium``, ``cell_feature_matrix.h5``
    (genes plus two negative-control probes), ``cells.parquet`` (centroids in microns),
    ``cells.zarr.zip`` and a two-channel 16-bit ``morphology_focus.ome.tif`` whose DAPI channel has
    a bright disk at every cell. Returns the cells' pixel positions, counts and names."""
    import tifffile
    import zarr

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = scattered_positions(n_cells, size, 8, 9.0, seed)
    counts = rng.poisson(3.0, size=(n_cells, n_genes))
    counts[np.arange(n_cells), rng.integers(0, n_genes, n_cells)] += 5  # no empty cell
    cells = [f"cell{i:04d}" for i in range(n_cells)]
    genes = [f"GENE{i}" for i in range(n_genes)]
    controls = np.zeros((n_cells, 2), dtype=int)
    write_10x_h5(root / "cell_feature_matrix.h5", np.hstack([counts, controls]), cells, genes + ["NegControlProbe_1", "NegControlProbe_2"])
    with h5py.File(root / "cell_feature_matrix.h5", "a") as f:  # the control probes as Xenium marks them
        kinds = np.array(["Gene Expression"] * n_genes + ["Negative Control Probe"] * 2, dtype="S")
        del f["matrix/features/feature_type"]
        f["matrix/features/feature_type"] = kinds
    pd.DataFrame({"cell_id": cells, "x_centroid": pixels[:, 0] * pixel_size, "y_centroid": pixels[:, 1] * pixel_size,
                  "transcript_counts": counts.sum(1), "control_probe_counts": 0, "cell_area": 20.0,
                  "nucleus_area": 8.0}).to_parquet(root / "cells.parquet")
    (root / "experiment.xenium").write_text(json.dumps({"pixel_size": pixel_size, "analysis_sw_version": "xenium-1.0.2",
                                                        "run_name": "test", "region_name": "r1"}))
    store = zarr.storage.ZipStore(root / "cells.zarr.zip", mode="w")
    zarr.open_group(store, mode="w")
    store.close()
    dapi = disks((size, size), pixels, 3.0, 40000.0) + rng.uniform(0, 500, (size, size))
    boundary = rng.uniform(0, 3000, (size, size))
    tifffile.imwrite(root / "morphology_focus.ome.tif", np.stack([dapi, boundary]).astype(np.uint16), ome=True,
                     metadata={"axes": "CYX"})
    return {"pixels": pixels, "counts": counts, "cells": cells, "genes": genes}


def write_visium_hd(root: Path, bin_size: int = 8, side: int = 14, n_genes: int = 20, microns_per_pixel: float = 0.5,
                    hires_scalef: float = 0.2, seed: int = 0) -> dict:
    """A Space Ranger Visium HD ``outs/`` folder with one bin size: ``<id>_feature_slice.h5``,
    ``binned_outputs/square_<bin>um/`` (matrix, ``tissue_positions.parquet``, scale factors) and
    ``spatial/tissue_hires_image.png`` with a bright disk at each bin centre. Returns the bins'
    full-resolution and hires pixel positions and the counts."""
    import cv2

    rng = np.random.default_rng(seed)
    name = f"square_{bin_size:03d}um"
    folder = root / "binned_outputs" / name
    (folder / "spatial").mkdir(parents=True, exist_ok=True)
    (root / "spatial").mkdir(parents=True, exist_ok=True)
    pitch_px = bin_size / microns_per_pixel  # full-resolution pixels per bin
    rows, cols = np.divmod(np.arange(side * side), side)
    fullres = np.c_[(cols + 2) * pitch_px, (rows + 2) * pitch_px]  # x, y
    barcodes = [f"s_{bin_size:03d}um_{r:05d}_{c:05d}-1" for r, c in zip(rows, cols)]
    counts = rng.poisson(2.0, size=(len(barcodes), n_genes))
    counts[:, 0] += 1
    write_10x_h5(folder / "filtered_feature_bc_matrix.h5", counts, barcodes, [f"GENE{i}" for i in range(n_genes)])
    pd.DataFrame({"barcode": barcodes, "in_tissue": 1, "array_row": rows, "array_col": cols,
                  "pxl_row_in_fullres": fullres[:, 1], "pxl_col_in_fullres": fullres[:, 0]}).to_parquet(
        folder / "spatial" / "tissue_positions.parquet", index=False)
    factors = {"spot_diameter_fullres": bin_size / microns_per_pixel, "bin_size_um": float(bin_size),
               "microns_per_pixel": microns_per_pixel, "tissue_lowres_scalef": hires_scalef / 4,
               "tissue_hires_scalef": hires_scalef, "fiducial_diameter_fullres": 100.0, "regist_target_img_scalef": hires_scalef}
    for where in (folder / "spatial", root / "spatial"):
        (where / "scalefactors_json.json").write_text(json.dumps(factors))
    extent = int((side + 4) * pitch_px * hires_scalef)
    hires = fullres * hires_scalef
    image = disks((extent, extent), hires, 2.0, 255.0).astype(np.uint8)
    cv2.imwrite(str(root / "spatial" / "tissue_hires_image.png"), np.repeat(image[..., None], 3, axis=2))
    layout = {"file_format": "1.0", "transform": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    with h5py.File(root / "sectionHD_feature_slice.h5", "w") as f:
        f.attrs["metadata_json"] = json.dumps({"hd_layout_json": json.dumps(layout)})
    return {"fullres": fullres, "hires": hires, "counts": counts, "barcodes": barcodes}


def write_10x_mtx(folder: Path, counts, barcodes, genes, gzipped: bool = True) -> None:
    """A Cell Ranger v3 Matrix Market folder (``matrix.mtx``, ``features.tsv``, ``barcodes.tsv``)."""
    import gzip

    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gzipped else ""
    opener = gzip.open if gzipped else open
    with opener(folder / f"matrix.mtx{suffix}", "wb") as f:
        scipy.io.mmwrite(f, sp.coo_matrix(np.asarray(counts).T))
    with opener(folder / f"features.tsv{suffix}", "wt") as f:
        f.writelines(f"ENSG{i:05d}\t{g}\tGene Expression\n" for i, g in enumerate(genes))
    with opener(folder / f"barcodes.tsv{suffix}", "wt") as f:
        f.writelines(f"{b}\n" for b in barcodes)


def write_visium_mtx(root: Path, n_spots: int = 40, n_genes: int = 12, seed: int = 0) -> dict:
    """A Space Ranger ``outs/`` folder whose counts are only the ``filtered_feature_bc_matrix/`` mtx
    folder (gzipped), with ``spatial/tissue_positions_list.csv`` and scale factors, no image."""
    rng = np.random.default_rng(seed)
    barcodes = [f"AAAC{i:04d}-1" for i in range(n_spots)]
    genes = [f"GENE{i}" for i in range(n_genes)]
    counts = rng.poisson(3.0, size=(n_spots, n_genes)) + np.eye(n_spots, n_genes, dtype=int)
    write_10x_mtx(root / "filtered_feature_bc_matrix", counts, barcodes, genes)
    rows, cols = np.divmod(np.arange(n_spots), 8)
    pixels = np.c_[100 + 150 * cols + 75 * (rows % 2), 100 + 130 * rows].astype(float)  # x, y
    (root / "spatial").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"barcode": barcodes, "in_tissue": 1, "array_row": rows, "array_col": cols,
                  "pxl_row_in_fullres": pixels[:, 1], "pxl_col_in_fullres": pixels[:, 0]}).to_csv(
        root / "spatial" / "tissue_positions_list.csv", header=False, index=False)
    (root / "spatial" / "scalefactors_json.json").write_text(json.dumps(
        {"tissue_hires_scalef": 0.2, "tissue_lowres_scalef": 0.06, "spot_diameter_fullres": 90.0}))
    return {"pixels": pixels, "counts": counts, "barcodes": barcodes, "genes": genes}


def write_merscope(root: Path, n_cells: int = 60, n_genes: int = 10, size: int = 256, microns_per_pixel: float = 0.108,
                   offset: tuple[float, float] = (-40.0, 25.0), image: bool = True, seed: int = 0) -> dict:
    """A MERSCOPE region folder as Vizgen writes it: ``cell_by_gene.csv`` (genes and two blank
    barcodes), ``cell_metadata.csv`` (centres in microns), and with ``image``
    ``images/micron_to_mosaic_pixel_transform.csv`` plus a 16-bit ``images/mosaic_DAPI_z3.tif`` with a
    bright disk at every cell. Returns the cells' mosaic pixels, microns, counts and ids."""
    import tifffile

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    pixels = scattered_positions(n_cells, size, 8, 9.0, seed)
    scale = 1 / microns_per_pixel
    transform = np.array([[scale, 0, offset[0]], [0, scale, offset[1]], [0, 0, 1]])
    microns = (pixels - np.asarray(offset)) / scale
    ids = [str(110883424764611924400221639916314253469 + i) for i in range(n_cells)]  # EntityIDs wider than int64
    genes = [f"GENE{i}" for i in range(n_genes)]
    counts = rng.poisson(3.0, size=(n_cells, n_genes))
    counts[np.arange(n_cells), rng.integers(0, n_genes, n_cells)] += 4
    table = pd.DataFrame(counts, columns=genes).assign(**{"Blank-0": 1, "Blank-1": 0})
    table.insert(0, "cell", ids)
    table.to_csv(root / "cell_by_gene.csv", index=False)
    meta = pd.DataFrame({"EntityID": ids, "fov": 0, "volume": 500.0, "center_x": microns[:, 0], "center_y": microns[:, 1]})
    meta.to_csv(root / "cell_metadata.csv", index=False)
    if image:
        np.savetxt(root / "images" / "micron_to_mosaic_pixel_transform.csv", transform, delimiter=" ")
        dapi = disks((size, size), pixels, 3.0, 30000.0) + rng.uniform(0, 500, (size, size))
        tifffile.imwrite(root / "images" / "mosaic_DAPI_z3.tif", dapi.astype(np.uint16))
    return {"pixels": pixels, "microns": microns, "counts": counts, "ids": ids, "genes": genes}
