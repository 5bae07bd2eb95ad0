"""Command lines behind ``train.py`` and ``test.py`` (kept here so they are importable and tested)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gist.tl import distributed
from gist.tl.batches import DEFAULT_MAX_CELLS
from gist.tl._inputs import feature_dims
from gist.datasets import load_dataset
from gist.datasets import DATASETS, dataset_spec
from gist.device import PRECISIONS
from gist.errors import GistInputError
from gist.tl.clustering import default_rep
from gist.keys import LATENT_KEY, LIBRARY_KEY
from gist.tl.training import DEFAULT_RECIPE, RECIPES, TASKS, task_of
from gist.utils import folder_bytes, h5ad_safe, human_bytes

#: test.py --denoised auto leaves the dense denoised layer out above this size (GiB).
DENOISED_AUTO_MAX_GIB = 4.0
#: Epochs of the paper recipe when --epochs is not given: the paper's 1000, a demo-sized run for the demo.
PAPER_RECIPE_EPOCHS = {"demo": 100}


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (give --dataset or --data)")
    group.add_argument("--dataset", choices=sorted(DATASETS),
                       help="a paper dataset read from ROOT/<dataset>/features/ (written by extract_features.py); "
                            "'demo' is generated in memory")
    group.add_argument("--data", metavar="PATH",
                       help="any prepared .h5ad (split by obs['sample']) or folder of per-sample .h5ad files "
                            "with raw counts in X, obsm['spatial'] and image features in obsm['imgs']")
    group.add_argument("--root", default="dataset", help="folder holding the datasets (default: %(default)s)")
    parser.add_argument("--save_path", help="checkpoint folder (default: checkpoint/<dataset>/)")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=0, help="repeat index in checkpoint names final_*_<repeat>.pth (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: %(default)s)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse input whose counts are not whole numbers (default: a warning that raw counts are expected)")
    graph = parser.add_argument_group("spatial graph (used when the data carry none, or to replace it)")
    graph.add_argument("--rad_cutoff", type=float,
                       help="connect cells within this distance (obsm['spatial'] units; default: the dataset's paper "
                            "radius, else 1.1 x the median distance to the 6th nearest cell)")
    graph.add_argument("--k_cutoff", type=int, help="connect each cell to its K nearest cells instead of a radius")


def _name(args) -> str:
    return args.dataset or Path(args.data).stem


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, require exactly one data source, and resolve the default checkpoint folder."""
    args = parser.parse_args(argv)
    if (args.dataset is None) == (args.data is None):
        parser.error("give exactly one of --dataset NAME or --data PATH")
    args.checkpoint_dir = Path(args.save_path or f"checkpoint/{_name(args)}")
    return args


