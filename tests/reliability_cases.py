"""Every bad input the suite tries, and what the user sees: the single list behind both
``tests/test_reliability.py`` (which runs each case) and the table in ``docs/reliability.md``.

    python tests/reliability_cases.py            # print the table
    python tests/reliability_cases.py --write    # rewrite the table in docs/reliability.md

Each case builds its input in a temporary folder and names the command it runs (``script`` and
arguments), the exit code and a fragment of what the command prints. ``outcome`` is ``error``
(exit 2, one line naming the input, nothing written), ``warning`` (the run goes on and says so) or
``handled`` (documented behaviour, exit 0).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- reliability-cases:start -->", "<!-- reliability-cases:end -->"
TRAIN_QUICK = ["--epochs", "1", "--hidden", "16", "4", "--ensemble", "1", "--no_progress"]


@dataclass
class Case:
    """One bad input: how to build it, the command, and what must come out."""

    id: str
    stage: str  # reader, extraction, training, inference, figures
    given: str  # the bad input, in words
    sees: str  # what the user sees, in words (the table's last column)
    build: Callable[[Path], list[str]]  # writes the input under a folder, returns [script, *args]
    outcome: str = "error"  # error | warning | handled
    message: str = ""  # a fragment the output must contain
    code: int = 2


# ------------------------------------------------------------------ inputs


def demo_cells(n_fovs: int = 2, seed: int = 4) -> list[ad.AnnData]:
    """Small demo FOVs (raw counts, coordinates, images in uns['spatial'])."""
    from gist.demo import make_demo

    return make_demo(n_fovs=n_fovs, seed=seed, image_size=448)


def write_cells(folder: Path, edit: Callable[[ad.AnnData], ad.AnnData | None] | None = None, name: str = "cells.h5ad",
                n_fovs: int = 2) -> Path:
    """One .h5ad with all FOVs (``obs['sample']`` splits them), after ``edit``."""
    pooled = ad.concat(demo_cells(n_fovs), merge="same")
    pooled.obs["sample"] = pooled.obs["sample"].astype(str)
    pooled.X = sp.csr_matrix(pooled.X, dtype=np.float32)
    if edit is not None:
        pooled = edit(pooled) or pooled
    path = folder / name
    pooled.write_h5ad(path)
    return path


def write_prepared(folder: Path, edit: Callable[[ad.AnnData], ad.AnnData | None] | None = None) -> Path:
    """Prepared per-sample files (image features + graphs), as extract_features.py writes them."""
    from gist.pp.graph import build_graphs
    from gist.pp.stats import add_patch_stats

    out = folder / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    fovs = [add_patch_stats(a) for a in demo_cells()]
    build_graphs(fovs, 80.0, verbose=False)
    for fov in fovs:
        fov.uns.pop("Spatial_Net", None)
        fov.X = sp.csr_matrix(fov.X, dtype=np.float32)
        if edit is not None:
            fov = edit(fov) or fov
        fov.write_h5ad(out / f"{fov.obs['sample'].iloc[0]}.h5ad")
    return out


def trained(folder: Path) -> Path:
    """A small checkpoint folder trained on the prepared demo files."""
    from gist.cli import train_main

    data = write_prepared(folder)
    train_main(["--data", str(data), *TRAIN_QUICK, "--save_path", str(folder / "ckpt")])
    return folder / "ckpt"


def set_value(row: int, col: int, value: float) -> Callable[[ad.AnnData], ad.AnnData]:
    def edit(a: ad.AnnData) -> ad.AnnData:
        x = a.X.toarray()
        x[row, col] = value
        a.X = sp.csr_matrix(x)
        return a
    return edit


def write_image(path: Path, array: np.ndarray) -> Path:
    import tifffile
    from PIL import Image

    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


def cells_with_image(folder: Path, image: np.ndarray | None = None, suffix: str = ".png",
                     scale_coords: float = 1.0, pages: int = 1) -> list[str]:
    """One demo FOV as .h5ad without its in-file image, plus ``image`` (default: the FOV's own)."""
    fov = demo_cells(1)[0]
    own = fov.uns["spatial"][fov.obs["sample"].iloc[0]]["images"]["hires"]
    del fov.uns["spatial"]
    fov.obsm["spatial"] = fov.obsm["spatial"] * scale_coords
    fov.write_h5ad(folder / "fov.h5ad")
    picture = own if image is None else image
    path = folder / f"he{suffix}"
    if pages > 1:
        import tifffile

        tifffile.imwrite(path, np.stack([picture] * pages))
    else:
        write_image(path, picture)
    return ["extract_features.py", "--data", str(folder / "fov.h5ad"), "--image", str(path), "--out", str(folder / "f"),
            "--no_progress"]


def _drop_obsm_spatial(a):
    del a.obsm["spatial"]


def _nan_coordinate(a):
    a.obsm["spatial"][3, 0] = np.nan


def _duplicate_cells(a):
    names = list(a.obs_names)
    names[1] = names[0]
    a.obs_names = names


def _duplicate_genes(a):
    names = list(a.var_names)
    names[1] = names[0]
    a.var_names = names


def _zero_cells(a):
    x = a.X.toarray()
    x[:3] = 0
    a.X = sp.csr_matrix(x)


def _zero_sample(a):
    x = a.X.toarray()
    x[(a.obs["sample"] == a.obs["sample"].iloc[0]).to_numpy()] = 0
    a.X = sp.csr_matrix(x)


def _one_cell_sample(a):
    keep = (a.obs["sample"] != a.obs["sample"].iloc[0]).to_numpy()
    keep[0] = True
    return a[keep].copy()


def _fractional(a):
    a.X = sp.csr_matrix(np.log1p(a.X.toarray()))


def _strings(a):
    return ad.AnnData(X=np.full(a.shape, "1", dtype=object), obs=a.obs, var=a.var, obsm={"spatial": a.obsm["spatial"]})


def _other_genes(a):
    a.var_names = [f"{g}_x" for g in a.var_names]


def _nan_features(a):
    a.obsm["imgs"][0, 0] = np.nan


def _garbage(folder: Path) -> Path:
    path = folder / "garbage.h5ad"
    path.write_bytes(b"not an hdf5 file at all" * 10)
    return path


def _truncated_checkpoint(folder: Path) -> list[str]:
    ckpt = trained(folder)
    data = (ckpt / "final_0.pth").read_bytes()
    (folder / "cut.pth").write_bytes(data[: len(data) // 2])
    return ["test.py", "--data", str(folder / "prepared"), "--pretrain", str(folder / "cut.pth"), "--result_path",
            str(folder / "r"), "--no_cluster"]


def _other_genes_checkpoint(folder: Path) -> list[str]:
    ckpt = trained(folder)
    return ["test.py", "--data", str(write_prepared(folder / "other", _other_genes)), "--save_path", str(ckpt),
            "--result_path", str(folder / "r"), "--no_cluster"]


def _wrong_dims_checkpoint(folder: Path) -> list[str]:
    import torch

    from gist.tl.model import TransImg

    torch.save(TransImg([960, 1024, 64, 8]).state_dict(), folder / "lung.pth")
    return ["test.py", "--data", str(write_prepared(folder)), "--pretrain", str(folder / "lung.pth"), "--result_path",
            str(folder / "r"), "--no_cluster"]


def _missing_member(folder: Path) -> list[str]:
    from gist.cli import train_main

    data = write_prepared(folder)
    train_main(["--data", str(data), "--epochs", "1", "--hidden", "16", "4", "--ensemble", "2", "--no_progress",
                "--save_path", str(folder / "ckpt")])
    (folder / "ckpt" / "final_1.pth").unlink()
    return ["test.py", "--data", str(data), "--save_path", str(folder / "ckpt"), "--result_path", str(folder / "r"),
            "--no_cluster"]


def _corrupt_resume_state(folder: Path) -> list[str]:
    ckpt = trained(folder)
    (ckpt / "train_state_0.pt").write_bytes(b"\x80\x04 not a zip")
    return ["train.py", "--data", str(folder / "prepared"), *TRAIN_QUICK, "--epochs", "2", "--save_path", str(ckpt),
            "--resume"]


def _figure_without_result(folder: Path) -> list[str]:
    return ["spatial.py", "--dataset", "demo", "--result_path", str(folder / "nothing")]


def _result(folder: Path) -> Path:
    from gist.cli import test_main

    ckpt = trained(folder)
    test_main(["--data", str(folder / "prepared"), "--save_path", str(ckpt), "--result_path", str(folder / "r"),
               "--label_key", "merge_cell_type", "--cluster", "mclust"])
    return folder / "r"


def _violin_unknown_genes(folder: Path) -> list[str]:
    return ["violin.py", "--result_path", str(_result(folder)), "--genes", "NOPE1", "NOPE2"]


def _gene_map_unknown_gene(folder: Path) -> list[str]:
    return ["mark_gene.py", "--result_path", str(_result(folder)), "--gene", "NOPE"]


def _train_data(edit, *extra) -> Callable[[Path], list[str]]:
    return lambda folder: ["train.py", "--data", str(write_cells(folder, edit)), *TRAIN_QUICK,
                           "--save_path", str(folder / "ckpt"), *extra]


def _prepared(edit, *extra) -> Callable[[Path], list[str]]:
    return lambda folder: ["train.py", "--data", str(write_prepared(folder, edit)), *TRAIN_QUICK,
                           "--save_path", str(folder / "ckpt"), *extra]


def _nan_samples(a):
    a.obs["sample"] = np.nan


def _xenium(edit: Callable[[Path], None] | None = None) -> Callable[[Path], list[str]]:
    """A Xenium output folder (tests/layouts.py), after ``edit``, given to extract_features.py."""
    def build(folder: Path) -> list[str]:
        from layouts import write_xenium

        root = folder / "xenium"
        write_xenium(root, n_cells=60, size=160)
        if edit is not None:
            edit(root)
        return ["extract_features.py", "--data", str(root), "--out", str(folder / "f"), "--no_progress"]
    return build


def _xenium_pixel_size(root: Path) -> None:
    import json

    specs = json.loads((root / "experiment.xenium").read_text())
    (root / "experiment.xenium").write_text(json.dumps(specs | {"pixel_size": specs["pixel_size"] / 3}))


def _visium_hd(edit: Callable[[Path], None] | None = None, *extra: str) -> Callable[[Path], list[str]]:
    """A Visium HD outs/ folder (tests/layouts.py), after ``edit``, given to extract_features.py."""
    def build(folder: Path) -> list[str]:
        from layouts import write_visium_hd

        root = folder / "outs"
        write_visium_hd(root, side=8)
        if edit is not None:
            edit(root)
        return ["extract_features.py", "--data", str(root), "--out", str(folder / "f"), "--no_progress", *extra]
    return build


def _hd_scale(root: Path) -> None:
    import json

    for path in root.rglob("scalefactors_json.json"):
        factors = json.loads(path.read_text())
        path.write_text(json.dumps(factors | {"tissue_hires_scalef": factors["tissue_hires_scalef"] * 4}))


def _export(write: Callable[[Path], object], edit: Callable[[Path], None] | None = None, *extra: str,
            data: str = "") -> Callable[[Path], list[str]]:
    """A platform folder written by ``write(root)``, after ``edit``, given to extract_features.py
    (``data``: the sub-folder passed as --data)."""
    def build(folder: Path) -> list[str]:
        root = folder / "export"
        write(root)
        if edit is not None:
            edit(root)
        return ["extract_features.py", "--data", str(root / data), "--out", str(folder / "f"), "--no_progress", *extra]
    return build


def _write_xenium(root: Path) -> None:
    from layouts import write_xenium

    write_xenium(root, n_cells=60, size=160)


def _write_visium_mtx(root: Path) -> None:
    from layouts import write_visium_mtx

    write_visium_mtx(root)


def _write_visium_hd(root: Path) -> None:
    from layouts import write_visium_hd

    write_visium_hd(root, side=8)


def _write_cosmx(root: Path) -> None:
    from gist.demo import write_cosmx_export

    write_cosmx_export(demo_cells(), root)


def _write_merscope(root: Path) -> None:
    from layouts import write_merscope

    write_merscope(root)


def _remove(*names: str) -> Callable[[Path], None]:
    """Delete files or folders (glob patterns) of an export."""
    import shutil

    def edit(root: Path) -> None:
        for name in names:
            for path in root.glob(name):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return edit


def _spatialdata_shifted(folder: Path) -> list[str]:
    """A SpatialData store whose image transformation puts every cell off the image."""
    import anndata
    import spatialdata as sd
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Translation

    rng = np.random.default_rng(0)
    xy = rng.uniform(5, 60, (30, 2))
    image = Image2DModel.parse(_random_image((3, 64, 64)), dims=("c", "y", "x"),
                               transformations={"global": Translation([500.0, 500.0], axes=("x", "y"))})
    shapes = ShapesModel.parse(xy, geometry=0, radius=np.ones(30), index=np.arange(30))
    table = anndata.AnnData(rng.poisson(3, (30, 8)).astype(np.float32),
                            obs=pd.DataFrame({"region": pd.Categorical(["cells"] * 30), "cell": np.arange(30)},
                                             index=[f"c{i}" for i in range(30)]))
    table = TableModel.parse(table, region="cells", region_key="region", instance_key="cell")
    store = folder / "shifted.zarr"
    sd.SpatialData(images={"he": image}, shapes={"cells": shapes}, tables={"table": table}).write(store)
    return ["extract_features.py", "--data", str(store), "--out", str(folder / "f"), "--no_progress"]


def _random_image(shape, dtype=np.uint8, high=256):
    return np.random.default_rng(0).integers(0, high, size=shape).astype(dtype)


CASES: list[Case] = [
    # ---------------------------------------------------------------- readers and input data
    Case("missing-file", "reader", "`--data` names a file that does not exist", "error naming the path",
         lambda d: ["train.py", "--data", str(d / "nope.h5ad"), *TRAIN_QUICK, "--save_path", str(d / "c")],
         message="not found"),
    Case("garbage-h5ad", "reader", "a file that is not HDF5", "error: not a readable .h5ad file",
         lambda d: ["train.py", "--data", str(_garbage(d)), *TRAIN_QUICK, "--save_path", str(d / "c")],
         message="is not a readable .h5ad file"),
    Case("no-coordinates", "reader", "no `obsm['spatial']`", "error naming the missing key",
         _train_data(_drop_obsm_spatial), message="no 'spatial' coordinates"),
    Case("nan-coordinate", "reader", "one NaN coordinate", "error naming the cell",
         _train_data(_nan_coordinate), message="missing (NaN) or infinite coordinates"),
    Case("nan-count", "reader", "one NaN count", "error naming the gene and cell; nothing trained",
         _train_data(set_value(2, 5, np.nan)), message="has a missing or infinite count"),
    Case("inf-count", "reader", "one infinite count", "error naming the gene and cell",
         _train_data(set_value(2, 5, np.inf)), message="has a missing or infinite count"),
    Case("negative-count", "reader", "one negative count", "error naming the gene, cell and value",
         _train_data(set_value(4, 7, -3.0)), message="has a negative count (-3.0)"),
    Case("text-counts", "reader", "counts stored as text", "error: numeric raw counts expected",
         _train_data(_strings), message="expected numeric raw counts"),
    Case("zero-sample", "reader", "a sample whose counts are all zero", "error naming the sample",
         _train_data(_zero_sample), message="every cell has zero counts"),
    Case("zero-cells", "reader", "three cells without any count", "the cells are dropped, the log says how many",
         _train_data(_zero_cells), outcome="handled", code=0, message="dropped 3 cell(s) with no counts"),
    Case("fractional-counts", "reader", "normalised (non-integer) values instead of counts",
         "warning that raw counts are expected; training goes on",
         _train_data(_fractional), outcome="warning", code=0, message="GIST expects raw counts"),
    Case("fractional-strict", "reader", "the same with `--strict`", "error: refused under --strict",
         _train_data(_fractional, "--strict"), message="refused under --strict"),
    Case("duplicate-cells", "reader", "two cells with the same name", "warning; names made unique",
         _train_data(_duplicate_cells), outcome="warning", code=0, message="names are made unique"),
    Case("duplicate-genes", "reader", "two genes with the same name", "error naming the gene",
         _train_data(_duplicate_genes), message="appears more than once in var_names"),
    Case("one-cell-sample", "reader", "a sample with a single cell", "error: at least 10 cells per sample",
         _train_data(_one_cell_sample), message="at least 10 are needed per sample"),
    Case("other-genes", "reader", "prepared samples with different gene panels", "error naming the sample",
         lambda d: ["train.py", "--data", str(write_prepared(d, lambda a: _other_genes(a) if a.obs["sample"].iloc[0].endswith("2") else a)),
                    *TRAIN_QUICK, "--save_path", str(d / "c")],
         message="has other genes than sample"),
    Case("nan-image-features", "reader", "NaN in `obsm['imgs']`", "error naming the sample",
         _prepared(_nan_features), message="obsm['imgs'] must be (cells, features) finite numbers"),
    Case("tiny-radius", "reader", "`--rad_cutoff` far below the cell spacing", "error: 0 neighbours per cell",
         _train_data(None, "--rad_cutoff", "1"), message="neighbours per cell on average"),
    Case("nan-sample-column", "reader", "an `obs['sample']` column that is entirely NaN",
         "error naming the column; nothing trained", _train_data(_nan_samples),
         message="obs['sample'] is entirely missing"),
    Case("xenium-missing-file", "reader", "a Xenium folder without `cells.parquet`", "error naming the file",
         _xenium(lambda root: (root / "cells.parquet").unlink()), message="Xenium cells.parquet not found"),
    Case("xenium-pixel-size", "reader", "a Xenium `experiment.xenium` with a wrong `pixel_size`",
         "error: cells outside the morphology image, naming the pixel size", _xenium(_xenium_pixel_size),
         message="check pixel_size"),
    Case("visium-hd-missing-bin", "reader", "Visium HD `--bin_size 16` where only 8 um bins exist",
         "error listing the bin sizes present", _visium_hd(None, "--bin_size", "16"), message="have ['square_008um']"),
    Case("visium-hd-scale", "reader", "Visium HD scale factors that put bins outside the image",
         "error naming how many bins and the scale factors", _visium_hd(_hd_scale), message="check the scale factors"),
    Case("spatialdata-off-image", "reader", "a SpatialData image whose transformation misses every cell",
         "error naming how many cells and the transformations", _spatialdata_shifted,
         message="check the coordinate transformations"),
    Case("xenium-no-zarr", "reader", "a Xenium folder without the optional `cells.zarr.zip` and morphology image",
         "read from `cell_feature_matrix.h5` and `cells.parquet`; `--extractor none` prepares it",
         _export(_write_xenium, _remove("cells.zarr.zip", "morphology_focus.ome.tif"), "--extractor", "none"),
         outcome="handled", code=0, message="wrote 1 sample"),
    Case("xenium-no-matrix", "reader", "a Xenium folder without `cell_feature_matrix.h5` (or its mtx folder)",
         "error naming the file", _export(_write_xenium, _remove("cell_feature_matrix.h5")),
         message="Xenium cell-feature matrix not found"),
    Case("visium-mtx-no-barcodes", "reader", "a Visium `outs/` whose `filtered_feature_bc_matrix/` lacks `barcodes.tsv.gz`",
         "error naming the file", _export(_write_visium_mtx, _remove("filtered_feature_bc_matrix/barcodes.tsv.gz")),
         message="barcodes.tsv.gz not found"),
    Case("visium-no-matrix", "reader", "a Visium `outs/` without any count matrix (.h5 or mtx folder)",
         "error naming the files looked for", _export(_write_visium_mtx, _remove("filtered_feature_bc_matrix")),
         message="Visium count matrix not found"),
    Case("visium-hd-no-positions", "reader", "a Visium HD bin folder without `spatial/tissue_positions.parquet`",
         "error naming the file", _export(_write_visium_hd, _remove("binned_outputs/*/spatial/tissue_positions.parquet"),
                                          data="binned_outputs/square_008um"),
         message="tissue_positions.parquet not found"),
    Case("cosmx-no-images", "reader", "a CosMx export without `CellComposite/`, with `--extractor none`",
         "read on the exported positions (global when present), no edge filter",
         _export(_write_cosmx, _remove("CellComposite"), "--extractor", "none"), outcome="handled", code=0,
         message="wrote 2 sample(s)"),
    Case("cosmx-no-metadata", "reader", "a CosMx export without `*_metadata_file.csv`", "error naming the file pattern",
         _export(_write_cosmx, _remove("*metadata_file.csv")), message="no metadata file"),
    Case("merscope-no-metadata", "reader", "a MERSCOPE folder without `cell_metadata.csv`", "error naming the file",
         _export(_write_merscope, _remove("cell_metadata.csv")), message="no MERSCOPE cell_metadata.csv"),
    Case("merscope-no-transform", "reader",
         "a MERSCOPE mosaic image without `images/micron_to_mosaic_pixel_transform.csv`", "error naming the file",
         _export(_write_merscope, _remove("images/micron_to_mosaic_pixel_transform.csv")),
         message="MERSCOPE transform not found"),
    Case("bad-label-key", "inference", "`--label_key` not in the data", "error listing the obs columns",
         lambda d: ["test.py", "--data", str(d / "prepared"), "--save_path", str(trained(d)), "--result_path",
                    str(d / "r"), "--label_key", "nope"], message="--label_key 'nope' is not a column"),
    # ---------------------------------------------------------------- images and extraction
    Case("corrupt-image", "extraction", "`--image` is a damaged file", "error: image unreadable",
         lambda d: cells_with_image(d) and _corrupt_image(d), message="is unreadable"),
    Case("missing-image", "extraction", "`--image` does not exist", "error naming the path",
         lambda d: ["extract_features.py", "--data", str(write_cells(d)), "--image", str(d / "none.png"), "--out",
                    str(d / "f")], message="image not found"),
    Case("coords-outside-image", "extraction", "coordinates 0-1000 px on a 50 x 50 image",
         "error naming how many cells and the image size",
         lambda d: cells_with_image(d, _random_image((50, 50, 3))), message="lie outside the 50 x 50 px image"),
    Case("grayscale-image", "extraction", "a grayscale image", "handled: read as three equal channels",
         lambda d: cells_with_image(d, _random_image((448, 448))), outcome="handled", code=0, message="wrote 1 sample"),
    Case("rgba-image", "extraction", "an RGBA image", "handled: the alpha channel is dropped",
         lambda d: cells_with_image(d, _random_image((448, 448, 4))), outcome="handled", code=0, message="wrote 1 sample"),
    Case("16bit-image", "extraction", "a 16-bit TIFF", "handled: scaled to 8 bits by its maximum",
         lambda d: cells_with_image(d, _random_image((448, 448, 3), np.uint16, 4096), ".tif"), outcome="handled",
         code=0, message="wrote 1 sample"),
    Case("multipage-tiff", "extraction", "a multi-page TIFF", "warning; the first page is used",
         lambda d: cells_with_image(d, suffix=".tif", pages=3), outcome="warning", code=0, message="multi-page TIFF"),
    Case("no-image", "extraction", "`--data` without any image", "error suggesting `--image` or `--extractor none`",
         lambda d: ["extract_features.py", "--data", str(write_cells(d, _strip_images)), "--out", str(d / "f")],
         message="--extractor none"),
    Case("weights-missing", "extraction", "`--extractor uni` without `--weights`", "error naming the flag",
         lambda d: ["extract_features.py", "--dataset", "demo", "--extractor", "uni", "--out", str(d / "f")],
         message="--weights"),
    # ---------------------------------------------------------------- training
    Case("diverging-loss", "training", "a learning rate of 1e12 (the loss becomes NaN)",
         "error naming the epoch and sample; earlier checkpoints kept",
         _prepared(None, "--lr", "1e12", "--epochs", "3"), message="training diverged"),
    Case("zero-epochs", "training", "`--epochs 0`", "error", _prepared(None, "--epochs", "0"),
         message="epochs must be >= 1"),
    Case("zero-ensemble", "training", "`--ensemble 0`", "error", _prepared(None, "--ensemble", "0"),
         message="ensemble must be >= 1"),
    Case("corrupt-resume-state", "training", "`--resume` with a damaged `train_state_0.pt`",
         "error naming the file and how to go on", _corrupt_resume_state, message="is not a readable training state"),
    Case("cuda-without-gpu", "training", "`--device cuda` on a machine without a GPU", "error",
         _prepared(None, "--device", "cuda"), message="no CUDA GPU is available"),
    # ---------------------------------------------------------------- inference
    Case("truncated-checkpoint", "inference", "`--pretrain` file cut in half", "error: not a loadable state dict",
         _truncated_checkpoint, message="is not a loadable state dict"),
    Case("wrong-dims-checkpoint", "inference", "a checkpoint for 960 genes / 1,024-d images on 300-gene data",
         "error naming both shapes", _wrong_dims_checkpoint, message="expects 960 genes and 1024-d image features"),
    Case("checkpoint-genes-missing", "inference", "data lacking the genes a checkpoint was trained on",
         "error naming the missing genes", _other_genes_checkpoint, message="of which the data lack"),
    Case("ensemble-member-missing", "inference", "an ensemble checkpoint folder with one member deleted",
         "error naming the missing file", _missing_member, message="final_1.pth is missing"),
    # ---------------------------------------------------------------- figures
    Case("figure-without-result", "figures", "`spatial.py` before `test.py` wrote a result", "error: run test.py first",
         _figure_without_result, message="run test.py"),
    Case("violin-unknown-genes", "figures", "`violin.py --genes` none of which exist", "error naming the flag",
         _violin_unknown_genes, message="none of the genes"),
    Case("gene-map-unknown-gene", "figures", "`mark_gene.py --gene` that does not exist", "error naming the gene",
         _gene_map_unknown_gene, message="'NOPE' is not in"),
]


def _corrupt_image(folder: Path) -> list[str]:
    path = folder / "he.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature and nothing usable
    return ["extract_features.py", "--data", str(folder / "fov.h5ad"), "--image", str(path), "--out", str(folder / "f")]


def _strip_images(a):
    a.uns.pop("spatial", None)


# ------------------------------------------------------------------ the table


def table() -> str:
    """The Markdown table of every case (docs/reliability.md)."""
    rows = ["| # | stage | input | what the user sees | exit |", "|---|---|---|---|---|"]
    for i, case in enumerate(CASES, start=1):
        rows.append(f"| {i} | {case.stage} | {case.given} | {case.outcome}: {case.sees} | {case.code} |")
    return "\n".join(rows)


def write_doc(path: Path = DOC) -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path} lacks the markers {START} / {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write_doc()
        print(f"wrote {len(CASES)} cases into {DOC}")
    else:
        print(table())
