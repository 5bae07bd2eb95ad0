"""Cluster kept benchmark representations again, under label-free post-processing variants.

``bench/reproduce.py --keep_reps DIR`` writes each run's representation, clusters, labels,
coordinates and (for GIST) spatial graph; this script re-scores them without retraining, so that
a choice of the clustering step (smoothing, refinement) is measured on every dataset and seed at
once, never chosen per dataset by its ARI. It prints a table of mean ± sd ARI per dataset, method
and variant, and writes the records as JSON.

    python bench/recluster.py DIR [--variants as_run raw avg refine] [--out recluster.json]

Variants (each from the stored representation ``z``; ``A`` is the spatial graph with self-loops,
row-normalised; graph = the run's own when kept, else the radius rule of :mod:`gist.pp.graph`):

``as_run``  the run's own clusters (checks that the scores are reproduced)
``raw``     the run's clusterer on ``z``
``avg``     on ``A z`` (the ``gist`` recipe's smoothing for domains)
``avg2``    on ``A A z`` (two rounds: the second ring weighs in)
``avg_pc30`` on the first 30 principal components of ``A z`` (as many dimensions as the expression route)
``sized``   ``avg`` when the section has at least 150 cells per target cluster (label free), else ``raw``
``banksy``  on ``[sqrt(1 - l) z, sqrt(l) A z]`` with BANKSY's domain weight ``l = 0.8``, each block standardised
``hmrf``    the tied mixture with a Potts prior over the graph (:func:`gist.tl.hmrf.potts_mixture`,
            strength by pseudo-likelihood) on ``z``; ``avg_hmrf`` the same on ``A z``
``rings``   on ``[z, ring_1 z, ring_2 z, ring_3 z]``: ``z`` beside its means over the exact 1-, 2- and
            3-hop rings of the graph (CellCharter's blocks, ``cellcharter.gr.aggregate_neighbors``)
``refine``  ``avg``'s clusters, each cell then given the most frequent cluster among itself and its
            graph neighbours (GraphST's label refinement on the spatial graph, not its 50 nearest)
``consensus``  each ensemble member's latent (kept as ``members``) averaged as ``avg`` and clustered on its
            own, then the members' partitions joined by consensus (:func:`gist.tl.consensus.consensus_clusters`);
            ``consensus_raw`` the same without the average
``expr_raw``  the expression components of the same dataset and seed (the kept ``scanpy`` run) beside ``z``,
            each block standardised and scaled to unit total variance; ``expr_avg`` the same beside ``A z``;
            ``expr_avg_pca`` that reduced to 30 principal components
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: BANKSY's neighbourhood weight for domain detection (lambda = 0.8 in its paper and package).
BANKSY_LAMBDA = 0.8
VARIANTS = ("as_run", "raw", "avg", "avg2", "avg_pc30", "sized", "banksy", "rings", "refine", "hmrf", "avg_hmrf", "consensus",
            "consensus_raw", "expr_raw", "expr_avg", "expr_avg_pca")
#: ``sized``: domains averaged over the graph only when the clusters would hold at least this many cells
#: each on average (cells / target count); fewer, and a 7-9-cell neighbourhood is a large part of a domain.
SIZED_MIN_CELLS = 150
#: Variants that leave the representation unaveraged: the only ones put to the rule for cell types (leiden).
CELL_TYPE_VARIANTS = ("raw", "consensus_raw", "expr_raw")
#: Rings of neighbours CellCharter aggregates for domains (its default, ``n_layers=3``).
RING_HOPS = 3


#: Every benchmark method name starts with one of these (``image_<extractor>``, ``gist_<variant>``, ...).
METHOD_PREFIXES = ("scanpy", "expression", "image", "gist", "graphst", "banksy", "cellcharter")
RUN_FILE = re.compile(rf"^(?P<dataset>.+?)_(?P<method>(?:{'|'.join(METHOD_PREFIXES)})[a-z0-9_+]*)_s(?P<seed>\d+)\.npz$")


def run_name(path: Path) -> tuple[str, str, int]:
    """``(dataset, method, seed)`` of a kept run's file name ``<dataset>_<method>_s<seed>.npz``."""
    match = RUN_FILE.match(path.name)
    if match is None:
        raise ValueError(f"{path.name}: not a kept run (<dataset>_<method>_s<seed>.npz, the method starting with "
                         f"one of {', '.join(METHOD_PREFIXES)})")
    return match["dataset"], match["method"], int(match["seed"])