def _load(args):
    return load_dataset(dataset=args.dataset, data=args.data, root=args.root, rad_cutoff=args.rad_cutoff,
                        k_cutoff=args.k_cutoff, strict=args.strict)


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train the GIST hybrid graph-transformer autoencoder. Recipe 'gist' (default): an ensemble "
        "of 5 models (repeats R..R+4, seeds S..S+4) of 150 epochs each on 50 principal components of the "
        "expression (hidden 128, latent 30; 2 message-passing layers for cell types, 1 for domains), image "
        "features standardised and reconstructed by the fused branch. Recipe 'paper': the original (one model, 1000 epochs). Both: Adam, "
        "lr 1e-3, weight decay 1e-4, gradient clipping 5, one sample per mini-batch.",
    )
    _add_data_args(parser)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE,
                        help="'gist' (default; see docs/reproduction.md for each difference) or 'paper' (the original's)")
    parser.add_argument("--task", choices=TASKS,
                        help="what the embedding is for, which sets the recipe's task settings: cell_types (leiden; "
                             "gist: 2 message-passing layers) or domains (mclust; gist: 1). Default: the dataset's "
                             "clustering (domains for the Visium paper datasets), else cell_types")
    parser.add_argument("--epochs", type=int,
                        help=f"training epochs per model (default: gist {RECIPES['gist']['epochs']}; paper 1000, "
                             f"demo {PAPER_RECIPE_EPOCHS['demo']})")
    parser.add_argument("--ensemble", type=int, help="models to train (default: gist 5, paper 1)")
    parser.add_argument("--n_top_genes", type=int,
                        help="train on the N most variable genes (seurat_v3 on raw counts, all samples pooled); default: "
                             "var['highly_variable'] when the data have it, else all genes up to 3,000, else the 3,000 "
                             "most variable")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: 0.001)")
    parser.add_argument("--weight_decay", type=float, help="Adam weight decay (default: 0.0001)")
    parser.add_argument("--gradient_clipping", type=float, help="max gradient norm (default: 5)")
    parser.add_argument("--hidden", type=int, nargs=2, metavar=("HIDDEN", "LATENT"),
                        help="hidden and latent widths (default: the recipe's; gist 128 30, paper 512 30)")
    parser.add_argument("--hops", type=int, choices=range(5), metavar="{0..4}",
                        help="graph layers that pass messages from the input, the rest per-cell (default: the "
                             "recipe's; gist: 2 for --task cell_types, 1 for domains; 4 = every layer, the original's)")
    parser.add_argument("--n_pcs", type=int, metavar="N",
                        help="feed the model N principal components of the expression instead of the genes; the "
                             "reconstruction is mapped back to genes through the loadings (default: the recipe's; gist 50, at most the "
                             "gene count; 0 = genes, the original's)")
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
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


