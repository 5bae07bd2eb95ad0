"""Command lines of the figure scripts (``spatial.py``, ``umap_all.py``, ``violin.py``, ``mark_gene.py``).

Each reads ``RESULT_PATH/gist.h5ad`` (written by ``test.py``) and writes into ``RESULT_PATH/figures/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt

from gist.datasets import dataset_spec, scoring_defaults
from gist.errors import GistInputError
from gist.keys import (
    CLUSTER_KEY,
    DENOISED_LAYER,
    LATENT_KEY,
    LIBRARY_KEY,
    MATCHED_KEY,
    ORIGINAL_ALIASES,
    ORIGINAL_DENOISED_LAYER,
)
from gist.pl import PAPER_MARKERS, gene_map, present_genes, save_figure, spatial, umap, violin


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--dataset", default="demo", help="dataset name, for the default paths and label column (default: %(default)s)")
    parser.add_argument("--result_path", help="folder holding gist.h5ad (default: results/<dataset>/)")
    parser.add_argument("--label_key", help="obs column of the labels (default: the dataset's, e.g. merge_cell_type)")
    parser.add_argument("--format", choices=["png", "pdf", "svg"], default="png", help="image format (default: %(default)s)")
    parser.add_argument("--dpi", type=int, default=150, help="resolution of PNG output (default: %(default)s)")
    return parser


def _load(args):
    result_path = Path(args.result_path or f"results/{args.dataset}")
    path = result_path / "gist.h5ad"
    if not path.is_file():
        raise GistInputError(f"{path} not found: run test.py --dataset {args.dataset} first")
    adata = ad.read_h5ad(path)
    # results written before the scverse keys carry the original's names only
    for key, alias in ORIGINAL_ALIASES.items():
        if key not in adata.obsm and alias in adata.obsm:
            adata.obsm[key] = adata.obsm[alias]
    if DENOISED_LAYER not in adata.layers and ORIGINAL_DENOISED_LAYER in adata.layers:
        adata.layers[DENOISED_LAYER] = adata.layers[ORIGINAL_DENOISED_LAYER]
    label_key, _, _ = scoring_defaults(dataset_spec(args.dataset), adata.obs.columns, args.label_key, source=str(path))
    return adata, label_key, result_path / "figures"


def _save(fig, folder: Path, name: str, args) -> Path:

    target = save_figure(fig, folder / f"{name}.{args.format}", args.dpi)
    plt.close(fig)
    print(f"wrote {target}")
    return target


def _run(main, argv) -> int:
    try:
        return main(argv)
    except (GistInputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def spatial_main(argv: Sequence[str] | None = None) -> int:
    def main(argv):
        parser = _parser("spatial.py", "Spatial domain maps: one panel pair per FOV/sample, ground truth beside "
                                       "the matched GIST clusters, y as image rows.")
        parser.add_argument("--point_size", type=float, help="marker size (default: from the number of cells)")
        args = parser.parse_args(argv)
        adata, label_key, folder = _load(args)
        pred = MATCHED_KEY if MATCHED_KEY in adata.obs else (CLUSTER_KEY if CLUSTER_KEY in adata.obs else None)
        _save(spatial(adata, label_key, pred, LIBRARY_KEY, args.point_size), folder, "spatial", args)
        return 0

    return _run(main, argv)


def umap_main(argv: Sequence[str] | None = None) -> int:
    def main(argv):
        parser = _parser("umap_all.py", "UMAP of the fused GIST latent beside UMAP of the expression, coloured by labels.")
        parser.add_argument("--seed", type=int, default=0, help="random seed of neighbours/UMAP (default: %(default)s)")
        args = parser.parse_args(argv)
        adata, label_key, folder = _load(args)
        colour = label_key or (CLUSTER_KEY if CLUSTER_KEY in adata.obs else None)
        if colour is None:
            raise GistInputError("no labels and no clusters in the result to colour by: pass --label_key")
        _save(umap(adata, colour, LATENT_KEY, seed=args.seed), folder, "umap", args)
        return 0

    return _run(main, argv)


def violin_main(argv: Sequence[str] | None = None) -> int:
    def main(argv):
        parser = _parser("violin.py", "Stacked violins of marker genes, raw vs denoised (layers['gist_denoised']), "
                                      "grouped by label and by matched cluster.")
        parser.add_argument("--genes", nargs="+", default=list(PAPER_MARKERS),
                            help="genes to show (default: the paper's 16 markers; absent genes are skipped)")
        args = parser.parse_args(argv)
        adata, label_key, folder = _load(args)
        genes = present_genes(adata, args.genes)
        if not genes:
            raise GistInputError(f"none of the genes {args.genes} is in the data; choose some with --genes")
        groupbys = [k for k in (label_key, MATCHED_KEY if MATCHED_KEY in adata.obs else CLUSTER_KEY) if k in adata.obs]
        if not groupbys:
            raise GistInputError("no labels or clusters to group by: run test.py with labels or --ncluster")
        _need_denoised(adata, folder.parent / "gist.h5ad")
        _save(violin(adata, genes, groupbys, DENOISED_LAYER), folder, "violin", args)
        return 0

    return _run(main, argv)


def _need_denoised(adata, path: Path) -> None:
    """A clear error when ``gist.h5ad`` was written without the denoised layer (test.py --denoised off)."""
    if DENOISED_LAYER not in adata.layers:
        raise GistInputError(f"{path} has no denoised expression (layers['{ORIGINAL_DENOISED_LAYER}']): it was written "
                             "with test.py --denoised off (or auto on a very large dataset); rerun test.py with --denoised on")


def mark_gene_main(argv: Sequence[str] | None = None) -> int:
    def main(argv):
        parser = _parser("mark_gene.py", "Per-FOV spatial map of one gene, raw vs denoised.")
        parser.add_argument("--gene", default="KRAS", help="gene to map (default: %(default)s)")
        parser.add_argument("--point_size", type=float, help="marker size (default: from the number of cells)")
        args = parser.parse_args(argv)
        adata, _, folder = _load(args)
        if args.gene not in adata.var_names:
            raise GistInputError(f"gene {args.gene!r} is not in {args.result_path or 'the result'}; choose one with --gene")
        _need_denoised(adata, folder.parent / "gist.h5ad")
        _save(gene_map(adata, args.gene, LIBRARY_KEY, DENOISED_LAYER, args.point_size), folder, f"gene_{args.gene}", args)
        return 0

    return _run(main, argv)
