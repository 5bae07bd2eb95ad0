"""Real-data benchmark: GIST (default and paper recipes) beside expression-only, its neighbour
average, image-only and GraphST.

Runs every applicable method on each labelled dataset (the demo and those in ../shared/data, or
one passed with --data) for several seeds, each run in a fresh process so that its peak memory is
its own; clusters every representation with the same routine and target count; scores ARI / NMI.
Then the denoising check (one per seed): 10% of each cell's non-zero counts held out, each denoiser
(GIST and the tools users already run: MAGIC, scVI, a spatial neighbour mean) given the rest.
Records go to docs/benchmarks.json (one per dataset x method x seed) and the tables into the
marked block of BENCHMARKS.md.

    python bench/reproduce.py                                 # everything, 5 seeds
    python bench/reproduce.py --datasets demo --seeds 0 --methods expression gist
    python bench/reproduce.py --data my.h5ad --label_key domain --cluster mclust \\
        [--image he.tif --image_scalef 0.25] [--extractors uni --weights uni.bin]
    python bench/reproduce.py --resume                        # skip runs already in the JSON
    python bench/reproduce.py --rescore reps/                 # re-cluster kept runs (--keep_reps), no training
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.benchmark import (  # noqa: E402
    DENOISE_SKIPPED,
    BenchDataset,
    denoise_settings,
    load_samples,
    method_spec,
    methods_for,
    recorded_epochs,
    rescore_clustering,
    run_task,
    shared_datasets,
    task_for,
)
from bench.benchmark_report import read_records, tables, update_markdown, write_records  # noqa: E402
from gist.errors import GistInputError  # noqa: E402


def denoise_method(name: str) -> str:
    """``--denoise_methods`` entry: a recipe of ``bench.benchmark.DENOISE_METHODS`` or ``gist+<candidate>[_noimg]``
    (checked by :func:`bench.benchmark.denoise_settings`)."""
    try:
        denoise_settings(name)
    except GistInputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_root", default=str(ROOT.parent / "shared" / "data"),
                   help="folder with the shared real datasets (cosmx_lung5_subset/, her2st_spots/, her2st_A1_he/, dlpfc_151510/, bench/)")
    p.add_argument("--datasets", nargs="+", default=None,
                   help="names to run (demo; domains: dlpfc_151510, dlpfc_151673, dlpfc_151674, her2st_A1, her2st_B1, her2st_C1, "
                        "her2st_D1, her2st_G2, her2st_H1, mouse_ob, starmap_BZ5, starmap_BZ9, baristaseq_1, baristaseq_2; cell types: "
                        "cosmx_lung5, starmap_BZ5_types, starmap_BZ9_types, cosmx_breast); default: all present")
    p.add_argument("--data", default=None, help="a labelled spatial .h5ad of your own (raw counts in X, obsm['spatial'])")
    p.add_argument("--label_key", default=None, help="with --data: the obs column of the labels")
    p.add_argument("--image", default=None, help="with --data: the tissue image the coordinates refer to")
    p.add_argument("--image_scalef", type=float, default=1.0, help="with --image: factor from obsm['spatial'] to image pixels")
    p.add_argument("--library_key", default=None, help="with --data: obs column that splits samples (FOVs, sections)")
    p.add_argument("--cluster", choices=["leiden", "mclust"], default="leiden", help="with --data: clustering method")
    p.add_argument("--ncluster", type=int, default=None, help="with --data: target cluster count (default: label classes)")
    p.add_argument("--rad_cutoff", type=float, default=None,
                   help="with --data: spatial graph radius in obsm['spatial'] units (default: 1.1 x the median "
                        "distance to the 6th nearest cell)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="subset of: scanpy scanpy_avg expression expression_smoothed image_<extractor> gist gist_noimg gist_<extractor> "
                        "gist_paper graphst graphst_refine banksy cellcharter expression_hmrf (default: all that apply); candidates for the "
                        "default, gist+<name> and gist+<name>_noimg (bench.benchmark.CANDIDATES), and gist_denoised (PCA of the denoised "
                        "expression), run only when named")
    p.add_argument("--extractors", nargs="+", default=["stats"],
                   help="image feature extractors for the image_* and gist_* methods (uni/virchow2/ctranspath need --weights)")
    p.add_argument("--weights", default=None, help="local weight file of the foundation-model extractor")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="seeds (training, PCA and clustering)")
    p.add_argument("--paper_epochs", type=int, default=300,
                   help="training epochs of gist_paper (the paper trains 1,000 on a GPU); the gist recipe trains its own")
    p.add_argument("--gist_epochs", type=int, default=None,
                   help="override the gist recipe's epochs per model (quick checks only; recorded in each record)")
    p.add_argument("--gist_ensemble", type=int, default=None,
                   help="override the gist recipe's ensemble size (quick checks only; recorded in each record)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto, for GIST and GraphST")
    p.add_argument("--no_denoise", action="store_true", help="skip the denoising check")
    p.add_argument("--denoise_methods", nargs="+", type=denoise_method, default=["raw", "neighbour_mean", "magic", "gist"],
                   metavar="METHOD",
                   help="denoisers of the check: the baselines raw (the masked input), neighbour_mean (spatial graph), "
                        "magic (magic-impute, defaults), scvi (scvi-tools normalised expression, default model); GIST recipes "
                        "gist (the default), gist_paper (the paper's, --paper_epochs) or gist+<candidate>[_noimg] (as in "
                        "--methods), each also scored as <method>_knn<k> (its latent-kNN mean, bench.benchmark.DENOISE_KNN)")
    p.add_argument("--no_cluster", action="store_true", help="skip the clustering comparison (denoising only)")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.json"), help="records file (JSON)")
    p.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"),
                   help="Markdown file whose marked block receives the tables ('' to skip)")
    p.add_argument("--keep_reps", default=None, metavar="DIR",
                   help="also write each clustering run's representation, clusters and labels to DIR/<dataset>_<method>_s<seed>.npz "
                        "(to study the clustering step again without retraining), and each GIST denoising run's fused "
                        "latent of the masked data to DIR/<dataset>_<method>_s<seed>_masked_latent.npz")
    p.add_argument("--in_process", action="store_true",
                   help="run every task in this process instead of a fresh one each (saves ~8 s of imports per run, "
                        "for many cheap baseline runs; peak_mb is then this process's peak so far)")
    p.add_argument("--resume", action="store_true", help="keep the records in --out and skip runs already there")
    p.add_argument("--rescore", default=None, metavar="DIR",
                   help="train nothing: cluster and score again each record in --out (within --datasets/--methods/--seeds) "
                        "whose run was kept in DIR by --keep_reps, with the current label and cluster-count rules; "
                        "records without a kept run are listed and left as they are")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def chosen_datasets(args: argparse.Namespace) -> list[BenchDataset]:
    if args.data:
        if not args.label_key:
            sys.exit("--data needs --label_key (the obs column to score against)")
        return [BenchDataset(Path(args.data).stem, args.data, args.label_key, args.cluster, args.ncluster,
                             args.rad_cutoff, args.image, args.image_scalef, args.library_key)]
    found = shared_datasets(args.data_root)
    if args.datasets:
        unknown = set(args.datasets) - {d.name for d in found}
        if unknown:
            sys.exit(f"unknown or absent dataset(s) {sorted(unknown)}; present: {[d.name for d in found]}")
        found = [d for d in found if d.name in args.datasets]
    return found


def machine() -> dict:
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    cpu = ""
    if Path("/proc/cpuinfo").is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "commit": commit,
            "date": time.strftime("%Y-%m-%d")}


def run_isolated(task: dict) -> dict:
    """Run one task in a fresh process (spawned), so its peak memory is measured alone."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_task, task).result()


