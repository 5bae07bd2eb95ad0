"""Benchmark: GIST training throughput (cells x epochs per second) on this machine.

Two workloads: the demo dataset (4 FOVs, ~2,100 cells, 300 genes, 15-d image statistics) and a
Lung13-sized synthetic set (20 FOVs x 4,000 cells, 960 genes, 1,024-d image features as from UNI,
CosMx-sized FOVs with the paper's 80 px radius graph). Model and recipe are the paper's
(hidden 512/30, Adam, clipping 5). Prints a table and writes JSON.

    python bench/train.py [--epochs 3] [--large_epochs 1] [--json bench/results/train.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gist.pp.graph import Cal_Spatial_Net
from gist.datasets import load_dataset
from gist.io.samples import split_samples
from gist.tl._inputs import sample_graphs  # noqa: E402
from gist.datasets import COSMX_RADIUS  # noqa: E402
from gist.tl.training import TrainConfig, train  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graph import FOV_SHAPE  # noqa: E402


def lung13_like(n_fovs: int = 20, cells: int = 4000, genes: int = 960, img_dim: int = 1024, seed: int = 0):
    rng = np.random.default_rng(seed)
    adatas = []
    for f in range(n_fovs):
        a = ad.AnnData(X=sp.csr_matrix(rng.poisson(0.3, size=(cells, genes)).astype(np.float32)))
        a.obs["sample"] = pd.Categorical([f"fov{f}"] * cells)
        a.obsm["spatial"] = rng.uniform((0, 0), (FOV_SHAPE[1], FOV_SHAPE[0]), size=(cells, 2))
        a.obsm["imgs"] = rng.normal(size=(cells, img_dim)).astype(np.float32)
        adatas.append(Cal_Spatial_Net(a, rad_cutoff=COSMX_RADIUS, verbose=False))
    return adatas


def measure(name: str, adatas, epochs: int, device: str) -> dict:
    graphs = list(sample_graphs(adatas))
    cells = sum(g.x.shape[0] for g in graphs)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(graphs, TrainConfig(epochs=epochs, save_every=0, device=device), tmp, progress=False)
        seconds = time.perf_counter() - start
    return {
        "workload": name, "samples": len(graphs), "cells": cells, "genes": graphs[0].x.shape[1],
        "img_dim": graphs[0].img.shape[1], "edges": sum(g.edge_index.shape[1] for g in graphs),
        "epochs": epochs, "seconds": round(seconds, 1), "s_per_epoch": round(seconds / epochs, 2),
        "cell_epochs_per_s": round(cells * epochs / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "paper_1000_epochs_h": round(seconds / epochs * 1000 / 3600, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed on the demo (default: %(default)s)")
    parser.add_argument("--large_epochs", type=int, default=1, help="epochs timed on the 80k-cell set (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--json", default="bench/results/train.json", help="where to write the results")
    args = parser.parse_args()
    rows = [measure("demo", split_samples(load_dataset("demo")[0])[0], args.epochs, args.device)]
    print(f"  demo done: {rows[-1]['s_per_epoch']} s/epoch", file=sys.stderr, flush=True)
    rows.append(measure("lung13-like 20x4k, 960 genes", lung13_like(), args.large_epochs, args.device))
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else platform.processor() or "cpu"
    out.write_text(json.dumps({"device": device, "threads": torch.get_num_threads(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
