"""``train.py``: train GIST and write checkpoints (:mod:`gist.tl.checkpoints`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gist import pp, tl
from gist._docs import DOC
from gist.cli._args import add_data_args, load, parse
from gist.cli.test import test_main
from gist.datasets import DATASETS
from gist.device import PRECISIONS
from gist.errors import GistInputError
from gist.keys import HVG_KEY, IMG_KEY
from gist.tl import distributed
from gist.tl.batches import DEFAULT_MAX_CELLS
from gist.tl.recipes import DEFAULT_RECIPE, RECIPES, TASKS, task_of
from gist.tl.training import expected_checkpoint_bytes, recipe_config
from gist.utils import folder_bytes, human_bytes


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train the GIST hybrid graph-transformer autoencoder. Recipe 'gist' (default): an ensemble "
        "of 5 models (repeats R..R+4, seeds S..S+4) of 150 epochs each on 50 principal components of the "
        "expression (cell types: hidden 128, latent 30, 2 message-passing layers, image features standardised "
        "and reconstructed by the fused branch; domains: latent 50, 1 message-passing layer, no image branch). Recipe 'paper': the original (one model, 1000 epochs). Both: Adam, "
        "lr 1e-3, weight decay 1e-4, gradient clipping 5, one sample per mini-batch.",
    )
    add_data_args(parser)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE,
                        help="'gist' (default; see docs/reproduction.md for each difference) or 'paper' (the original's)")
    parser.add_argument("--task", choices=TASKS,
                        help="what the embedding is for, which sets the recipe's task settings: cell_types (leiden; "
                             "gist: 2 message-passing layers, latent 30, the image) or domains (mclust; gist: 1 layer, latent 50, no image). Default: the dataset's "
                             "clustering (domains for the Visium paper datasets), else cell_types")
    parser.add_argument("--epochs", type=int,
                        help=f"training epochs per model (default: gist {RECIPES['gist'].settings['epochs']}; paper 1000, "
                             f"demo {RECIPES['paper'].epochs_by_dataset['demo']})")
    parser.add_argument("--ensemble", type=int, help="models to train (default: gist 5, paper 1)")
    parser.add_argument("--n_top_genes", type=int,
                        help="train on the N most variable genes (seurat_v3 on raw counts, all samples pooled); default: "
                             "var['highly_variable'] when the data have it, else all genes up to 3,000, else the 3,000 "
                             "most variable")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: 0.001)")
    parser.add_argument("--weight_decay", type=float, help="Adam weight decay (default: 0.0001)")
    parser.add_argument("--gradient_clipping", type=float, help="max gradient norm (default: 5)")
    parser.add_argument("--hidden", type=int, nargs=2, metavar=("HIDDEN", "LATENT"),
                        help="hidden and latent widths (default: the recipe's; gist 128 30 for --task cell_types and "
                             "128 50 for domains, paper 512 30)")
    parser.add_argument("--hops", type=int, choices=range(5), metavar="{0..4}",
                        help="graph layers that pass messages from the input, the rest per-cell (default: the "
                             "recipe's; gist: 2 for --task cell_types, 1 for domains; 4 = every layer, the original's)")
    parser.add_argument("--n_pcs", type=int, metavar="N",
                        help="feed the model N principal components of the expression instead of the genes; the "
                             "reconstruction is mapped back to genes through the loadings (default: the recipe's; gist 50, at most the "
                             "gene count; 0 = genes, the original's)")
    parser.add_argument("--neighbour_input", type=float, metavar="LAMBDA",
                        help="BANKSY-style input: each cell's principal components beside the mean of its graph "
                             "neighbours', each block standardised and weighted sqrt(1 - LAMBDA) and sqrt(LAMBDA); the "
                             "model still reconstructs the cell's own expression. Default: the recipe's; gist: 0.2 for "
                             "--task domains (BANKSY's Visium value), none for cell_types; 0 = own components alone; "
                             "needs --n_pcs > 0")
    parser.add_argument("--use_img", type=int, choices=[0, 1],
                        help="1: train the image branch when the data have image features (obsm['imgs']); 0: the gene "
                             "branch alone. Default: the recipe's; gist: 1 for --task cell_types, 0 for domains (on DLPFC "
                             "151510's H&E the image cost 0.10 ARI over 5 seeds, see BENCHMARKS.md); paper: 1")
    parser.add_argument("--use_img_loss", type=int, choices=[0, 1],
                        help="1: the image branch reconstructs the image features instead of expression (default: 0)")
    parser.add_argument("--standardize_img", type=int, choices=[0, 1],
                        help="gist recipe: 1 (default) z-scores each image feature inside the model; 0 feeds them "
                             "in their own units, so a low-contrast image weighs little (measured, ARI: DLPFC 151510 "
                             "mean 0.39 with 0 vs 0.28 with 1 (4 seeds; 0.42 without image); "
                             "the demo, whose classes differ only in the image, 0.67 with 0 vs 0.94 with 1 (3 seeds); "
                             "see BENCHMARKS.md)")
    parser.add_argument("--save_every", type=int,
                        help="also keep the weights of every N-th epoch, final_<epoch>_<repeat>.pth (default: gist "
                             "0 = only each member's final_<repeat>.pth; paper 100, the files its --select oracle reads)")
    parser.add_argument("--keep_state", action="store_true",
                        help="keep each member's resume state train_state_<repeat>.pt (weights + optimiser, ~3x a "
                             "model) after a clean finish, so that the run can later be extended exactly with "
                             "--resume --epochs N (default: removed once the member has finished)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --save_path: members that finished are loaded, the one "
                             "in progress continues from its resume state (written every 50 epochs)")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                        help="fp32 (default); tf32: fp32 with TF32 matmuls on CUDA (not yet timed by this project); "
                             "bf16/fp16 autocast (measured slower than fp32: ~7x on this project's CPU, 1.2x on an H200)")
    parser.add_argument("--max_cells_per_batch", type=int,
                        help="samples with more cells are split into spatial tiles that carry their halo (exact: every "
                             "cell sees its whole neighbourhood; loss on the tile's own cells); default "
                             f"{DEFAULT_MAX_CELLS:,}, sized for a 24 GiB GPU at ~1,000 genes; 0: never tile")
    parser.add_argument("--patience", type=int,
                        help="stop early after this many epochs without a relative loss improvement of --min_delta "
                             "(default: off, train all --epochs); the checkpoint record says when and why it stopped")
    parser.add_argument("--min_delta", type=float, default=0.0,
                        help="with --patience: the relative improvement that counts (default: %(default)s, any)")
    parser.add_argument("--test_only", type=int, choices=[0, 1], default=0,
                        help="1: skip training and run inference with the final checkpoint, as test.py does")
    parser.add_argument("--no_progress", action="store_true", help=DOC["no_progress"])
    return parser


def train_main(argv: Sequence[str] | None = None) -> int:
    """``train.py``: train and write checkpoints."""
    parser = train_parser()
    args = parse(parser, argv)
    if args.test_only:
        return test_main(_forward_to_test(args))
    epochs = args.epochs
    spec = DATASETS.get(args.dataset)
    task = args.task or task_of(spec.cluster if spec and spec.cluster else "leiden")
    overrides = {"lr": args.lr, "weight_decay": args.weight_decay, "gradient_clipping": args.gradient_clipping,
                 "hidden": tuple(args.hidden) if args.hidden else None, "save_every": args.save_every,
                 "use_img": None if args.use_img is None else bool(args.use_img),
                 "use_img_loss": None if args.use_img_loss is None else bool(args.use_img_loss),
                 "standardize_img": None if args.standardize_img is None else bool(args.standardize_img),
                 "hops": args.hops, "n_pcs": args.n_pcs, "neighbour_input": args.neighbour_input,
                 "repeat": args.repeat, "precision": args.precision, "patience": args.patience,
                 "min_delta": args.min_delta if args.patience else None, "keep_state": args.keep_state or None}
    if args.max_cells_per_batch is not None:
        overrides["max_cells_per_batch"] = args.max_cells_per_batch or None
    try:
        adata, _, graph = load(args)
        pp.select_genes(adata, args.n_top_genes)
        record = {"argv": list(sys.argv[1:] if argv is None else argv), "dataset": args.dataset, "data": args.data,
                  "graph": graph, "gene_rule": adata.uns["gist"]["genes"]["rule"]}
        if distributed.is_main():
            print(_expected_size(adata, args.recipe, task, args.dataset, epochs, args.ensemble, overrides, args.checkpoint_dir))
        models = tl.fit(adata, args.recipe, epochs=epochs, ensemble=args.ensemble, seed=args.seed, task=task, dataset=args.dataset,
                        save_path=args.checkpoint_dir, device=args.device, resume=args.resume,
                        progress=not args.no_progress, embed_cells=False, record=record,
                        **{k: v for k, v in overrides.items() if v is not None})
    except GistInputError as err:
        parser.exit(2, f"train.py: error: {err}\n")
    finally:
        distributed.teardown()
    if not distributed.is_main():
        return 0
    trained = adata.uns["gist"]
    finals = ", ".join(f"{loss:.4f}" for loss in trained["final_loss"])
    print(f"trained {len(models)} model(s) ({args.recipe} recipe) for {trained['settings']['epochs']} epochs, "
          f"final loss {finals}; checkpoints in {args.checkpoint_dir}/ ({human_bytes(folder_bytes(args.checkpoint_dir))})")
    return 0


def _expected_size(adata, recipe: str, task: str, dataset: str | None, epochs: int | None, ensemble: int | None,
                   overrides: dict, folder: Path) -> str:
    """The line train.py prints before training: the checkpoint bytes the run will leave."""
    config = recipe_config(recipe, task, dataset, epochs=epochs, ensemble=ensemble, **{k: v for k, v in overrides.items() if v is not None})
    img_dim = adata.obsm[IMG_KEY].shape[1] if IMG_KEY in adata.obsm else 0
    size = expected_checkpoint_bytes(int(adata.var[HVG_KEY].sum()), img_dim, config)
    return (f"checkpoints: about {human_bytes(size['kept'])} will stay in {folder}/ ({size['files']} weight file(s)"
            f"{' and the resume states' if config.keep_state else ''}); while a member trains its resume state adds "
            f"{human_bytes(size['state'])}")


def _forward_to_test(args) -> list[str]:
    out = ["--seed", str(args.seed), "--repeat", str(args.repeat), "--device", args.device, "--root", args.root]
    out += ["--dataset", args.dataset] if args.dataset else ["--data", args.data]
    if args.save_path:
        out += ["--save_path", args.save_path]
    return out
