"""Benchmark: a whole-slide-sized run (1M cells x 6,000 genes) on this machine's CPU and memory.

Builds a synthetic CosMx-6k-like dataset (250 FOVs of 4,000 cells, 6,000 genes, ~3 % non-zero
counts, cells on a jittered lattice of ~70 px pitch) and times, with the peak resident memory
after each stage:

1. generation of the sparse counts (one AnnData, ``obs['sample']`` = FOV);
2. preparation of **all** cells: spatial graphs (the radius rule), gene selection (the default rule,
   or ``--n_top_genes``), normalisation into per-sample sparse model inputs;
3. training steps of the paper model on ``--train_fovs`` FOVs (a full CPU epoch on a million cells
   is GPU work: ~150 MFLOP per cell and step at 6,000 genes);
4. inference for **every** cell: the fused latent (encoder layers), tile by tile where a sample
   exceeds ``--max_cells_per_batch``.

The last line is ``peak_rss_gib <x>`` (target < 20 GiB; the whole bench < 25 minutes here).

    python bench/scale.py                                   # 250 FOVs x 4,000 cells x 6,000 genes
    python bench/scale.py --fovs 25 --json /tmp/scale.json  # a tenth, to try it
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
from gist import pp  # noqa: E402
from gist.tl._inputs import model_input, sample_graphs  # noqa: E402
from gist.tl.inference import embed_graph  # noqa: E402
from gist.keys import LATENT_KEY, LIBRARY_KEY  # noqa: E402
from gist.io.samples import split_samples  # noqa: E402
from gist.tl.training import TrainConfig, train  # noqa: E402

FOV_SHAPE = (3648, 5472)  # rows, columns (CosMx)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def synthetic_fov(rng: np.random.Generator, cells: int, genes: int, density: float, gene_p: np.ndarray) -> sp.csr_matrix:
    """Counts of one FOV: ``density`` non-zeros per row on genes drawn by ``gene_p``, values 1 + Poisson."""
    per_row = rng.binomial(genes, density, size=cells)
    indptr = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64)
    indices = rng.choice(genes, size=int(indptr[-1]), p=gene_p).astype(np.int32)
    data = (1 + rng.poisson(0.6, size=len(indices))).astype(np.float32)
    counts = sp.csr_matrix((data, indices, indptr), shape=(cells, genes))
    counts.sum_duplicates()  # a gene drawn twice in a row: one entry
    return counts


def lattice(rng: np.random.Generator, cells: int) -> np.ndarray:
    """``cells`` jittered lattice positions filling a CosMx FOV."""
    pitch = np.sqrt(FOV_SHAPE[0] * FOV_SHAPE[1] / cells)
    while True:  # the densest square pitch whose grid holds every cell
        cols, rows = np.meshgrid(np.arange(pitch / 2, FOV_SHAPE[1], pitch), np.arange(pitch / 2, FOV_SHAPE[0], pitch))
        if cols.size >= cells:
            break
        pitch *= 0.98
    xy = np.column_stack([cols.ravel(), rows.ravel()])[:cells]
    return xy + rng.normal(0, pitch / 6, size=xy.shape)


def make_dataset(fovs: int, cells: int, genes: int, density: float, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    gene_p = rng.lognormal(0, 1.2, size=genes)
    gene_p /= gene_p.sum()
    parts, coords = [], []
    for _ in range(fovs):
        parts.append(synthetic_fov(rng, cells, genes, density, gene_p))
        coords.append(lattice(rng, cells))
    counts = sp.vstack(parts, format="csr")
    del parts
    adata = ad.AnnData(X=counts, var=pd.DataFrame(index=[f"G{i:05d}" for i in range(genes)]))
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    adata.obs[LIBRARY_KEY] = pd.Categorical(np.repeat([f"fov{f:03d}" for f in range(fovs)], cells))
    adata.obsm["spatial"] = np.concatenate(coords)
    return adata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--fovs", type=int, default=250, help="FOVs (samples)")
    parser.add_argument("--cells", type=int, default=4000, help="cells per FOV")
    parser.add_argument("--genes", type=int, default=6000, help="genes in the panel")
    parser.add_argument("--density", type=float, default=0.03, help="fraction of non-zero counts")
    parser.add_argument("--n_top_genes", type=int, default=None,
                        help="genes kept for the model (default: the pipeline's rule, 3,000 most variable above 3,000)")
    parser.add_argument("--train_fovs", type=int, default=2, help="FOVs in the timed training steps")
    parser.add_argument("--train_epochs", type=int, default=1, help="epochs over --train_fovs")
    parser.add_argument("--max_cells_per_batch", type=int, default=None,
                        help="tile samples above this size (default: the training default)")
    parser.add_argument("--json", default="bench/results/scale.json", help="where to write the table")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    started = time.perf_counter()

    def stage(name: str, seconds: float, **extra) -> None:
        rows.append({"stage": name, "seconds": round(seconds, 1), "peak_rss_gib": round(peak_rss_gib(), 2)} | extra)
        print(f"  {name}: {seconds:.1f} s, peak RSS {peak_rss_gib():.2f} GiB", file=sys.stderr, flush=True)

    t = time.perf_counter()
    adata = make_dataset(args.fovs, args.cells, args.genes, args.density)
    stage("generate counts", time.perf_counter() - t, cells=adata.n_obs, genes=adata.n_vars,
          nonzero=f"{adata.X.nnz / (adata.n_obs * adata.n_vars):.3f}")

    t = time.perf_counter()
    pp.spatial_graph(adata, verbose=False)
    stage("spatial graphs (radius rule)", time.perf_counter() - t,
          neighbours=round(adata.obsp["spatial_connectivities"].nnz / adata.n_obs, 2))
    t = time.perf_counter()
    pp.select_genes(adata, args.n_top_genes, verbose=False)
    adata = model_input(adata)  # the marked genes, as gist.tl.fit reads them
    stage("gene selection", time.perf_counter() - t, genes=adata.n_vars)
    t = time.perf_counter()
    samples, _ = split_samples(adata)
    del adata
    graphs = []
    while samples:  # one sample's dense-free inputs at a time
        sample = samples.pop(0)
        graphs.extend(sample_graphs([sample]))
    stage("normalise (sparse model inputs)", time.perf_counter() - t, samples=len(graphs))

    kwargs = {"max_cells_per_batch": args.max_cells_per_batch} if args.max_cells_per_batch else {}
    config = TrainConfig(epochs=args.train_epochs, save_every=0, device="cpu", **kwargs)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = train(graphs[: args.train_fovs], config, tmp, progress=False)
    seconds = time.perf_counter() - t
    trained = sum(g.n_cells for g in graphs[: args.train_fovs]) * args.train_epochs
    stage(f"train paper model ({args.train_fovs} FOVs x {args.train_epochs} epochs)", seconds,
          cells_per_s=round(trained / seconds, 1))

    t = time.perf_counter()
    latents = []
    for g in graphs:
        latents.append(embed_graph(model, g, torch.device("cpu"), denoise=False, **({"max_cells": args.max_cells_per_batch}
                                                                               if args.max_cells_per_batch else {}))[LATENT_KEY])
    latent = np.concatenate(latents)
    seconds = time.perf_counter() - t
    stage("inference, every cell (fused latent)", seconds, cells=latent.shape[0], cells_per_s=round(latent.shape[0] / seconds))

    total = time.perf_counter() - started
    table = pd.DataFrame(rows).astype(object)
    table = table.map(lambda v: "" if pd.isna(v) else int(v) if isinstance(v, float) and v.is_integer() and v > 100 else v)
    print(table.to_string(index=False))
    print(f"total_minutes {total / 60:.1f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or "cpu", "threads": torch.get_num_threads(),
                               "args": vars(args), "rows": rows, "total_seconds": round(total, 1),
                               "peak_rss_gib": round(peak_rss_gib(), 2)}, indent=2))
    print(f"peak_rss_gib {peak_rss_gib():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
