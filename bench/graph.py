"""Benchmark: spatial graph build time at 100k and 1M cells (target: 1M in under a minute).

Cells are laid out like CosMx FOVs (~5,000 cells on a 5,472 x 3,648 px FOV, as in Lung13), so
the paper's 80 px radius gives a realistic number of neighbours. The timing covers the whole
``Cal_Spatial_Net`` call: KD-trees per FOV, ``obsp`` matrices and ``uns['Spatial_Net']``.

    python bench/graph.py [--sizes 100000 1000000] [--json bench/results/graph.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gist.datasets import COSMX_RADIUS  # noqa: E402
from gist.pp.graph import Cal_Spatial_Net  # noqa: E402

CELLS_PER_FOV = 5000
FOV_SHAPE = (3648, 5472)  # rows, columns


def make_cells(n_cells: int, seed: int = 0) -> ad.AnnData:
    """Uniform cells in CosMx-sized FOVs, ``obs['sample']`` = FOV."""
    rng = np.random.default_rng(seed)
    n_fovs = int(np.ceil(n_cells / CELLS_PER_FOV))
    fov = np.repeat(np.arange(n_fovs), CELLS_PER_FOV)[:n_cells]
    xy = rng.uniform((0, 0), (FOV_SHAPE[1], FOV_SHAPE[0]), size=(n_cells, 2))
    adata = ad.AnnData(X=sp.csr_matrix((n_cells, 1), dtype=np.float32))
    adata.obs["sample"] = pd.Categorical(fov.astype(str))
    adata.obsm["spatial"] = xy
    return adata


def run(sizes: list[int], rad_cutoff: float, k_cutoff: int) -> list[dict]:
    rows = []
    for n in sizes:
        adata = make_cells(n)
        for model, kwargs in (("Radius", {"rad_cutoff": rad_cutoff}), ("KNN", {"k_cutoff": k_cutoff})):
            start = time.perf_counter()
            Cal_Spatial_Net(adata, model=model, verbose=False, **kwargs)
            seconds = time.perf_counter() - start
            edges = adata.obsp["spatial_connectivities"].nnz
            rows.append({
                "cells": n, "fovs": adata.obs["sample"].nunique(), "model": model,
                "param": kwargs[next(iter(kwargs))], "edges": edges,
                "edges_per_cell": round(edges / n, 2), "seconds": round(seconds, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            })
            print(f"  {model} on {n} cells: {seconds:.2f} s", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="cell counts to time")
    parser.add_argument("--rad_cutoff", type=float, default=COSMX_RADIUS, help="radius in px (default: %(default)s, the paper's CosMx value)")
    parser.add_argument("--k_cutoff", type=int, default=10, help="neighbours for the KNN model")
    parser.add_argument("--json", default="bench/results/graph.json", help="where to write the results")
    args = parser.parse_args()
    rows = run(args.sizes, args.rad_cutoff, args.k_cutoff)
    print(pd.DataFrame(rows).to_string(index=False))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "rows": rows}, indent=2))
    worst = max((r["seconds"] for r in rows if r["cells"] >= 1_000_000), default=None)
    if worst is not None:
        print(f"1M cells: slowest model {worst:.1f} s (target < 60 s): {'PASS' if worst < 60 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
