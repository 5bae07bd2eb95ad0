"""``test.py``: embed cells with a checkpoint (or an ensemble's), cluster, score, write ``gist.h5ad``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gist.cli._args import add_data_args, load, parse, run_name
from gist.datasets import scoring_defaults
from gist.device import resolve_device
from gist.errors import GistInputError
from gist.keys import IMG_KEY
from gist.pp.genes import apply_gene_rule, restrict_genes
from gist.tl._inputs import feature_dims
from gist.tl.checkpoints import ensemble_members, epoch_checkpoints, final_file, load_checkpoint, read_record
from gist.tl.clustering import REP_CHOICES, default_rep
from gist.tl.evaluate import evaluate, expression_baseline, write_metrics
from gist.tl.inference import denoised_bytes, infer, oracle_select, write_result
from gist.tl.mixture import MIXTURE_RESTARTS
from gist.tl.recipes import DENOISERS, get_recipe, smooths
from gist.utils import h5ad_safe

#: test.py --denoised auto leaves the dense denoised layer out above this size (GiB).
DENOISED_AUTO_MAX_GIB = 4.0


def test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="test.py",
        description="Embed every cell with a trained GIST checkpoint and write RESULT_PATH/gist.h5ad "
        "(obsm['pred'] fused latent, obsm['gene_pred'], obsm['img_pred'], layers['recon'] denoised expression).",
    )
    add_data_args(parser)
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
                             f"covariance = mclust EEE, best-likelihood fit of {MIXTURE_RESTARTS} EM starts) "
                             "(default: the dataset's: leiden for nanostring/demo, mclust for Visium)")
    parser.add_argument("--smooth", choices=["auto", "on", "off"], default="auto",
                        help="cluster the latent averaged over each cell and its graph neighbours (auto: on for mclust "
                             "domain detection with a gist-recipe checkpoint, off for leiden and for paper checkpoints)")
    parser.add_argument("--cluster_rep", choices=REP_CHOICES, default="auto",
                        help="what is clustered: latent = the fused latent; denoised = the 20 principal components of "
                             "the denoised expression (obsm['X_gist_denoised_pca'], as GraphST clusters its "
                             "reconstruction); auto = what the checkpoint's recipe clusters: the latent for both "
                             "recipes (BENCHMARKS.md, six domain sets: latent 0.270 vs denoised 0.262, 5 and 3 seeds)")
    parser.add_argument("--denoised", choices=["auto", "on", "off"], default="auto",
                        help="write the denoised expression (layers['recon'], a dense cells x genes float32 matrix); "
                             f"auto: on unless it would exceed {DENOISED_AUTO_MAX_GIB:g} GiB (12 GB at 1M cells x 3,000 "
                             "genes), off: the fused latent alone (no gene/image latents, no layer)")
    parser.add_argument("--denoiser", choices=["auto", *DENOISERS], default="auto",
                        help="what layers['gist_denoised'] holds: reconstruction = the model's fused reconstruction "
                             "(the original's); latent_knn = each cell's expression averaged over its nearest cells in "
                             "the fused latent (their count chosen by how well it predicts hidden entries); "
                             "latent_diffusion = the expression diffused 3 steps over the fused latent's 15-NN graph "
                             "(with either, the model's reconstruction stays in layers['recon']); "
                             "auto = the checkpoint's recipe's choice (BENCHMARKS.md, denoising)")
    parser.add_argument("--no_cluster", action="store_true", help="only write the embedding; skip clustering and scores")
    parser.add_argument("--baseline", action="store_true",
                        help="also score expression-only clustering (PCA 30 of the same log-normalised cells, same "
                             "method and cluster count) and record it in metrics.json")
    return parser


def test_main(argv: Sequence[str] | None = None) -> int:
    """``test.py``: inference with a checkpoint (or an ensemble's); writes ``gist.h5ad``."""
    parser = test_parser()
    args = parse(parser, argv)
    save_path = args.checkpoint_dir
    result_path = Path(args.result_path or f"results/{run_name(args)}")
    try:
        device = resolve_device(args.device)
        adata, spec, _ = load(args)
        checkpoint = Path(args.pretrain or final_file(save_path, args.repeat))
        info = {"select": args.select, "dataset": args.dataset, "data": args.data}
        record = read_record(checkpoint)
        genes = (record or {}).get("config", {}).get("extra", {}).get("genes")
        if genes:
            (adata,) = restrict_genes([adata], genes, f"checkpoint {checkpoint}")
        else:  # an original checkpoint: the same rule as training
            (adata,), _ = apply_gene_rule([adata])
        if args.select == "oracle":
            checkpoint, info["oracle"] = _oracle(args, spec, adata, save_path, device)
            record = read_record(checkpoint)
        members = [checkpoint] if args.pretrain or args.select == "oracle" else ensemble_members(checkpoint, record)
        models = [load_checkpoint(path, *feature_dims(adata)) for path in members]
        recipe = (record or {}).get("recipe", "paper")
        info |= {"checkpoint": str(checkpoint), "members": [str(p) for p in members], "recipe": recipe, "train": record}
        denoise = wants_denoised(args.denoised, denoised_bytes(adata))
        denoiser = get_recipe(recipe).denoiser if args.denoiser == "auto" else args.denoiser
        result = infer(adata, models, device, info=h5ad_safe(info), denoise=denoise, denoiser=denoiser)
        metrics = None
        if not args.no_cluster:
            metrics = _cluster_and_score(args, spec, result, checkpoint, result_path, recipe)
        out = write_result(result, result_path / "gist.h5ad")
    except GistInputError as err:
        parser.exit(2, f"test.py: error: {err}\n")
    if metrics is not None and "ari" in metrics:
        print(f"{metrics['method']} clusters: {metrics['n_clusters']}, ARI {metrics['ari']:.3f}, NMI {metrics['nmi']:.3f} "
              f"(selection: {args.select}) -> {result_path / 'metrics.json'}")
    branch = "image + gene branches" if models[0].has_image else \
        "gene branch alone (" + ("trained without the image" if IMG_KEY in adata.obsm else "no image features") + ")"
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


def _cluster_and_score(args, spec, result, checkpoint: Path, result_path: Path, recipe: str = "paper") -> dict:

    label_key, ncluster, method = scoring_defaults(spec, result.obs.columns, args.label_key, args.ncluster, args.cluster)
    if label_key is None and ncluster is None:
        print("no labels and no --ncluster: skipping clustering (pass --label_key or --ncluster)")
        return {}
    smooth = args.smooth == "on" or (args.smooth == "auto" and smooths(recipe, method))
    use_rep = default_rep(result, method, recipe, seed=args.seed, choice=args.cluster_rep)
    metrics, table = evaluate(result, label_key, ncluster, method, seed=args.seed, use_rep=use_rep, smooth=smooth)
    metrics |= {"checkpoint": str(checkpoint), "selection": args.select}
    if args.baseline and label_key:
        base = expression_baseline(result, label_key, metrics["ncluster"], method, seed=args.seed, smooth=smooth)
        metrics["baseline_expression"] = {k: base[k] for k in ("ari", "nmi", "n_clusters", "method", "resolution")}
        print(f"expression-only {method}: ARI {base['ari']:.3f}, NMI {base['nmi']:.3f}")
    if args.select == "oracle":
        metrics["note"] = "oracle: the checkpoint was chosen with the same labels these scores use"
    write_metrics(metrics, table, result_path)
    result.uns["gist_metrics"] = h5ad_safe(metrics)
    return metrics


def _oracle(args, spec, adata, save_path: Path, device) -> tuple[Path, dict]:
    label_key, ncluster, method = scoring_defaults(spec, adata.obs.columns, args.label_key, args.ncluster, args.cluster)
    if not label_key or not ncluster:
        raise GistInputError("--select oracle needs --label_key and --ncluster for this data")
    epoch, path, scores = oracle_select(adata, epoch_checkpoints(save_path, args.repeat), label_key, int(ncluster),
                                        device, seed=args.seed, method=method)
    print(f"oracle selection (uses the labels in obs[{label_key!r}]): epoch {epoch}, ARI {scores[epoch]:.3f}")
    return path, {"label_key": label_key, "ncluster": int(ncluster), "epoch": epoch,
                  "ari_by_epoch": {str(e): s for e, s in scores.items()},
                  "note": "chosen with the ground-truth labels: an oracle score, not an honest estimate"}