def train_main(argv: Sequence[str] | None = None) -> int:
    """``train.py``: train and write checkpoints."""
    parser = train_parser()
    args = _parse(parser, argv)
    if args.test_only:
        return test_main(_forward_to_test(args))
    from gist import pp, tl
    from gist.io.samples import join_samples

    epochs = args.epochs
    if epochs is None and args.recipe == "paper":
        epochs = PAPER_RECIPE_EPOCHS.get(args.dataset)
    spec = DATASETS.get(args.dataset)
    task = args.task or task_of(spec.cluster if spec and spec.cluster else "leiden")
    overrides = {"lr": args.lr, "weight_decay": args.weight_decay, "gradient_clipping": args.gradient_clipping,
                 "hidden": tuple(args.hidden) if args.hidden else None, "save_every": args.save_every,
                 "use_img_loss": None if args.use_img_loss is None else bool(args.use_img_loss),
                 "standardize_img": None if args.standardize_img is None else bool(args.standardize_img),
                 "hops": args.hops, "n_pcs": args.n_pcs,
                 "repeat": args.repeat, "precision": args.precision, "patience": args.patience,
                 "min_delta": args.min_delta if args.patience else None, "keep_state": args.keep_state or None}
    if args.max_cells_per_batch is not None:
        overrides["max_cells_per_batch"] = args.max_cells_per_batch or None
    try:
        adatas, _, graph = _load(args)
        adata = pp.select_genes(join_samples(adatas), args.n_top_genes)
        record = {"argv": list(sys.argv[1:] if argv is None else argv), "dataset": args.dataset, "data": args.data,
                  "graph": graph, "gene_rule": adata.uns["gist"]["genes"]["rule"]}
        if distributed.is_main():
            print(_expected_size(adata, args.recipe, task, epochs, args.ensemble, overrides, args.checkpoint_dir))
        models = tl.fit(adata, args.recipe, epochs=epochs, ensemble=args.ensemble, seed=args.seed, task=task,
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


def _expected_size(adata, recipe: str, task: str, epochs: int | None, ensemble: int | None, overrides: dict,
                   folder: Path) -> str:
    """The line train.py prints before training: the checkpoint bytes the run will leave."""
    from gist.keys import IMG_KEY
    from gist.tl.training import expected_checkpoint_bytes, recipe_config

    config = recipe_config(recipe, task, epochs=epochs, ensemble=ensemble, **{k: v for k, v in overrides.items() if v is not None})
    img_dim = adata.obsm[IMG_KEY].shape[1] if IMG_KEY in adata.obsm else 0
    size = expected_checkpoint_bytes(adata.n_vars, img_dim, config)
    return (f"checkpoints: about {human_bytes(size['kept'])} will stay in {folder}/ ({size['files']} weight file(s)"
            f"{' and the resume states' if config.keep_state else ''}); while a member trains its resume state adds "
            f"{human_bytes(size['state'])}")


def _forward_to_test(args) -> list[str]:
    out = ["--seed", str(args.seed), "--repeat", str(args.repeat), "--device", args.device, "--root", args.root]
    out += ["--dataset", args.dataset] if args.dataset else ["--data", args.data]
    if args.save_path:
        out += ["--save_path", args.save_path]
    return out


def test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="test.py",
        description="Embed every cell with a trained GIST checkpoint and write RESULT_PATH/gist.h5ad "
        "(obsm['pred'] fused latent, obsm['gene_pred'], obsm['img_pred'], layers['recon'] denoised expression).",
    )
    _add_data_args(parser)
    parser.add_argument("--result_path", help="output folder (default: results/<dataset>/)")
    parser.add_argument("--pretrain",
                        help="one checkpoint file to use, e.g. an original GIST state dict (default: SAVE_PATH/"
                             "final_<repeat>.pth and, for an ensemble, every member its .json lists)")
    parser.add_argument("--select", choices=["final", "oracle"], default="final",
                        help="model selection: 'final' = the final checkpoint (honest default); 'oracle' = the "
                             "original's protocol, the checkpoint (epochs >= 200 when there are any) whose leiden "
                             "clusters best match the labels - it uses the test labels and is recorded as such")
    parser.add_argument("--label_key", help="obs column of the labels to score against (default: the dataset's, "
                                             "e.g. merge_cell_type for nanostring; none for --data)")
    parser.add_argument("--ncluster", type=int, help="number of clusters (default: the dataset's, else the number of label classes)")
    parser.add_argument("--cluster", choices=["leiden", "mclust"],
                        help="leiden with a resolution search to --ncluster, or mclust (Gaussian mixture, shared "
                             "covariance = mclust EEE) (default: the dataset's: leiden for nanostring/demo, mclust for Visium)")
    parser.add_argument("--smooth", choices=["auto", "on", "off"], default="auto",
                        help="cluster the latent averaged over each cell and its graph neighbours (auto: on for mclust "
                             "domain detection with a gist-recipe checkpoint, off for leiden and for paper checkpoints)")
    parser.add_argument("--cluster_rep", choices=["auto", "latent"], default="auto",
                        help="what is clustered: auto = the fused latent for leiden and paper checkpoints, and for "
                             "mclust domains with a gist checkpoint the 20 principal components of the denoised "
                             "expression (obsm['X_gist_denoised_pca']; measured in BENCHMARKS.md: mean ARI 0.260 vs 0.254 "
                             "for the latent over six domain sets); latent = always the fused latent")
    parser.add_argument("--denoised", choices=["auto", "on", "off"], default="auto",
                        help="write the denoised expression (layers['recon'], a dense cells x genes float32 matrix); "
                             f"auto: on unless it would exceed {DENOISED_AUTO_MAX_GIB:g} GiB (12 GB at 1M cells x 3,000 "
                             "genes), off: the fused latent alone (no gene/image latents, no layer)")
    parser.add_argument("--no_cluster", action="store_true", help="only write the embedding; skip clustering and scores")
    parser.add_argument("--baseline", action="store_true",
                        help="also score expression-only clustering (PCA 30 of the same log-normalised cells, same "
                             "method and cluster count) and record it in metrics.json")
    return parser