def graph_of(arrays, n: int) -> sp.csr_matrix:
    """The run's spatial graph (kept CSR), else the radius-rule graph within each sample
    (:func:`gist.pp.graph.spatial_graph`); symmetric, with self-loops, unweighted."""
    from bench.benchmark import kept_graph

    adj = kept_graph(arrays, n)
    if adj is None:
        import pandas as pd
        from anndata import AnnData

        from gist.pp.graph import spatial_graph
        from gist.keys import LIBRARY_KEY

        obs = pd.DataFrame({LIBRARY_KEY: arrays["samples"]}, index=np.arange(n).astype(str))
        cells = AnnData(np.zeros((n, 1), dtype=np.float32), obs=obs, obsm={"spatial": arrays["spatial"]})
        adj = spatial_graph(cells, verbose=False, copy=True).obsp["spatial_connectivities"]
    adj = ((adj + adj.T) > 0).astype(np.float64).tolil()
    adj.setdiag(1.0)
    return adj.tocsr()


def refine(adj: sp.csr_matrix, clusters: np.ndarray) -> np.ndarray:
    """Each cell's most frequent cluster among itself and its graph neighbours (ties: its own)."""
    uniques, codes = np.unique(clusters, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(codes.size), (np.arange(codes.size), codes)), shape=(codes.size, uniques.size))
    votes = (adj @ onehot).toarray()
    votes[np.arange(codes.size), codes] += 0.5  # a tie keeps the cell's own cluster
    return uniques[votes.argmax(axis=1)]


def ring_blocks(z: np.ndarray, adj: sp.csr_matrix, hops: int = RING_HOPS) -> np.ndarray:
    """``z`` beside its means over the exact 1- to ``hops``-hop rings of ``adj`` (a cell's own row
    and its self-loop do not count as a neighbour), as ``cellcharter.gr.aggregate_neighbors``."""
    from anndata import AnnData

    from gist.errors import GistInputError

    try:
        import cellcharter as cc
    except ImportError as err:
        raise GistInputError(f"the rings variant needs cellcharter ({err}): pip install -r bench/requirements.txt") from None
    links = sp.csr_matrix(adj, dtype=np.float64, copy=True)
    links.setdiag(0)
    links.eliminate_zeros()
    cells = AnnData(np.zeros((z.shape[0], 1), dtype=np.float32), obsm={"rep": np.asarray(z, dtype=np.float32)},
                    obsp={"spatial_connectivities": links})
    return np.asarray(cc.gr.aggregate_neighbors(cells, n_layers=hops, use_rep="rep", copy=True), dtype=np.float64)


def cluster_rep(z: np.ndarray, method: str, ncluster: int, seed: int) -> np.ndarray:
    from anndata import AnnData

    from gist.tl.clustering import mclust, res_search

    adata = AnnData(np.zeros((z.shape[0], 1), dtype=np.float32), obsm={"rep": np.asarray(z, dtype=np.float32)})
    if method == "mclust":
        return mclust(adata, ncluster, seed=seed, use_rep="rep", key_added="c").astype(str)
    res_search(adata, ncluster, seed=seed, use_rep="rep", key_added="c")
    return adata.obs["c"].astype(str).to_numpy()