def key(record: dict) -> tuple:
    return record["dataset"], record["method"], record["seed"], record.get("epochs")


def rescore(args: argparse.Namespace, datasets: list[BenchDataset]) -> dict:
    """``--rescore``: redo the clustering of the kept runs in ``args.rescore`` (no training) and
    replace their records in ``args.out``; the machine and settings entries stay those of the runs."""
    payload = read_records(args.out)
    by_name = {d.name: d for d in datasets}
    records = []
    for record in payload["records"]:
        path = Path(args.rescore) / f"{record['dataset']}_{record['method']}_s{record['seed']}.npz"
        chosen = record["dataset"] in by_name and (args.methods is None or record["method"] in args.methods) \
            and record["seed"] in args.seeds and "error" not in record
        if chosen and path.is_file():
            new = rescore_clustering(by_name[record["dataset"]], record, path)
            print(f"rescored {path.name}: ari {record['ari']} -> {new['ari']}, nmi {record['nmi']} -> {new['nmi']}, "
                  f"ncluster {record.get('ncluster')} -> {new['ncluster']}", flush=True)
            record = new
        elif chosen:
            print(f"not kept, left as it is (rerun it to update): {path.name}", flush=True)
        records.append(record)
    payload["records"] = records
    write_records(args.out, payload)
    return payload


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    datasets = chosen_datasets(args)
    if args.rescore:
        block = tables(rescore(args, datasets))
        if args.markdown:
            update_markdown(args.markdown, block)
            print(f"tables written into {args.markdown}")
        return 0
    payload = read_records(args.out) if args.resume else {"records": [], "denoising": []}
    payload["machine"] = machine()
    known = payload.get("settings", {}).get("datasets", {})
    from gist.tl.recipes import RECIPES

    payload["settings"] = {"seeds": args.seeds, "paper_epochs": args.paper_epochs, "recipes": {name: r.settings for name, r in RECIPES.items()},
                           "gist_overrides": {"epochs": args.gist_epochs, "ensemble": args.gist_ensemble},
                           "extractors": args.extractors, "device": args.device,
                           "datasets": known | {d.name: {"cluster": d.cluster, "ncluster": d.ncluster, "rad_cutoff": d.rad_cutoff,
                                                         "label_key": d.label_key} for d in datasets}}
    done = {(section, key(r)) for section in ("records", "denoising") for r in payload[section] if "error" not in r}
    jobs = []
    quick = {"gist_epochs": args.gist_epochs, "gist_ensemble": args.gist_ensemble}
    applicable = {d.name: methods_for(load_samples(d), args.extractors, d.cluster) for d in datasets}
    # seed by seed, so that a partial run already covers every dataset and method
    for seed in [] if args.no_cluster else args.seeds:
        for dataset in datasets:
            named = [m for m in args.methods or [] if method_spec(m).on_request]  # run only when named
            for method in [m for m in applicable[dataset.name] if args.methods is None or m in args.methods] + named:
                jobs.append(task_for("cluster", dataset, seed, args.paper_epochs, method, weights=args.weights,
                                     device=args.device, extractors=list(args.extractors), keep_rep=args.keep_reps,
                                     **quick))
    for seed in [] if args.no_denoise else args.seeds:
        for dataset in [d for d in datasets if d.name not in DENOISE_SKIPPED]:
            for method in args.denoise_methods:
                jobs.append(task_for("denoise", dataset, seed, args.paper_epochs, method, device=args.device,
                                     keep_rep=args.keep_reps, **quick))
    for i, task in enumerate(jobs, start=1):
        section = "denoising" if task["kind"] == "denoise" else "records"
        label = f"[{i}/{len(jobs)}] {task['kind']} {task['dataset']['name']} {task['method']} seed {task['seed']}"
        epochs = recorded_epochs(task["kind"], task["method"], task["paper_epochs"], task.get("gist_epochs"))
        if (section, (task["dataset"]["name"], task["method"], task["seed"], epochs)) in done:
            print(f"{label}: already in {args.out}, skipped", flush=True)
            continue
        result = run_task(task) if args.in_process else run_isolated(task)
        new = result if isinstance(result, list) else [result]  # a GIST denoising run scores several predictions
        keys = {key(r) for r in new}
        payload[section] = [r for r in payload[section] if key(r) not in keys] + new
        write_records(args.out, payload)
        for record in new:
            shown = record.get("error") or " ".join(f"{k}={record[k]}" for k in ("ari", "nmi", "corr", "rmse", "auc", "seconds", "peak_mb")
                                                    if k in record)
            print(f"{label} -> {record['method']}: {shown}", flush=True)
    block = tables(payload)
    print(block)
    if args.markdown:
        update_markdown(args.markdown, block)
        print(f"tables written into {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