def test_main(argv: Sequence[str] | None = None) -> int:
    """``test.py``: inference with a checkpoint (or an ensemble's); writes ``gist.h5ad``."""
    from gist.pp.genes import restrict_genes, select_genes
    from gist.tl.inference import denoised_bytes, infer, load_checkpoint, write_result
    from gist.device import resolve_device

    parser = test_parser()
    args = _parse(parser, argv)
    save_path = args.checkpoint_dir
    result_path = Path(args.result_path or f"results/{_name(args)}")
    try:
        device = resolve_device(args.device)
        adatas, spec, _ = _load(args)
        checkpoint = Path(args.pretrain or save_path / f"final_{args.repeat}.pth")
        info = {"select": args.select, "dataset": args.dataset, "data": args.data}
        record = _read_record(checkpoint)
        genes = (record or {}).get("config", {}).get("extra", {}).get("genes")
        if genes:
            adatas = restrict_genes(adatas, genes, f"checkpoint {checkpoint}")
        else:  # an original checkpoint: the same rule as training
            adatas, _ = select_genes(adatas)
        if args.select == "oracle":
            checkpoint, info["oracle"] = _oracle(args, spec, adatas, save_path, device)
            record = _read_record(checkpoint)
        members = [checkpoint] if args.pretrain or args.select == "oracle" else _ensemble_members(checkpoint, record)
        models = [load_checkpoint(path, *feature_dims(adatas[0])) for path in members]
        recipe = (record or {}).get("recipe", "paper")
        info |= {"checkpoint": str(checkpoint), "members": [str(p) for p in members], "recipe": recipe, "train": record}
        denoise = wants_denoised(args.denoised, denoised_bytes(adatas))
        result = infer(adatas, models, device, info=h5ad_safe(info), denoise=denoise)
        metrics = None
        if not args.no_cluster:
            metrics = _cluster_and_score(args, spec, result, checkpoint, result_path, recipe)
        out = write_result(result, result_path / "gist.h5ad")
    except GistInputError as err:
        parser.exit(2, f"test.py: error: {err}\n")
    if metrics is not None and "ari" in metrics:
        print(f"{metrics['method']} clusters: {metrics['n_clusters']}, ARI {metrics['ari']:.3f}, NMI {metrics['nmi']:.3f} "
              f"(selection: {args.select}) -> {result_path / 'metrics.json'}")
    branch = "image + gene branches" if models[0].has_image else "gene branch alone (no image features)"
    ensemble = f"ensemble of {len(models)}" if len(models) > 1 else f"checkpoint {checkpoint.name}"
    print(f"wrote {out} ({result.n_obs} cells, latent {result.obsm['pred'].shape[1]}-d, {branch}, "
          f"selection: {args.select}, {ensemble})")
    return 0


def wants_denoised(choice: str, nbytes: int, max_gib: float = DENOISED_AUTO_MAX_GIB) -> bool:
    """Whether test.py writes the denoised layer: ``on``/``off`` as asked; ``auto`` when its
    ``nbytes`` fit ``max_gib`` (else it says why it is left out and how to force it)."""
    if choice != "auto":
        return choice == "on"
    if nbytes <= max_gib * 2**30:
        return True
    print(f"denoised expression left out: a dense cells x genes layer would take {nbytes / 2**30:.1f} GiB "
          f"(more than {max_gib:g} GiB); pass --denoised on to write it anyway")
    return False


def _read_record(checkpoint: Path) -> dict | None:
    """The JSON record written beside a checkpoint, or ``None`` (the original's checkpoints have none)."""
    path = checkpoint.with_suffix(".json")
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise GistInputError(f"{path} is not valid JSON ({err})") from None


def _ensemble_members(checkpoint: Path, record: dict | None) -> list[Path]:
    """The member checkpoints of the ensemble ``checkpoint`` belongs to (itself alone without a record)."""
    members = (record or {}).get("ensemble", {}).get("members") or []
    if len(members) <= 1:
        return [checkpoint]
    paths = [checkpoint.with_name(f"final_{r}.pth") for r in members]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise GistInputError(
            f"{checkpoint.with_suffix('.json')} names an ensemble of {len(members)} models but {', '.join(missing)} "
            f"is missing in {checkpoint.parent} (finish training with train.py --resume, or pass --pretrain FILE "
            "to use one model)"
        )
    return paths