def variant_clusters(variant: str, arrays, method: str, ncluster: int, seed: int) -> np.ndarray:
    from gist.tl.clustering import neighbour_average
    from gist.tl.inference import standardize_columns

    z = np.asarray(arrays["rep"], dtype=np.float64)
    if variant == "as_run":
        return np.asarray(arrays["clusters"])
    if variant == "raw":
        return cluster_rep(z, method, ncluster, seed)
    adj = graph_of(arrays, z.shape[0])
    if variant == "avg":
        return cluster_rep(neighbour_average(z, adj), method, ncluster, seed)
    if variant == "avg_pc30":
        from sklearn.decomposition import PCA

        smoothed = neighbour_average(z, adj)
        return cluster_rep(PCA(n_components=min(30, *smoothed.shape), random_state=seed).fit_transform(smoothed),
                           method, ncluster, seed)
    if variant == "sized":
        smooth = z.shape[0] / ncluster >= SIZED_MIN_CELLS
        return cluster_rep(neighbour_average(z, adj) if smooth else z, method, ncluster, seed)
    if variant == "avg2":
        return cluster_rep(neighbour_average(neighbour_average(z, adj), adj), method, ncluster, seed)
    if variant == "banksy":
        mixed = np.hstack([np.sqrt(1 - BANKSY_LAMBDA) * standardize_columns(z),
                           np.sqrt(BANKSY_LAMBDA) * standardize_columns(neighbour_average(z, adj))])
        return cluster_rep(mixed, method, ncluster, seed)
    if variant == "rings":
        return cluster_rep(ring_blocks(z, adj), method, ncluster, seed)
    if variant in ("hmrf", "avg_hmrf"):
        from gist.tl.hmrf import potts_mixture

        rep = neighbour_average(z, adj) if variant == "avg_hmrf" else z
        return potts_mixture(rep, adj, ncluster, seed=seed).labels.astype(str)
    if variant == "refine":
        return refine(adj, cluster_rep(neighbour_average(z, adj), method, ncluster, seed))
    if variant in ("consensus", "consensus_raw"):
        from gist.tl.consensus import consensus_clusters

        if "members" not in arrays:
            raise ValueError("the run kept no member latents (an ensemble run with --keep_reps keeps them)")
        members = np.split(np.asarray(arrays["members"], dtype=np.float64), int(arrays["n_members"]), axis=1)
        parts = [cluster_rep(neighbour_average(m, adj) if variant == "consensus" else m, method, ncluster, seed) for m in members]
        return consensus_clusters(parts, ncluster, seed=seed).astype(str)
    if variant.startswith("expr_"):
        if "expr" not in arrays:
            raise ValueError("no kept scanpy run of this dataset and seed beside it")
        latent = neighbour_average(z, adj) if variant.startswith("expr_avg") else z
        blocks = [standardize_columns(b) / np.sqrt(b.shape[1]) for b in (np.asarray(arrays["expr"], dtype=np.float64), latent)]
        joined = np.hstack(blocks)
        if variant == "expr_avg_pca":
            from sklearn.decomposition import PCA

            joined = PCA(n_components=min(30, *joined.shape), random_state=seed).fit_transform(joined)
        return cluster_rep(joined, method, ncluster, seed)
    raise ValueError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")


