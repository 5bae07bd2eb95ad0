"""Arguments the command lines share, written once (help texts from :data:`gist._docs.DOC`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gist._docs import DOC
from gist.datasets import DATASETS, load_dataset


def add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (give --dataset or --data)")
    group.add_argument("--dataset", choices=sorted(DATASETS),
                       help="a paper dataset read from ROOT/<dataset>/features/ (written by extract_features.py); "
                            "'demo' is generated in memory")
    group.add_argument("--data", metavar="PATH",
                       help="any prepared .h5ad (split by obs['sample']) or folder of per-sample .h5ad files "
                            "with raw counts in X, obsm['spatial'] and image features in obsm['imgs']")
    group.add_argument("--root", default="dataset", help=f"{DOC['root']} (default: %(default)s)")
    parser.add_argument("--save_path", help="checkpoint folder (default: checkpoint/<dataset>/)")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=0, help="repeat index in checkpoint names final_*_<repeat>.pth (default: %(default)s)")
    parser.add_argument("--device", default="auto", help=f"{DOC['device']} (default: %(default)s)")
    parser.add_argument("--strict", action="store_true",
                        help=DOC["strict"])
    graph = parser.add_argument_group("spatial graph (used when the data carry none, or to replace it)")
    graph.add_argument("--rad_cutoff", type=float,
                       help="connect cells within this distance (obsm['spatial'] units; default: the dataset's paper "
                            "radius, else 1.1 x the median distance to the 6th nearest cell)")
    graph.add_argument("--k_cutoff", type=int, help=DOC["k_cutoff"])


def run_name(args) -> str:
    """The name of a run's data: the dataset's, else the stem of ``--data``."""
    return args.dataset or Path(args.data).stem


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, require exactly one data source, and resolve the default checkpoint folder."""
    args = parser.parse_args(argv)
    if (args.dataset is None) == (args.data is None):
        parser.error("give exactly one of --dataset NAME or --data PATH")
    args.checkpoint_dir = Path(args.save_path or f"checkpoint/{run_name(args)}")
    return args


def load(args):
    """The samples, dataset spec and graph rule of a train/test run (:func:`gist.datasets.load_dataset`)."""
    return load_dataset(dataset=args.dataset, data=args.data, root=args.root, rad_cutoff=args.rad_cutoff,
                        k_cutoff=args.k_cutoff, strict=args.strict)