def _cluster_and_score(args, spec, result, checkpoint: Path, result_path: Path, recipe: str = "paper") -> dict:
    from gist.tl.evaluate import evaluate, write_metrics

    label_key = args.label_key or spec.label_key
    if label_key and label_key not in result.obs:
        if args.label_key:
            raise GistInputError(f"--label_key {label_key!r} is not a column of obs (have {list(result.obs.columns)})")
        label_key = None  # the dataset default does not apply to this data
    ncluster = args.ncluster or (spec.ncluster if label_key else None)
    if label_key is None and ncluster is None:
        print("no labels and no --ncluster: skipping clustering (pass --label_key or --ncluster)")
        return {}
    method = args.cluster or spec.cluster or "leiden"
    smooth = args.smooth == "on" or (args.smooth == "auto" and method == "mclust" and recipe != "paper")
    use_rep = LATENT_KEY if args.cluster_rep == "latent" else default_rep(result, method, recipe, seed=args.seed)
    metrics, table = evaluate(result, label_key, ncluster, method, seed=args.seed, use_rep=use_rep, smooth=smooth)
    metrics |= {"checkpoint": str(checkpoint), "selection": args.select}
    if args.baseline and label_key:
        from gist.tl.evaluate import expression_baseline

        base = expression_baseline(result, label_key, metrics["ncluster"], method, seed=args.seed, smooth=smooth)
        metrics["baseline_expression"] = {k: base[k] for k in ("ari", "nmi", "n_clusters", "method", "resolution")}
        print(f"expression-only {method}: ARI {base['ari']:.3f}, NMI {base['nmi']:.3f}")
    if args.select == "oracle":
        metrics["note"] = "oracle: the checkpoint was chosen with the same labels these scores use"
    write_metrics(metrics, table, result_path)
    result.uns["gist_metrics"] = h5ad_safe(metrics)
    return metrics


def _oracle(args, spec, adatas, save_path: Path, device) -> tuple[Path, dict]:
    from gist.tl.inference import oracle_select
    from gist.tl.training import epoch_checkpoints

    label_key = args.label_key or spec.label_key
    ncluster = args.ncluster or spec.ncluster
    if not label_key or not ncluster:
        raise GistInputError("--select oracle needs --label_key and --ncluster for this data")
    method = args.cluster or spec.cluster or "leiden"
    epoch, path, scores = oracle_select(adatas, epoch_checkpoints(save_path, args.repeat), label_key, int(ncluster),
                                        device, seed=args.seed, method=method)
    print(f"oracle selection (uses the labels in obs[{label_key!r}]): epoch {epoch}, ARI {scores[epoch]:.3f}")
    return path, {"label_key": label_key, "ncluster": int(ncluster), "epoch": epoch,
                  "ari_by_epoch": {str(e): s for e, s in scores.items()},
                  "note": "chosen with the ground-truth labels: an oracle score, not an honest estimate"}