def main(argv: list[str] | None = None) -> int:
    from bench.benchmark import shared_datasets
    from gist.errors import GistInputError
    from gist.tl.metrics import labelled_mask, n_labels, compare_labels

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("reps", help="folder written by bench/reproduce.py --keep_reps")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="post-processing variants to score")
    p.add_argument("--methods", nargs="+", default=None, help="only these methods (default: all kept)")
    p.add_argument("--cluster", choices=["leiden", "mclust"], default=None,
                   help="clusterer for datasets not in --data_root (default: that dataset's benchmark clusterer)")
    p.add_argument("--data_root", default=str(ROOT.parent / "shared" / "data"), help="where the benchmark's datasets are")
    p.add_argument("--out", default=None, help="write the records here (JSON)")
    p.add_argument("--baselines", default=None, metavar="JSON",
                   help="benchmark records (bench/reproduce.py --out) with the floor methods: then every variant is put to "
                        "the selection rule against the run as it was (as_run), per task (bench.benchmark_report.compare_to_default)")
    args = p.parse_args(argv)

    known = {d.name: d for d in shared_datasets(args.data_root)}
    records = []
    for path in sorted(Path(args.reps).glob("*.npz")):
        dataset, method, seed = run_name(path)
        if args.methods and method not in args.methods:
            continue
        arrays = dict(np.load(path))
        expr = path.with_name(f"{dataset}_scanpy_s{seed}.npz")
        if expr.is_file():
            arrays["expr"] = np.load(expr)["rep"]
        spec = known.get(dataset)
        clusterer = args.cluster or (spec.cluster if spec else "leiden")
        labels = arrays["labels"]
        labelled = labelled_mask(labels)
        ncluster = (spec.ncluster if spec and spec.ncluster else None) or n_labels(labels)
        for variant in args.variants:
            try:
                clusters = variant_clusters(variant, arrays, clusterer, ncluster, seed)
            except GistInputError as err:
                p.exit(2, f"recluster.py: error: {err}\n")
            summary, _, _ = compare_labels(labels[labelled], clusters[labelled])
            records.append({"dataset": dataset, "method": method, "seed": seed, "variant": variant,
                            "ari": round(float(summary["ari"]), 4), "nmi": round(float(summary["nmi"]), 4)})
            print(f"{dataset} {method} s{seed} {variant}: ARI {records[-1]['ari']:.3f}", flush=True)
    print(table(records))
    if args.out:
        Path(args.out).write_text(json.dumps(records, indent=1))
    if args.baselines:
        print(decision_table(records, json.loads(Path(args.baselines).read_text())["records"]))
    return 0


def decision_table(records: list[dict], baselines: list[dict]) -> str:
    """Markdown: each method's variants put to the selection rule against the method as it ran
    (``<method>/as_run``), per task, with the floor methods of ``baselines`` (their own rows too)."""
    from bench.benchmark_report import FLOOR_METHODS, TASK_FAMILIES, compare_to_default

    renamed = [r | {"method": f"{r['method']}/{r['variant']}"} for r in records]
    combined = [r for r in baselines if r.get("method") in FLOOR_METHODS or "/" not in r.get("method", "")] + renamed
    lines = ["| task | candidate | score | default | difference (90% interval) | below floor | replaces |", "|---|---|---|---|---|---|---|"]
    for task in TASK_FAMILIES:
        for method in sorted({r["method"] for r in records}):
            for variant in [v for v in VARIANTS if v != "as_run" and any(r["variant"] == v for r in records)
                            and (task == "domains" or v in CELL_TYPE_VARIANTS)]:
                out = compare_to_default(combined, f"{method}/{variant}", f"{method}/as_run", task)
                if not out["complete"]:
                    continue
                below = ", ".join(f"{k} {v:.2f}" for k, v in out["shortfalls"].items()) or "none"
                lines.append(f"| {task} | {method}/{variant} | {out['score']:.3f} | {out['default_score']:.3f} | "
                             f"{out['difference']:+.3f} ({out['low']:+.3f} .. {out['high']:+.3f}) | {below} | {out['replaces']} |")
    return "\n".join(lines)


def table(records: list[dict]) -> str:
    """Markdown: one row per dataset x method, one column per variant, ARI mean ± sd (n)."""
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
    rows = sorted({(r["dataset"], r["method"]) for r in records})
    lines = ["| dataset | method | " + " | ".join(variants) + " |", "|---|---|" + "---|" * len(variants)]
    for dataset, method in rows:
        cells = []
        for v in variants:
            aris = [r["ari"] for r in records if (r["dataset"], r["method"], r["variant"]) == (dataset, method, v)]
            cells.append(f"{np.mean(aris):.3f} ± {np.std(aris, ddof=1) if len(aris) > 1 else 0:.3f} ({len(aris)})" if aris else "-")
        lines.append(f"| {dataset} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
