"""A label-free image weight? Spatial autocorrelation of image features next to expression's.

Issue 21 asked whether the data could say, without labels, when the image branch helps: for each
dataset with an image, Moran's I (scanpy's ``metrics.morans_i`` on the dataset's spatial graph) of
the image descriptor's features (Moran's I does not depend on their scale) and of the expression's 30 principal components,
each averaged over its columns, printed beside the benchmark's ``gist`` minus ``gist_noimg`` ARI
(docs/benchmarks.json) so that one can see whether the quantity separates the datasets where the
image helps from those where it costs. Writes docs/image_moran.json.

    python bench/image_moran.py                  # demo and the shared datasets that carry an image
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.benchmark import (  # noqa: E402
    BenchDataset,
    expression_rep,
    has_image,
    image_features,
    load_samples,
    pooled_graph,
    shared_datasets,
)
from bench.benchmark_report import _markdown, read_records  # noqa: E402
from gist.utils import atomic_path  # noqa: E402


def mean_morans_i(graph, values: np.ndarray) -> float:
    """Moran's I of each column of ``values`` (cells x features) on ``graph``, averaged over the
    columns that vary."""
    values = np.asarray(values, dtype=np.float64)
    varying = values.std(axis=0) > 0
    return float(np.mean(sc.metrics.morans_i(graph, values[:, varying].T)))


def image_gain(records: list[dict], dataset: str) -> tuple[float | None, int]:
    """Mean ARI of ``gist`` minus that of ``gist_noimg`` on ``dataset`` over the seeds both have."""
    frame = pd.DataFrame([r for r in records if r.get("dataset") == dataset and "error" not in r])
    if frame.empty:
        return None, 0
    ari = frame[frame["method"].isin(["gist", "gist_noimg"])].pivot_table(index="seed", columns="method", values="ari")
    if not {"gist", "gist_noimg"} <= set(ari.columns):
        return None, 0
    both = ari.dropna()
    return (round(float((both["gist"] - both["gist_noimg"]).mean()), 3) if len(both) else None), len(both)


def measure(dataset: BenchDataset, adata: AnnData, records: list[dict]) -> dict:
    """The row of one dataset (``adata`` as :func:`bench.benchmark.load_samples` gives it)."""
    graph = pooled_graph(adata)
    graph = ((graph + graph.T) > 0).astype(np.float64)
    expression = np.asarray(expression_rep(adata, seed=0).obsm["X_pca"])
    image = image_features(adata, "stats")  # Moran's I is scale-free: no standardising needed
    gain, seeds = image_gain(records, dataset.name)
    return {"dataset": dataset.name, "cells": int(graph.shape[0]), "moran_expression_pcs": round(mean_morans_i(graph, expression), 3),
            "moran_image_stats": round(mean_morans_i(graph, image), 3), "gist_minus_noimg_ari": gain, "seeds": seeds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_root", default=str(ROOT.parent / "shared" / "data"), help="folder with the shared datasets")
    p.add_argument("--records", default=str(ROOT / "docs" / "benchmarks.json"), help="benchmark records (for the ARI gain)")
    p.add_argument("--out", default=str(ROOT / "docs" / "image_moran.json"), help="JSON written")
    args = p.parse_args(argv)
    records = read_records(args.records)["records"] if Path(args.records).is_file() else []
    rows = []
    for dataset in shared_datasets(args.data_root):
        adata = load_samples(dataset)
        if has_image(adata):
            rows.append(measure(dataset, adata, records))
    table = pd.DataFrame(rows)
    print(_markdown(table) if not table.empty else "(no dataset with an image)")
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