def extract_parser() -> argparse.ArgumentParser:
    from gist.pp.extractors import POOLS, extractor_names

    parser = argparse.ArgumentParser(
        prog="extract_features.py",
        description="Crop an image patch around every cell, embed it (foundation model or the built-in "
        "'stats' descriptor), build the spatial graph, and write one prepared .h5ad per sample "
        "(obsm['imgs'], obsp['spatial_connectivities']) plus manifest.json for train.py/test.py.",
    )
    src = parser.add_argument_group("input (give --dataset, --data or --from-pickle)")
    src.add_argument("--dataset", choices=sorted(DATASETS),
                     help="demo (generated), nanostring (CosMx flat files under ROOT/nanostring or ROOT), "
                          "breast/breast2/colorectal (a Visium outs/ folder under ROOT/<dataset>)")
    src.add_argument("--root", default="dataset", help="folder holding the datasets (default: %(default)s)")
    src.add_argument("--data", metavar="PATH",
                     help="any .h5ad with raw counts and obsm['spatial'], a 10x Xenium output folder "
                          "(experiment.xenium), a Visium HD outs/ folder (binned_outputs/) or a SpatialData .zarr store")
    src.add_argument("--image", metavar="PATH",
                     help="tissue image for --data (.h5ad), or the full-resolution image of a Visium / Visium HD dataset")
    src.add_argument("--bin_size", type=int, default=8,
                     help="Visium HD: bin side in microns, binned_outputs/square_<bin>um/ (default: %(default)s)")
    src.add_argument("--table_key", help="SpatialData: the table of counts (default: 'table', or the only one)")
    src.add_argument("--image_key",
                     help="SpatialData: the image element patches are cut from (default: the only one); Xenium: "
                          "morphology_focus (default), morphology_mip or an aligned he_image/if_image")
    src.add_argument("--library_key", help="obs column splitting --data into samples (default: one sample)")
    src.add_argument("--labels", metavar="CSV", help="Visium: spot labels keyed by barcode")
    src.add_argument("--label_key", default="label", help="Visium: label column of --labels (default: %(default)s)")
    src.add_argument("--annotation", metavar="CSV",
                     help="CosMx: cell annotation joined on (fov, cell_ID) (default: ROOT/nanostring/matched_annotation_all.csv if present)")
    src.add_argument("--from-pickle", dest="from_pickle", metavar="PATH",
                     help="import the original's pickled list of AnnData (adatas_list.pkl); unpickling runs code from the file")
    parser.add_argument("--out", help="output folder (default: ROOT/<dataset>/features)")
    parser.add_argument("--extractor", type=_extractor_name, default="stats", metavar="NAME",
                        help=f"{', '.join(extractor_names())} or timm:<architecture>: stats (default; no weights), "
                             "he (H&E stain separation: per-stain statistics and nuclear density; RGB H&E only, no weights), "
                             "the presets uni, virchow2, ctranspath, any timm model by name (e.g. "
                             "timm:vit_giant_patch14_reg4_dinov2 for H-optimus-0; all need --weights), or none "
                             "(no image: graph only, the model then trains its gene branch alone)")
    parser.add_argument("--weights", metavar="PATH", help="local weights file of the foundation model (never downloaded)")
    parser.add_argument("--extractor_kwargs", type=_json_object, metavar="JSON",
                        help='timm:<architecture>: keyword arguments of timm.create_model, e.g. \'{"init_values": 1e-5, '
                             '"reg_tokens": 4}\' (default: none)')
    parser.add_argument("--pool", choices=POOLS,
                        help="timm:<architecture>: one vector per patch from the class token, the mean of the patch "
                             "tokens, or both side by side (default: the model's own pooling)")
    parser.add_argument("--channels", type=int, nargs="+", metavar="C",
                        help="image channels drawn as red, green, blue (1-3 indices; one gives grayscale), e.g. 0 for "
                             "DAPI alone (default: an RGB image as it is; a multi-channel fluorescence image such as "
                             "Xenium's morphology: its first three channels, DAPI first, each scaled by its own range)")
    parser.add_argument("--patch_size", type=int,
                        help="window side in px before resizing to 224 (default: 240 as the paper; Visium: the spot diameter)")
    parser.add_argument("--pad", choices=["reflect", "constant"], default="reflect",
                        help="how windows leaving the image are filled (default: %(default)s)")
    parser.add_argument("--flip_y", action="store_true", help="image rows run against the y coordinate (row = height - y)")
    parser.add_argument("--batch_size", type=int, default=32, help="patches per forward pass (default: %(default)s)")
    parser.add_argument("--num_workers", type=int, default=1, help="DataLoader worker processes cropping patches (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: %(default)s)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"], default="fp32",
                        help="foundation-model arithmetic (default: fp32): fp16 autocast on CUDA; int8 = dynamic "
                             "quantisation, ~2x faster on CPU; bf16 only on CPUs with bf16 units")
    parser.add_argument("--rad_cutoff", type=float,
                        help="graph radius (default: the dataset's: 80 nanostring, 300 breast, 20 colorectal; for --data "
                             "and --from-pickle 1.1 x the median distance to the 6th nearest cell)")
    parser.add_argument("--k_cutoff", type=int, help="use a KNN graph with this many neighbours instead of a radius")
    parser.add_argument("--n_top_genes", type=int,
                        help="mark the N most variable genes (seurat_v3 on raw counts, all samples pooled) in "
                             "var['highly_variable'], which train.py then uses (default: mark none; train.py applies "
                             "its own rule)")
    parser.add_argument("--resume", action="store_true", help="skip samples already written with the same settings")
    parser.add_argument("--strict", action="store_true",
                        help="refuse input whose counts are not whole numbers (default: a warning that raw counts are expected)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bars")
    return parser


