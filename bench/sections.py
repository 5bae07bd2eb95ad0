"""The development sections as the data describe them, without labels: size, genes, depth, cells
per target cluster and how alike neighbours already are (Moran's I of the expression components).

These are the label-free quantities a data-dependent default could read (BENCHMARKS.md, protocol:
a setting may depend on the data only through such a quantity). Prints a table and writes JSON.

    python bench/sections.py [--out docs/sections.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.benchmark import dataset_labels, load_samples, pooled_graph, scanpy_rep, shared_datasets  # noqa: E402
from bench.benchmark_report import _markdown  # noqa: E402
from gist.tl.autocorrelation import neighbour_similarity  # noqa: E402
from gist.utils import atomic_path  # noqa: E402


def describe(dataset, adata) -> dict:
    """One section's row (``adata`` as :func:`bench.benchmark.load_samples` gives it; the labels only
    give the target count, as a user's ``--ncluster`` would)."""
    _, _, ncluster = dataset_labels(dataset, adata)
    graph = pooled_graph(adata)
    degree = np.asarray(((graph + graph.T) > 0).sum(axis=1)).ravel()
    counts = np.asarray(adata.X.sum(axis=1)).ravel()
    components = scanpy_rep(adata, seed=0).obsm["X_pca"]
    return {"dataset": dataset.name, "family": dataset.family, "kind": dataset.kind, "task": dataset.cluster,
            "cells": int(adata.n_obs), "genes": int(adata.n_vars), "median counts": int(np.median(counts)),
            "neighbours": round(float(degree.mean()), 1), "target": int(ncluster),
            "cells per cluster": int(adata.n_obs // ncluster),
            "Moran's I (PCs)": round(neighbour_similarity(components, graph), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_root", default=str(ROOT.parent / "shared" / "data"), help="folder with the shared datasets")
    p.add_argument("--out", default=str(ROOT / "docs" / "sections.json"), help="JSON written")
    args = p.parse_args(argv)
    rows = [describe(d, load_samples(d)) for d in shared_datasets(args.data_root) if d.name != "demo"]
    print(_markdown(pd.DataFrame(rows)) if rows else "(no shared dataset found)")
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