def _extractor_name(text: str) -> str:
    """argparse type of --extractor: a known name or timm:<architecture>."""
    from gist.pp.extractors import check_extractor_name

    try:
        return check_extractor_name(text)
    except GistInputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _json_object(text: str) -> dict:
    """argparse type of --extractor_kwargs: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"init_values\": 1e-5}}', got {text!r}")
    return value


def _extract_inputs(args) -> list:
    from gist import io
    from gist.demo import make_demo
    from gist.pp.extract import read_pickled_adatas

    if args.from_pickle:
        adatas = read_pickled_adatas(args.from_pickle)
        for i, a in enumerate(adatas):
            if LIBRARY_KEY not in a.obs:
                a.obs[LIBRARY_KEY] = f"sample{i}"
        return adatas
    if args.data:
        from gist.io.platforms import read_samples

        return read_samples(args.data, image_path=args.image, library_key=args.library_key, bin_size=args.bin_size,
                            table_key=args.table_key, image_key=args.image_key)
    if args.dataset == "demo":
        return make_demo(n_fovs=4, seed=0)
    folder = Path(args.root) / args.dataset
    if args.dataset == "nanostring":
        folder = folder if folder.is_dir() else Path(args.root)
        annotation = args.annotation or (folder / "matched_annotation_all.csv")
        return io.read_cosmx_fovs(folder, annotation_file=annotation if Path(annotation).is_file() else None)
    return [io.read_visium(folder, fullres_image=args.image, labels=args.labels, label_key=args.label_key)]


def extract_main(argv: Sequence[str] | None = None) -> int:
    """``extract_features.py``: per-cell image features and graphs -> prepared per-sample files."""
    from gist.pp.extract import ExtractConfig, default_patch_size, extract_samples

    parser = extract_parser()
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.dataset, args.data, args.from_pickle)) != 1:
        parser.error("give exactly one of --dataset NAME, --data PATH or --from-pickle PATH")
    name = args.dataset or Path(args.data or args.from_pickle).stem
    spec = dataset_spec(args.dataset)
    out = Path(args.out or Path(args.root) / name / "features")
    try:
        from gist.io._validate import check_samples

        adatas = check_samples(_extract_inputs(args), args.data or args.from_pickle or f"dataset {args.dataset!r}",
                               strict=args.strict, verbose=not args.no_progress)
        patch_size = args.patch_size or default_patch_size(adatas)
        config = ExtractConfig(
            extractor=args.extractor, weights=args.weights, patch_size=patch_size, pad=args.pad, flip_y=args.flip_y,
            batch_size=args.batch_size, num_workers=args.num_workers, device=args.device, precision=args.precision,
            rad_cutoff=None if args.k_cutoff else (args.rad_cutoff or spec.rad_cutoff), k_cutoff=args.k_cutoff,
            n_top_genes=args.n_top_genes, channels=tuple(args.channels) if args.channels else None,
            extractor_kwargs=args.extractor_kwargs, pool=args.pool,
        )
        manifest = extract_samples(adatas, out, config, resume=args.resume, progress=not args.no_progress)
    except GistInputError as err:
        parser.exit(2, f"extract_features.py: error: {err}\n")
    done = manifest["samples"]
    cells = sum(s["cells"] for s in done.values())
    seconds = sum(s["seconds"] for s in done.values())
    rate = f"{cells / seconds:.0f} cells/s" if seconds > 0 else "no image features"
    print(f"wrote {len(done)} sample(s), {cells} cells, extractor {args.extractor} ({rate}) to {out}/")
    return 0
