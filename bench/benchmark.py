"""Side-by-side benchmark of GIST and the alternatives on labelled data (``bench/reproduce.py``).

Every method turns the same cells into one representation (``obsm['bench_rep']``), which is then
clustered by the same routine (:func:`gist.tl.clustering.cluster_rep`, the dataset's method and target count)
and scored against the labels. Methods:

``expression``
    scanpy's standard route: normalize_total, log1p, highly variable genes (2,000 when there are
    more), PCA (30).
``expression_smoothed``
    The same PCA averaged over each cell and its 6 nearest neighbours (one row-normalised sparse
    product), then the same clustering: the plain neighbour average GIST has to beat.
``image_<extractor>``
    Image features alone (``stats``, or a foundation model given weights), standardised, PCA (30).
``gist``
    The default ``gist`` recipe (:data:`gist.tl.recipes.RECIPES`, with the dataset's task settings,
    ``Recipe.tasks``): an ensemble of 5 models on 50 principal components, their
    consensus latent, averaged over each spot's graph neighbourhood for ``mclust`` (domain)
    clustering; image branch fed the first extractor's features where the data have an image and
    the task's settings use it (cell types; domains train without it, ``use_img=False``).
``gist_noimg``
    The same without the image branch (only listed where there is an image).
``gist_<extractor>``
    The default recipe with the features of a further extractor (image branch on for either task).
``gist_paper``
    The original recipe (one model, the paper's loss, its fused latent clustered as is), trained
    for ``paper_epochs``; with the image where there is one.
``gist_denoised``
    The default's denoised expression, 20 principal components (as GraphST clusters its
    reconstruction), averaged over the graph for domains like the latent. Run only when named.
``gist+<candidate>``
    A candidate recipe searched for the default (issue 21): the ``gist`` recipe with the settings of
    :data:`CANDIDATES` (graph layers that pass messages, principal-component input, widths), with
    the image where there is one; ``gist+<candidate>_noimg`` without it. Run only when named.
``graphst``
    GraphST (PyPI ``GraphST``), a maintained graph contrastive method; its embedding reduced to 20
    principal components as its own ``clustering`` does.

Every function takes the dataset as one AnnData (:func:`load_samples`), the samples told apart by
``obs['sample']``; the few steps that work one sample at a time find each sample's rows there
(:func:`sample_members`). Trained models are always taken at the final epoch
(``selection='final'``): no label is used to choose anything. Cells without a label (NaN) are
clustered but not scored. Each run is meant to execute in a fresh process (see
``bench/reproduce.py``) so that its peak memory is its own.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
import torch
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from bench.denoise import (
    DENOISE_BASELINES,
    HeldOut,
    baseline_prediction,
    marker_auroc,
    mask_counts,
    score_denoiser,
    split_half_markers,
)
from gist.datasets import COSMX_RADIUS
from gist.demo import make_demo
from gist.device import resolve_device
from gist.errors import GistInputError
from gist.io import read_h5ad
from gist.io.image import get_image
from gist.io.samples import join_samples, sample_parts, sample_rows, split_samples
from gist.keys import CONNECTIVITIES_KEY, DENOISED_LAYER, IMG_KEY, LATENT_KEY, LIBRARY_KEY, MEMBER_LATENTS_KEY
from gist.pp import image_features as gist_image_features
from gist.pp.genes import apply_gene_rule
from gist.pp.graph import build_graphs, knn_edges
from gist.tl._inputs import log_normalize, sample_graphs
from gist.tl.clustering import cluster_rep as gist_cluster_rep
from gist.tl.clustering import denoised_components, neighbour_average
from gist.tl.inference import infer
from gist.tl.metrics import compare_labels, labelled_mask
from gist.tl.recipes import RECIPES, task_of
from gist.tl.training import recipe_config, train_ensemble
from gist.utils import atomic_path

REP_KEY = "bench_rep"
SELECTION = "final"
#: Candidate settings for the default (``gist+<name>``): overrides of the ``gist`` recipe.
CANDIDATES: dict[str, dict] = {
    "genes": {"hops": 4, "n_pcs": 0, "hidden": (512, 30)},  # the previous default: genes in, every layer passes messages
    "h1pc50": {"hops": 1, "n_pcs": 50, "hidden": (128, 30)},
    "h2pc50": {"hops": 2, "n_pcs": 50, "hidden": (128, 30)},
    "h0pc50": {"hops": 0, "n_pcs": 50, "hidden": (128, 30)},
    "h1pc50w512": {"hops": 1, "n_pcs": 50, "hidden": (512, 30)},
    "h1": {"hops": 1, "n_pcs": 0, "hidden": (512, 30)},  # one message-passing layer, genes in
    # widths and input size around the default, message passing as the task sets it
    "z15": {"hidden": (128, 15)},
    "z50": {"hidden": (128, 50)},
    "w512": {"hidden": (512, 30)},
    "pc100": {"n_pcs": 100, "neighbour_input": 0},
    # the image branch for domains too (the domain default trains without it since 2026-12-06)
    "img": {"use_img": True},
    "masked": {"mask_fraction": 0.2},  # the denoising objective: 20% of the input entries hidden at each step
    "default": {},  # the default itself, for its suffixed rows (e.g. gist+default_noimg_denoised)
    # an objective that smoothing lacks: Deep Graph Infomax beside the reconstruction (gist.tl.model.contrast_loss)
    "dgi": {"contrast": True},
    # own expression beside its neighbourhood as the model's input (BANKSY; lambda 0.2 as its authors
    # recommend for Visium domains and for cell typing)
    "banksy_in": {"neighbour_input": 0.2},
    # genes the components are taken from (the default: gist.pp.genes' rule, 3,000 seurat_v3 genes at most)
    "g1000": {"n_top_genes": 1000},
    "g5000": {"n_top_genes": 5000},
    # the leaders combined with the domain default's latent of 50 (the rows above without z50 were
    # measured on the 2026-12-03 default, latent 30)
    # (measured before domains read own | neighbour components: ``neighbour_input`` 0 keeps them as run)
    "z50g5000": {"hidden": (128, 50), "n_top_genes": 5000, "neighbour_input": 0},
    "z50banksy_in": {"hidden": (128, 50), "neighbour_input": 0.2},  # the domain default since 2026-12-06 (night)
    # no message passing and a 512-wide hidden layer around the domain default (latent 50)
    "h0z50": {"hops": 0, "hidden": (128, 50), "neighbour_input": 0},
    "w512z50": {"hidden": (512, 50), "neighbour_input": 0},
    # the domain default of 2026-12-06 (evening): own components alone; with the image (DLPFC)
    "own": {"neighbour_input": 0},
    "ownimg": {"neighbour_input": 0, "use_img": True},
}
#: Candidate settings that choose the model's genes rather than the recipe (:func:`gist_rep`).
GENE_SETTINGS = ("n_top_genes",)
#: Suffixes of a ``gist+<name>`` method: without the image; domains from the denoised expression.
CANDIDATE_SUFFIXES = ("_noimg", "_denoised")
def candidate_name(method: str) -> str:
    """``<name>`` of a ``gist+<name>[_noimg][_denoised]`` method."""
    name = method.removeprefix("gist+")
    while (ends := [s for s in CANDIDATE_SUFFIXES if name.endswith(s)]):
        name = name.removesuffix(ends[0])
    return name


def candidate_settings(method: str) -> dict:
    """The settings of a ``gist+<name>`` method, with or without a suffix of
    :data:`CANDIDATE_SUFFIXES` (:data:`CANDIDATES`)."""
    name = candidate_name(method)
    if name not in CANDIDATES:
        raise GistInputError(f"unknown candidate {name!r} in {method!r} (known: {', '.join(CANDIDATES)})")
    return CANDIDATES[name]


def split_candidate(settings: dict, n_vars: int) -> tuple[dict, dict]:
    """A candidate's settings as ``(genes, overrides)``: the :data:`GENE_SETTINGS` for the gene rule
    (``n_top_genes`` at most the panel's ``n_vars``: a smaller panel keeps all of its genes) and the
    rest, overrides of the recipe."""
    genes = {k: settings[k] for k in GENE_SETTINGS if k in settings}
    if "n_top_genes" in genes:
        genes["n_top_genes"] = min(genes["n_top_genes"], n_vars)
    return genes, {k: v for k, v in settings.items() if k not in GENE_SETTINGS}


#: Methods of the denoising check: the default recipe and the paper's (``paper_epochs`` epochs).
DENOISE_METHODS = ("gist", "gist_paper")


def denoise_settings(method: str) -> dict:
    """The candidate settings a denoising ``method`` trains with: ``{}`` for :data:`DENOISE_METHODS`,
    a ``gist+<candidate>[_noimg]``'s settings (``_noimg``: ``use_img=False``) otherwise.

    Raises
    ------
    GistInputError
        For any other name, or a ``_denoised`` route (the check scores the reconstruction).
    """
    if method in DENOISE_METHODS or method in DENOISE_BASELINES:
        return {}
    if not method.startswith("gist+"):
        raise GistInputError(f"unknown denoising method {method!r} (choose from {', '.join(DENOISE_BASELINES + DENOISE_METHODS)}, "
                             "or gist+<candidate>)")
    if method.endswith("_denoised"):
        raise GistInputError(f"{method!r}: the denoising check scores the reconstruction, not a clustering route")
    settings = dict(candidate_settings(method))
    if method.endswith("_noimg"):
        settings["use_img"] = False
    return settings


#: GraphST builds dense cells x cells matrices; above this it is skipped with a reason.
GRAPHST_MAX_CELLS = 20000
#: The her2st sections of ../shared/data/her2st_spots (pathologist labels, no image).
HER2ST_SECTIONS = ("B1", "C1", "D1", "G2", "H1")


@dataclass
class BenchDataset:
    """A labelled dataset of the benchmark and how to cluster it.

    ``path`` is ``None`` for the built-in demo. ``label_key`` is the obs column scored against;
    ``ncluster`` defaults to its number of classes. ``family`` is the technology family a task
    score averages over first (BENCHMARKS.md, protocol); ``kind`` says whether a row is a spot
    (``spot``: several cells) or a cell (``cell``), which picks BANKSY's authors' setting.
    """

    name: str
    path: str | None
    label_key: str
    cluster: str = "leiden"
    ncluster: int | None = None
    rad_cutoff: float | None = None  # None: the radius rule of gist.pp.graph.spatial_graph
    image: str | None = None
    image_scalef: float = 1.0
    library_key: str | None = None
    merge_from: str | None = None  # label column to merge into the paper's 8 classes (CosMx)
    family: str | None = None
    kind: str = "cell"


#: Labelled sections in ``../shared/data/bench`` (README there): file stem -> (benchmark name, label
#: column, clusterer, family, kind). The STARmap sections serve both tasks (domains, cell types).
BENCH_SECTIONS = (
    ("spots_dlpfc_151673", "dlpfc_151673", "label", "mclust", "DLPFC", "spot"),
    ("spots_dlpfc_151674", "dlpfc_151674", "label", "mclust", "DLPFC", "spot"),
    ("spots_stahlMOB_stdeconvolve", "mouse_ob", "label", "mclust", "mouse OB", "spot"),
    ("starmap_mpfc_BZ5", "starmap_BZ5", "label", "mclust", "STARmap", "cell"),
    ("starmap_mpfc_BZ9", "starmap_BZ9", "label", "mclust", "STARmap", "cell"),
    ("baristaseq_visp_slice1", "baristaseq_1", "label", "mclust", "BaristaSeq", "cell"),
    ("baristaseq_visp_slice2", "baristaseq_2", "label", "mclust", "BaristaSeq", "cell"),
    ("starmap_mpfc_BZ5", "starmap_BZ5_types", "cell_type", "leiden", "STARmap", "cell"),
    ("starmap_mpfc_BZ9", "starmap_BZ9_types", "cell_type", "leiden", "STARmap", "cell"),
    ("cosmx_dbkero_tiny_celltype", "cosmx_breast", "label", "leiden", "CosMx breast", "cell"),
)


def shared_datasets(data_root: str | Path) -> list[BenchDataset]:
    """The demo and the labelled real datasets under ``data_root`` (``../shared/data``) that exist."""
    root = Path(data_root)
    cosmx_radius = COSMX_RADIUS  # CosMx pixels, as in the paper
    found = [BenchDataset("demo", None, "merge_cell_type", "leiden", 8, cosmx_radius, family="demo")]
    lung5 = root / "cosmx_lung5_subset" / "CosMx_subset.h5ad"
    if lung5.is_file():  # a user's .h5ad, not the paper's Lung13: the radius rule, as train.py --data
        found.append(BenchDataset("cosmx_lung5", str(lung5), "merge_cell_type", "leiden", 8, merge_from="cell_type",
                                  family="CosMx lung5"))
    dlpfc = root / "dlpfc_151510" / "adata.h5ad"
    if dlpfc.is_file():  # its lowres H&E comes inside the file (uns['spatial'])
        found.append(BenchDataset("dlpfc_151510", str(dlpfc), "layer_guess_reordered", "mclust", family="DLPFC", kind="spot"))
    a1 = root / "her2st_A1_he"
    if (a1 / "her2st_A1.h5ad").is_file():  # obsm['spatial'] is in the H&E's pixels
        found.append(BenchDataset("her2st_A1", str(a1 / "her2st_A1.h5ad"), "label", "mclust", image=str(a1 / "A1_HE_image.png"),
                                  family="her2st", kind="spot"))
    for section in HER2ST_SECTIONS:
        path = root / "her2st_spots" / f"her2st_{section}.h5ad"
        if path.is_file():
            found.append(BenchDataset(f"her2st_{section}", str(path), "label", "mclust", family="her2st", kind="spot"))
    for stem, name, label, cluster, family, kind in BENCH_SECTIONS:
        path = root / "bench" / f"{stem}.h5ad"
        if path.is_file():
            found.append(BenchDataset(name, str(path), label, cluster, family=family, kind=kind))
    return found


def load_samples(dataset: BenchDataset) -> AnnData:
    """The dataset as one AnnData (``obs['sample']``) with raw counts in ``X``, labels, coordinates
    and each sample's radius graph (``obsp``, block-diagonal).

    Parameters
    ----------
    dataset
        The dataset (``path`` ``None``: the demo, generated).

    Returns
    -------
    AnnData
        The samples one after the other.
    """
    if dataset.path is None:
        adata = join_samples(make_demo(seed=0))
    else:
        adata = read_h5ad(dataset.path, image_path=dataset.image, library_key=dataset.library_key,
                          label_key=dataset.merge_from or dataset.label_key, merge=dataset.merge_from is not None,
                          image_scalef=dataset.image_scalef)
    if dataset.label_key not in adata.obs:
        raise GistInputError(f"dataset {dataset.name!r}: label column {dataset.label_key!r} not in obs")
    adata.obsm.pop(IMG_KEY, None)  # image methods compute their own features (timed)
    parts = sample_parts(adata)  # a graph per sample
    build_graphs(parts, dataset.rad_cutoff, verbose=False)
    return join_samples(parts)


def sample_members(adata: AnnData) -> list[np.ndarray]:
    """Each sample's rows in ``adata`` (``obs['sample']``, in order of first appearance; all rows
    when the column is absent)."""
    return sample_rows(adata, LIBRARY_KEY)[1] if LIBRARY_KEY in adata.obs else [np.arange(adata.n_obs)]


def has_image(adata: AnnData) -> bool:
    """Whether every sample carries a tissue image (``uns['spatial'][sample]``)."""
    names = sample_rows(adata, LIBRARY_KEY)[0] if LIBRARY_KEY in adata.obs else [None]
    try:
        for name in names:
            get_image(adata, name)
    except (GistInputError, KeyError, FileNotFoundError):
        return False
    return True


# ---------------------------------------------------------------- representations


def _counts(adata: AnnData) -> AnnData:
    """A light copy to build a representation on: counts (float32 CSR), obs, genes, coordinates."""
    return AnnData(X=sp.csr_matrix(adata.X, dtype=np.float32), obs=adata.obs.copy(),
                   var=pd.DataFrame(index=adata.var_names),
                   obsm={"spatial": np.asarray(adata.obsm["spatial"], dtype=np.float64)})


def _pooled_top_genes(data: AnnData, n_top: int, target_sum: float | None = 1e4) -> AnnData:
    """All samples pooled, ``normalize_total`` (to ``target_sum``; ``None``: scanpy's default, the
    median count) + log1p, restricted to the ``n_top`` most variable genes (scanpy ``seurat``
    flavour) when there are more."""
    adata = _counts(data)
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    if adata.n_vars > n_top:
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat")
        adata = adata[:, adata.var["highly_variable"]].copy()
    return adata


def expression_rep(data: AnnData, seed: int, n_hvg: int = 2000, n_pcs: int = 30,
                   target_sum: float | None = 1e4) -> AnnData:
    """scanpy's standard expression route: normalize_total (to ``target_sum``), log1p, HVG, PCA."""
    adata = _pooled_top_genes(data, n_hvg, target_sum)
    sc.pp.pca(adata, n_comps=min(n_pcs, adata.n_vars - 1, adata.n_obs - 1), random_state=seed)
    adata.obsm[REP_KEY] = adata.obsm["X_pca"]
    return adata


def scanpy_rep(data: AnnData, seed: int, n_hvg: int = 2000, n_pcs: int = 30) -> AnnData:
    """``scanpy``: the route a scanpy user already has, every step at scanpy's defaults:
    ``normalize_total()`` (to the median count), ``log1p``, ``highly_variable_genes(n_top_genes=2000)``
    (its default ``seurat`` flavour; all genes when there are fewer), ``pca`` (30)."""
    return expression_rep(data, seed, n_hvg, n_pcs, target_sum=None)


def knn_graph(data: AnnData, n_neighbours: int = 6) -> sp.csr_matrix:
    """Each cell's ``n_neighbours`` nearest cells of the same sample, as an unweighted sparse graph."""
    xy = np.asarray(data.obsm["spatial"], dtype=np.float64)
    rows, cols = [], []
    for members in sample_members(data):
        src, dst = knn_edges(xy[members], n_neighbours)
        rows.append(members[src])
        cols.append(members[dst])
    return sp.csr_matrix((np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(data.n_obs, data.n_obs))


def smoothed_expression_rep(data: AnnData, seed: int, n_neighbours: int = 6,
                            base: Callable[[AnnData, int], AnnData] = expression_rep) -> AnnData:
    """``base``'s representation (:func:`expression_rep`; :func:`scanpy_rep` for ``scanpy_avg``)
    averaged over each cell and its ``n_neighbours`` nearest cells of the same sample (the graph made
    symmetric, one row-normalised sparse product)."""
    adata = base(data, seed)
    adata.obsm[REP_KEY] = neighbour_average(adata.obsm[REP_KEY], knn_graph(data, n_neighbours))
    return adata


def image_features(adata: AnnData, extractor: str, weights: str | None = None, device: str = "cpu") -> np.ndarray:
    """Every cell's image features (rows in ``adata``'s order, float32), each sample's cut from its
    own image by :func:`gist.pp.image_features`: a weight-free descriptor (``stats``, ``he``) or a
    foundation model (local ``weights``); the window a Visium spot's diameter on the image used
    (DLPFC's lowres), else the paper's 240 px. ``adata`` is left as it was."""
    key = "bench_imgs"
    gist_image_features(adata, extractor, weights, device=device, key_added=key)
    return adata.obsm.pop(key)


def image_rep(data: AnnData, seed: int, extractor: str, weights: str | None, device: str, n_pcs: int = 30) -> AnnData:
    """Image features alone: standardised, then PCA."""
    features = image_features(data, extractor, weights, device)
    adata = _counts(data)
    scaled = StandardScaler().fit_transform(features)
    adata.obsm[REP_KEY] = PCA(n_components=min(n_pcs, scaled.shape[1] - 1), random_state=seed).fit_transform(scaled)
    return adata


def train_gist(adata: AnnData, seed: int, recipe: str = "gist", epochs: int | None = None,
               device: str = "cpu", ensemble: int | None = None, overrides: dict | None = None,
               task: str = "cell_types") -> AnnData:
    """Train GIST with a recipe on the samples (image branch on when they carry ``obsm['imgs']``)
    and embed them with the final checkpoint(s).

    Returns :func:`gist.tl.inference.infer`'s AnnData (``obsm['pred']``, ``layers['recon']``),
    rows in ``adata``'s order.
    """
    graphs = list(sample_graphs(split_samples(adata)[0]))  # the model boundary
    config = recipe_config(recipe, task, **(overrides or {}) | {"epochs": epochs, "ensemble": ensemble, "seed": seed,
                                                         "save_every": 0, "device": device})
    # benchmark seed s trains members s*M .. s*M+M-1, so that the seeds share no member
    config = replace(config, seed=seed * config.ensemble)
    with tempfile.TemporaryDirectory(prefix="gist-bench-") as tmp:
        models, _ = train_ensemble(graphs, config, tmp, progress=False)
    # with an ensemble, each member's fused latent too (obsm['X_gist_members']), for clustering it by consensus
    return infer(adata, models, resolve_device(device),
                 {"selection": SELECTION, "epochs": config.epochs, "recipe": recipe, "ensemble": config.ensemble},
                 members=len(models) > 1, denoiser=RECIPES[recipe].denoiser)


def gist_rep(data: AnnData, seed: int, extractor: str | None, weights: str | None, device: str,
             recipe: str = "gist", epochs: int | None = None, ensemble: int | None = None,
             n_top_genes: int | None = None, overrides: dict | None = None, task: str = "cell_types") -> AnnData:
    """GIST's fused latent (the ensemble's consensus for the ``gist`` recipe); ``extractor=None``
    turns the image branch off. Genes follow :mod:`gist.pp.genes` (as train.py)."""
    (adata,), _ = apply_gene_rule([data], n_top_genes, verbose=False)
    if extractor is not None:
        features = image_features(adata, extractor, weights, device)
        adata = adata.copy()
        adata.obsm[IMG_KEY] = np.asarray(features, dtype=np.float32)
    result = train_gist(adata, seed, recipe, epochs, device, ensemble, overrides, task)
    result.obsm[REP_KEY] = result.obsm[LATENT_KEY]
    return result


def denoised_rep(result: AnnData, seed: int) -> AnnData:
    """``gist_denoised``: the default's denoised expression (``layers['gist_denoised']``, the
    ensemble's mean reconstruction in genes) reduced to principal components
    (:func:`gist.tl.clustering.denoised_components`, as GraphST clusters its reconstruction); domains
    average it over the graph like every ``gist`` row."""
    result.obsm[REP_KEY] = result.obsm[denoised_components(result, seed=seed)]
    return result


def offset_coordinates(adata: AnnData) -> np.ndarray:
    """Coordinates of all samples in one frame (rows in ``adata``'s order), samples side by side
    with a gap, so that a spatial neighbour search over the pooled cells never links two samples."""
    spatial = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    out, shift = np.empty_like(spatial), 0.0
    for members in sample_members(adata):
        xy = spatial[members]
        moved = xy - xy.min(axis=0) + np.array([shift, 0.0])
        out[members] = moved
        extent = np.ptp(xy, axis=0).max() if len(xy) else 0.0
        shift = moved[:, 0].max() + extent + 1e4
    return out


def graphst_rep(data: AnnData, seed: int, device: str, epochs: int = 600,
                max_cells: int = GRAPHST_MAX_CELLS) -> AnnData:
    """GraphST's embedding with its defaults (3,000 HVGs by seurat_v3, 3-NN graph, 600 epochs),
    reduced to 20 principal components as GraphST's own ``clustering`` does."""
    try:
        from GraphST.GraphST import GraphST
    except ImportError as err:
        raise GistInputError(f"GraphST is not installed ({err}); it is pinned in requirements.txt (make setup)") from None
    adata = _counts(data)
    if adata.n_obs > max_cells:
        raise GistInputError(f"GraphST builds dense {adata.n_obs} x {adata.n_obs} matrices; skipped above {max_cells} cells")
    adata.obsm["spatial"] = offset_coordinates(data)
    adata.X = adata.X.toarray()
    model = GraphST(adata, device=torch.device(resolve_device(device)), random_seed=seed, epochs=epochs)
    out = model.train()
    adata.obsm[REP_KEY] = PCA(n_components=20, random_state=42).fit_transform(out.obsm["emb"])
    return adata


#: BANKSY's settings per task and data kind, as its authors run them (``(clusterer, kind)``):
#: spot domains as their multi-sample DLPFC vignette (prabhakarlab/Banksy ``vignettes/multi-sample.Rmd``:
#: 2,000 seurat_v3 genes per sample, their union, library-size scaling without log, ``k_geom`` 6, no
#: azimuthal Gabor filter, lambda 0.2); cell-resolution domains with lambda 0.8 (their recommendation
#: for domains of cells), ``k_geom`` 15 and the filter (``max_m`` 1, pybanksy's defaults) on log data;
#: cell typing with lambda 0.2 on the same. 20 principal components throughout.
BANKSY_SETTINGS = {
    ("mclust", "spot"): {"lambda": 0.2, "k_geom": 6, "max_m": 0, "log": False},
    ("mclust", "cell"): {"lambda": 0.8, "k_geom": 15, "max_m": 1, "log": True},
    ("leiden", "spot"): {"lambda": 0.2, "k_geom": 15, "max_m": 1, "log": True},
    ("leiden", "cell"): {"lambda": 0.2, "k_geom": 15, "max_m": 1, "log": True},
}
BANKSY_PCS = 20


def banksy_genes(data: AnnData, n_hvg: int, log: bool) -> AnnData:
    """BANKSY's input: ``normalize_total`` (to the median) and, with ``log``, ``log1p`` plus scanpy's
    2,000 ``seurat`` genes (the slide-seq/STARmap route); without, the union over samples of each
    sample's 2,000 ``seurat_v3`` genes of the raw counts (the DLPFC vignette's ``FindVariableFeatures``)."""
    if log:
        return _pooled_top_genes(data, n_hvg, target_sum=None)
    adata = _counts(data)
    if adata.n_vars > n_hvg:
        keep = np.zeros(adata.n_vars, dtype=bool)
        for members in sample_members(data):
            part = adata[members].copy()
            part = part[:, np.asarray(part.X.sum(axis=0)).ravel() > 0].copy()
            if part.n_vars > n_hvg:
                sc.pp.highly_variable_genes(part, n_top_genes=n_hvg, flavor="seurat_v3")
                part = part[:, part.var["highly_variable"]]
            keep |= adata.var_names.isin(part.var_names)
        adata = adata[:, keep].copy()
    sc.pp.normalize_total(adata)
    return adata


def banksy_rep(data: AnnData, seed: int, task: str, kind: str = "cell", n_hvg: int = 2000) -> AnnData:
    """BANKSY (PyPI ``pybanksy``): each cell's z-scored expression beside its neighbours'
    Gaussian-weighted mean (and, with ``max_m`` 1, the azimuthal Gabor filter), weighted by
    ``lambda``, then PCA to 20 components; settings from :data:`BANKSY_SETTINGS` for the task and data
    kind, genes from :func:`banksy_genes`. Each sample's matrix is built (and z-scored) on its own, as
    the authors' multi-sample runs do, and the rows are stacked before the PCA."""
    try:
        from banksy.embed_banksy import generate_banksy_matrix
        from banksy.initialize_banksy import initialize_banksy
    except ImportError as err:
        raise GistInputError(f"pybanksy is not installed ({err}): pip install -r bench/requirements.txt") from None
    settings = BANKSY_SETTINGS[(task, kind)]
    adata = banksy_genes(data, n_hvg, settings["log"])
    values = np.zeros((adata.n_obs, adata.n_vars * (2 + settings["max_m"])), dtype=np.float64)
    quiet = {"plt_edge_hist": False, "plt_nbr_weights": False, "plt_agf_angles": False, "plt_theta": False}
    for members in sample_members(data):
        part = adata[members].copy()
        part.X = np.asarray(part.X.todense() if sp.issparse(part.X) else part.X, dtype=np.float64)
        xy = np.asarray(part.obsm["spatial"], dtype=np.float64)
        part.obs["x"], part.obs["y"] = xy[:, 0], xy[:, 1]
        with contextlib.redirect_stdout(io.StringIO()):  # pybanksy prints its matrices
            banksy_dict = initialize_banksy(part, ("x", "y", "spatial"), num_neighbours=settings["k_geom"],
                                            nbr_weight_decay="scaled_gaussian", max_m=settings["max_m"], **quiet)
            _, matrix = generate_banksy_matrix(part, banksy_dict, [settings["lambda"]], max_m=settings["max_m"],
                                               verbose=False)
        values[members] = np.asarray(matrix.X.todense() if sp.issparse(matrix.X) else matrix.X, dtype=np.float64)
    values[np.isnan(values)] = 0.0
    adata.obsm[REP_KEY] = PCA(n_components=min(BANKSY_PCS, *values.shape), random_state=seed).fit_transform(values)
    return adata


def cellcharter_rep(data: AnnData, seed: int, n_hvg: int = 2000, n_layers: int = 3,
                    max_epochs: int | None = None) -> AnnData:
    """CellCharter (PyPI ``cellcharter``) as its authors run transcriptomics: scVI's latent
    (``scvi-tools``, 2,000 seurat_v3 HVGs of the raw counts, one batch per sample, early stopping),
    a Delaunay graph per sample without its long links (``cc.gr.remove_long_links``), and the
    latent concatenated with its means over the exact 1-, 2- and 3-hop rings
    (``cc.gr.aggregate_neighbors``). ``max_epochs`` caps scVI's training (tests; default scVI's own rule)."""
    try:
        import cellcharter as cc
        import scvi
        import squidpy as sq
    except ImportError as err:
        raise GistInputError(f"cellcharter/scvi-tools is not installed ({err}): pip install -r bench/requirements.txt") from None
    adata = _counts(data)
    members = sample_members(data)
    batch_of = np.empty(adata.n_obs, dtype=object)  # the samples' numbers, in order of first appearance
    for i, rows in enumerate(members):
        batch_of[rows] = str(i)
    adata.obs[LIBRARY_KEY] = pd.Categorical(batch_of)
    adata.layers["counts"] = adata.X.copy()
    if adata.n_vars > n_hvg:
        sc.pp.highly_variable_genes(adata, n_top_genes=n_hvg, flavor="seurat_v3", layer="counts")
        adata = adata[:, adata.var["highly_variable"]].copy()
    scvi.settings.seed = seed
    scvi.settings.verbosity = 40
    batch = LIBRARY_KEY if len(members) > 1 else None
    scvi.model.SCVI.setup_anndata(adata, layer="counts", batch_key=batch)
    model = scvi.model.SCVI(adata)
    model.train(max_epochs=max_epochs, early_stopping=True, enable_progress_bar=False, accelerator="cpu")
    adata.obsm["X_scVI"] = model.get_latent_representation()
    sq.gr.spatial_neighbors(adata, library_key=LIBRARY_KEY, coord_type="generic", delaunay=True, spatial_key="spatial")
    cc.gr.remove_long_links(adata)
    cc.gr.aggregate_neighbors(adata, n_layers=n_layers, use_rep="X_scVI", out_key="X_cellcharter",
                              sample_key=LIBRARY_KEY)
    adata.obsm[REP_KEY] = np.asarray(adata.obsm["X_cellcharter"], dtype=np.float64)
    return adata


@dataclass(frozen=True)
class RunContext:
    """What a method's representation may read besides the cells: the run's seed and options, the
    dataset's clusterer (``task``: ``leiden`` cell types, ``mclust`` domains) and ``kind``
    (``spot``/``cell``, :class:`BenchDataset`), and whether the data carry an image."""

    seed: int
    paper_epochs: int = 300
    weights: str | None = None
    device: str = "cpu"
    extractors: tuple[str, ...] = ("stats",)
    gist_epochs: int | None = None
    gist_ensemble: int | None = None
    task: str = "leiden"
    kind: str = "cell"
    image: bool | None = None  # None: read from the data (:func:`has_image`) by :func:`representation`

    @property
    def extractor(self) -> str | None:
        """The first extractor where the data have an image, else ``None`` (image branch off)."""
        return self.extractors[0] if self.image else None

    @property
    def default(self) -> dict:
        """The ``gist`` recipe's arguments of :func:`gist_rep` for this run."""
        return {"recipe": "gist", "epochs": self.gist_epochs, "ensemble": self.gist_ensemble, "task": task_of(self.task)}


@dataclass(frozen=True)
class Method:
    """One benchmark method: how it builds its representation and how that is clustered.

    Attributes
    ----------
    build
        ``(adata, ctx) -> AnnData`` with ``obsm['bench_rep']`` (rows in ``adata``'s order).
    smooth
        Domains (``mclust``) cluster the representation averaged over the spatial graph.
    domain_clusterer
        The clusterer for domains when not the dataset's (``hmrf``: the mixture with a Potts prior).
    refine
        GraphST's label refinement after clustering (domains).
    domains_only, needs_image, on_request
        Listed by :func:`methods_for` only for domains / only where there is an image / never
        (run when named).
    """

    build: Callable[[AnnData, RunContext], AnnData]
    smooth: bool = False
    domain_clusterer: str | None = None
    refine: bool = False
    domains_only: bool = False
    needs_image: bool = False
    on_request: bool = False


def _gist_candidate(adata: AnnData, ctx: RunContext, method: str) -> AnnData:
    genes, overrides = split_candidate(candidate_settings(method), adata.n_vars)
    result = gist_rep(adata, ctx.seed, None if "_noimg" in method else ctx.extractor, ctx.weights, ctx.device,
                      overrides=overrides, **genes, **ctx.default)
    return denoised_rep(result, ctx.seed) if method.endswith("_denoised") else result


#: The fixed methods, in the order :func:`methods_for` lists them (see the module docstring).
METHODS: dict[str, Method] = {
    "scanpy": Method(lambda a, c: scanpy_rep(a, c.seed)),
    "scanpy_avg": Method(lambda a, c: smoothed_expression_rep(a, c.seed, base=scanpy_rep)),
    "expression": Method(lambda a, c: expression_rep(a, c.seed)),
    "expression_smoothed": Method(lambda a, c: smoothed_expression_rep(a, c.seed)),
    "expression_hmrf": Method(lambda a, c: expression_rep(a, c.seed), domain_clusterer="hmrf", domains_only=True),
    "gist": Method(lambda a, c: gist_rep(a, c.seed, c.extractor, c.weights, c.device, **c.default), smooth=True),
    "gist_noimg": Method(lambda a, c: gist_rep(a, c.seed, None, None, c.device, **c.default), smooth=True, needs_image=True),
    "gist_paper": Method(lambda a, c: gist_rep(a, c.seed, c.extractor, c.weights, c.device, recipe="paper",
                                               epochs=c.paper_epochs, task=task_of(c.task))),
    "graphst": Method(lambda a, c: graphst_rep(a, c.seed, c.device)),
    "graphst_refine": Method(lambda a, c: graphst_rep(a, c.seed, c.device), refine=True, domains_only=True),
    "banksy": Method(lambda a, c: banksy_rep(a, c.seed, c.task, c.kind)),
    "cellcharter": Method(lambda a, c: cellcharter_rep(a, c.seed)),
    "gist_denoised": Method(lambda a, c: denoised_rep(gist_rep(a, c.seed, c.extractor, c.weights, c.device, **c.default), c.seed),
                            smooth=True, on_request=True),
}


def method_spec(method: str) -> Method:
    """The :class:`Method` of a name: one of :data:`METHODS`, or a family of names ``image_<extractor>``
    (image features alone), ``gist_<extractor>`` (the default with that extractor's image branch) and
    ``gist+<candidate>[_noimg][_denoised]`` (:data:`CANDIDATES`, run when named).

    Raises
    ------
    GistInputError
        For a name of none of these forms, or an unknown candidate.
    """
    if method in METHODS:
        return METHODS[method]
    if method.startswith("gist+"):
        candidate_settings(method)  # an unknown candidate fails here, before any run
        return Method(lambda a, c: _gist_candidate(a, c, method), smooth=True, on_request=True)
    kind, _, extractor = method.partition("_")
    if kind == "image" and extractor:
        return Method(lambda a, c: image_rep(a, c.seed, extractor, c.weights, c.device), needs_image=True)
    if kind == "gist" and extractor:
        return Method(lambda a, c: gist_rep(a, c.seed, extractor, c.weights, c.device, overrides={"use_img": True}, **c.default),
                      smooth=True, needs_image=True)
    raise GistInputError(f"unknown benchmark method {method!r}")


def methods_for(adata: AnnData, extractors: list[str], cluster: str = "leiden") -> list[str]:
    """The methods that apply to a dataset (:data:`METHODS` less those run on request): image methods
    only where there is an image, the domain-only ones (spatial prior, GraphST's refinement) only for
    domains (``mclust``)."""
    image, domains = has_image(adata), cluster == "mclust"
    names = []
    for name, spec in METHODS.items():
        if spec.on_request or (spec.domains_only and not domains) or (spec.needs_image and not image):
            continue
        names.append(name)
        if name == "expression_hmrf" or (name == "expression_smoothed" and not domains):
            names += [f"image_{e}" for e in extractors] if image else []
        if name == "gist_noimg":
            names += [f"gist_{e}" for e in extractors[1:]]
    return names


def representation(adata: AnnData, method: str, ctx: RunContext) -> AnnData:
    """``method``'s representation of ``adata`` (:func:`method_spec`), in ``obsm['bench_rep']``."""
    if ctx.image is None:
        ctx = replace(ctx, image=has_image(adata))
    return method_spec(method).build(adata, ctx)


def smooths(method: str, cluster_method: str) -> bool:
    """Whether a method's representation is averaged over the spatial graph before clustering: the
    ``gist`` recipe's rows do it for domain detection (``mclust``); the paper recipe and the other
    methods never."""
    return cluster_method == "mclust" and method_spec(method).smooth


def clusterer(method: str, task: str) -> str:
    """The clusterer a method's representation goes through: the dataset's (``leiden`` or
    ``mclust``), except a method with its own domain clusterer (``expression_hmrf``: ``hmrf``)."""
    spec = method_spec(method)
    return spec.domain_clusterer if spec.domain_clusterer and task == "mclust" else task


def pooled_graph(adata: AnnData) -> sp.csr_matrix:
    """The samples' spatial graphs (``obsp['spatial_connectivities']``, block-diagonal: edges never
    cross samples) as a CSR matrix."""
    return sp.csr_matrix(adata.obsp[CONNECTIVITIES_KEY])


#: GraphST's refinement: each spot takes the majority label of its nearest spots (its ``radius``).
GRAPHST_REFINE_RADIUS = 50


def cluster_rep(rep: AnnData, adata: AnnData, method: str, task: str, ncluster: int, seed: int) -> dict:
    """Cluster a method's representation (``obsm['bench_rep']``) into ``obs['bench_cluster']`` the
    way the benchmark does for every method: the clusterer of :func:`clusterer`, the average over
    the spatial graph where :func:`smooths` says so, GraphST's label refinement for ``graphst_refine``.
    ``adata`` is the dataset (:func:`load_samples`), whose graph the ``hmrf`` prior uses."""
    smooth = smooths(method, task)
    how = clusterer(method, task)
    if how == "hmrf" and CONNECTIVITIES_KEY not in rep.obsp:
        rep.obsp[CONNECTIVITIES_KEY] = pooled_graph(adata)
    run = gist_cluster_rep(rep, how, ncluster, seed=seed, use_rep=REP_KEY, key_added="bench_cluster", smooth=smooth)
    if method_spec(method).refine:
        from GraphST.utils import refine_label

        rep.obs["bench_cluster"] = pd.Categorical(refine_label(rep, GRAPHST_REFINE_RADIUS, key="bench_cluster"))
        run["refined"] = True
    return run


# ---------------------------------------------------------------- one run


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def warm_up(method: str) -> None:
    """Pay one-time costs outside any timed section: scanpy's lazy imports (normalisation, HVGs,
    PCA on a toy matrix) and, for
    ``leiden``, the numba compilation of neighbours/leiden (~20 s in a fresh process)."""
    rng = np.random.default_rng(0)
    toy = AnnData(X=rng.poisson(2.0, size=(300, 40)).astype(np.float32), obsm={"spatial": rng.uniform(size=(300, 2))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _pooled_top_genes(toy, 20)
        sc.pp.pca(toy, n_comps=5)
        gist_cluster_rep(toy, method, 3, use_rep="X_pca", key_added="warm")


def recorded_epochs(kind: str, method: str, paper_epochs: int, gist_epochs: int | None = None) -> int | None:
    """The ``epochs`` a record carries: the training epochs per model for runs that train GIST
    (``gist_paper``: ``paper_epochs``; the ``gist`` recipe's, or ``gist_epochs``, otherwise),
    ``None`` for the others. Part of a run's identity for ``bench/reproduce.py --resume``."""
    if method == "gist_paper":
        return paper_epochs
    if kind == "denoise" or method.startswith("gist"):
        return gist_epochs or RECIPES["gist"].settings["epochs"]
    return None


def dataset_labels(dataset: BenchDataset, adata: AnnData) -> tuple[np.ndarray, np.ndarray, int]:
    """Every cell's label as text, which cells have one (:func:`gist.tl.metrics.labelled_mask`) and the
    target cluster count (``dataset.ncluster``, else the number of label classes)."""
    labels = adata.obs[dataset.label_key]
    labelled = labelled_mask(labels)
    labels = labels.astype(str).to_numpy()
    return labels, labelled, dataset.ncluster or len(np.unique(labels[labelled]))


def run_clustering(dataset: BenchDataset, method: str, seed: int, paper_epochs: int, weights: str | None = None,
                   device: str = "cpu", extractors: tuple[str, ...] = ("stats",), gist_epochs: int | None = None,
                   gist_ensemble: int | None = None, keep_rep: str | None = None) -> dict:
    """One benchmark record: representation, clustering, scores, wall time and peak memory.

    With ``keep_rep`` (a folder) the run also writes ``<dataset>_<method>_s<seed>.npz`` there
    (:func:`save_rep`), so that the clustering step can be studied again without retraining.

    ``seconds`` counts from the loaded data (graphs built) to the scored clusters, so it includes
    feature extraction, training, inference and clustering, but not imports, reading files or the
    one-time compilation of the clustering code (:func:`warm_up`, before the clock starts).
    Cells without a label are clustered but left out of the scores.
    """
    adata = load_samples(dataset)
    labels, labelled, ncluster = dataset_labels(dataset, adata)
    warm_up(dataset.cluster)
    base_mb = peak_rss_mb()
    start = time.perf_counter()
    ctx = RunContext(seed, paper_epochs, weights, device, tuple(extractors), gist_epochs, gist_ensemble,
                     task=dataset.cluster, kind=dataset.kind, image=has_image(adata))
    rep = representation(adata, method, ctx)
    run = cluster_rep(rep, adata, method, dataset.cluster, ncluster, seed)
    seconds = time.perf_counter() - start
    summary, _, _ = compare_labels(labels[labelled], rep.obs["bench_cluster"].astype(str).to_numpy()[labelled])
    if keep_rep:
        save_rep(Path(keep_rep) / f"{dataset.name}_{method}_s{seed}.npz", rep, labels)
    gist_info = rep.uns.get("gist", {})
    return {
        "dataset": dataset.name, "method": method, "seed": seed,
        "ari": round(float(summary["ari"]), 4), "nmi": round(float(summary["nmi"]), 4),
        "seconds": round(seconds, 2), "peak_mb": round(peak_rss_mb(), 1), "selection": SELECTION,
        "epochs": recorded_epochs("cluster", method, paper_epochs, gist_epochs), "cells": int(rep.n_obs),
        "scored_cells": int(labelled.sum()), "genes": int(rep.n_vars), "ncluster": int(ncluster),
        "n_clusters": run["n_clusters"], "cluster": run["method"], "resolution": run["resolution"],
        "smoothed": run["smoothed"], "beta": run["beta"], "restarts": run["restarts"], "recipe": gist_info.get("recipe"), "ensemble": gist_info.get("ensemble"),
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in candidate_settings(method).items()}
        if method.startswith("gist+") else None,
        "loaded_mb": round(base_mb, 1), "device": device, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def save_rep(path: Path, rep: AnnData, labels: np.ndarray) -> Path:
    """Write one run's representation (``obsm['bench_rep']``, before any smoothing), its clusters,
    the labels, the spatial coordinates and sample of every cell, and the spatial graph when the
    representation carries one (CSR ``graph_indptr``/``graph_indices``), to ``path`` (``.npz``, atomically)."""
    samples = rep.obs[LIBRARY_KEY] if LIBRARY_KEY in rep.obs else np.full(rep.n_obs, "")
    graph = {}
    if MEMBER_LATENTS_KEY in rep.obsm:
        graph["members"] = np.asarray(rep.obsm[MEMBER_LATENTS_KEY], dtype=np.float32)
        graph["n_members"] = np.int64(rep.uns.get("gist", {}).get("ensemble_size", 1))
    if "spatial_connectivities" in rep.obsp:  # the graph a smoothed run averaged over
        adj = sp.csr_matrix(rep.obsp["spatial_connectivities"])
        graph |= {"graph_indptr": adj.indptr, "graph_indices": adj.indices}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, rep=np.asarray(rep.obsm[REP_KEY], dtype=np.float32),
                                labels=np.asarray(labels, dtype=str), samples=np.asarray(samples, dtype=str),
                                clusters=np.asarray(rep.obs["bench_cluster"], dtype=str),
                                spatial=np.asarray(rep.obsm["spatial"], dtype=np.float64), **graph)
    return path


def kept_graph(kept, n: int) -> sp.csr_matrix | None:
    """The spatial graph a kept run (:func:`save_rep`) averaged over, unweighted; ``None`` if it kept none."""
    if "graph_indptr" not in kept:
        return None
    indices = kept["graph_indices"]
    return sp.csr_matrix((np.ones(indices.size), indices, kept["graph_indptr"]), shape=(n, n))


def load_rep(path: Path) -> AnnData:
    """A kept run (:func:`save_rep`) as an AnnData: ``obsm['bench_rep']``, ``obsm['spatial']``,
    ``obs['labels']``, ``obs['bench_cluster']`` (the run's clusters) and, when the run kept its
    graph, ``obsp['spatial_connectivities']`` (unweighted, as the run's smoothing used it)."""
    kept = np.load(path)
    n = kept["rep"].shape[0]
    obs = pd.DataFrame({"labels": kept["labels"], "bench_cluster": kept["clusters"], LIBRARY_KEY: kept["samples"]},
                       index=np.arange(n).astype(str))
    rep = AnnData(np.zeros((n, 1), dtype=np.float32), obs=obs,
                  obsm={REP_KEY: kept["rep"], "spatial": kept["spatial"]})
    graph = kept_graph(kept, n)
    if graph is not None:
        rep.obsp["spatial_connectivities"] = graph
    return rep


def same_places(adata: AnnData, spatial: np.ndarray) -> bool:
    """Whether ``spatial`` holds ``adata``'s cells in order, each sample up to a shift (as
    :func:`offset_coordinates` moves them for GraphST)."""
    if len(spatial) != adata.n_obs:
        return False
    coords = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    for members in sample_members(adata):
        xy = coords[members]
        kept = np.asarray(spatial[members], dtype=np.float64)
        if kept.shape != xy.shape or not np.allclose(kept - kept.min(axis=0), xy - xy.min(axis=0)):
            return False
    return True


def rescore_clustering(dataset: BenchDataset, record: dict, path: Path) -> dict:
    """``record`` with its clustering redone on the run's kept representation (``path``, from
    ``--keep_reps``) and scored against the dataset's labels as :func:`run_clustering` reads them now.

    For a change in how labels are read or counted, not in how a representation is made: the
    representation is the run's own (no retraining), clustered by the same routine, target count
    rule and seed, so the record is what rerunning it would give. Timing and memory stay the
    original run's; ``rescored`` gives the date.

    Raises
    ------
    GistInputError
        When the kept cells are not the dataset's (count, order, coordinates or labels differ), or a
        smoothed method kept no graph.
    """
    adata = load_samples(dataset)
    labels, labelled, ncluster = dataset_labels(dataset, adata)
    rep = load_rep(path)
    if rep.n_obs != labels.size or not np.array_equal(rep.obs["labels"].to_numpy(), labels) \
            or not same_places(adata, rep.obsm["spatial"]):
        raise GistInputError(f"{path}: its cells are not those of dataset {dataset.name!r} "
                             f"({rep.n_obs} kept, {labels.size} in the data, or their order/labels/coordinates differ)")
    if smooths(record["method"], dataset.cluster) and "spatial_connectivities" not in rep.obsp:
        raise GistInputError(f"{path}: {record['method']} averages over the spatial graph, but the run kept none")
    run = cluster_rep(rep, adata, record["method"], dataset.cluster, ncluster, record["seed"])
    summary, _, _ = compare_labels(labels[labelled], rep.obs["bench_cluster"].astype(str).to_numpy()[labelled])
    return record | {
        "ari": round(float(summary["ari"]), 4), "nmi": round(float(summary["nmi"]), 4),
        "scored_cells": int(labelled.sum()), "ncluster": int(ncluster), "n_clusters": run["n_clusters"],
        "cluster": run["method"], "resolution": run["resolution"], "smoothed": run["smoothed"],
        "beta": run["beta"], "restarts": run["restarts"], "rescored": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


#: Sets the denoising check leaves out: the same counts as another set (the STARmap cell-type labels).
DENOISE_SKIPPED = ("starmap_BZ5_types", "starmap_BZ9_types")
#: Neighbours of the latent-kNN denoiser scored beside each GIST reconstruction (``<method>_knn<k>``).
DENOISE_KNN = (30, 50, 100)
#: Neighbours of the latent-diffusion denoiser scored beside them (``<method>_diff<k>``, 3 steps).
DENOISE_DIFFUSION = (10, 15)


def masked_copy(adata: AnnData, fraction: float, seed: int) -> tuple[AnnData, np.ndarray, HeldOut]:
    """``adata`` with ``fraction`` of each cell's non-zero counts held out (each sample masked with
    its own seed, ``seed * 1000 + i`` for the ``i``-th, so every method sees the same mask): the
    masked AnnData, the masked counts (dense) and the held-out entries (rows of the whole)."""
    masked = np.empty(adata.shape, dtype=np.float32)
    rows, cols, counts = [], [], []
    for i, members in enumerate(sample_members(adata)):
        masked[members], held = mask_counts(adata.X[members], fraction, seed=seed * 1000 + i)
        rows.append(members[held.rows])
        cols.append(held.cols)
        counts.append(held.counts)
    out = adata.copy()
    out.X = sp.csr_matrix(masked)
    return out, masked, HeldOut(np.concatenate(rows), np.concatenate(cols), np.concatenate(counts))


def gist_predictions(masked_data: AnnData, masked: np.ndarray, dataset: BenchDataset, seed: int, method: str,
                     settings: dict, device: str, gist_epochs: int | None, gist_ensemble: int | None,
                     paper_epochs: int, keep_latent: Path | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Train ``method`` on the masked data; its reconstruction (``layers['recon']``) and the
    latent-kNN means of :data:`DENOISE_KNN` and the self-calibrated one
    (:func:`gist.tl.denoise.latent_neighbour_mean`), by name,
    and what the record says about the run (image used, seconds). ``keep_latent``: also save the fused
    latent there (``.npz``), so that other latent denoisers can be scored on the same run later."""
    from gist.keys import ORIGINAL_DENOISED_LAYER
    from gist.tl.denoise import latent_diffusion, latent_neighbour_mean

    adata = masked_data.copy()
    if has_image(adata):
        adata.obsm[IMG_KEY] = image_features(adata, "stats")
    start = time.perf_counter()
    task = task_of(dataset.cluster)
    if method == "gist_paper":
        result = train_gist(adata, seed, "paper", paper_epochs, device, task=task)
    else:
        result = train_gist(adata, seed, "gist", gist_epochs, device, gist_ensemble, settings, task=task)
    seconds = time.perf_counter() - start
    predictions = {method: np.asarray(result.layers[ORIGINAL_DENOISED_LAYER])}
    expression = log_normalize(masked)
    for k in DENOISE_KNN:
        predictions[f"{method}_knn{k}"] = latent_neighbour_mean(expression, result.obsm[LATENT_KEY], k)
    # the count chosen from the masked input itself (gist.tl.denoise.calibrate_neighbors), as the default would
    predictions[f"{method}_knn_auto"] = latent_neighbour_mean(expression, result.obsm[LATENT_KEY], "auto", seed=seed)
    for k in DENOISE_DIFFUSION:  # 3 diffusion steps over the symmetrised k-NN graph of the latent
        predictions[f"{method}_diff{k}"] = latent_diffusion(expression, result.obsm[LATENT_KEY], k)
    if keep_latent:
        keep_latent.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(keep_latent, latent=result.obsm[LATENT_KEY])
    return predictions, {"image": bool(result.uns["gist"]["image_branch"]), "seconds": round(seconds, 2)}


def run_denoising(dataset: BenchDataset, seed: int, fraction: float = 0.1, device: str = "cpu",
                  gist_epochs: int | None = None, gist_ensemble: int | None = None, method: str = "gist",
                  paper_epochs: int = 300, keep_rep: str | None = None) -> list[dict]:
    """Hold out ``fraction`` of each cell's non-zero counts (:func:`masked_copy`), denoise the rest
    with ``method`` and score the prediction at the held-out entries (:func:`bench.denoise.score_denoiser`),
    and how well it separates the labelled regions by their split-half markers (``marker_auroc``:
    :func:`bench.denoise.split_half_markers` chosen on the masked input's log-normalised expression,
    :func:`bench.denoise.marker_auroc` of the prediction on the other half).

    ``method`` is a baseline of :data:`bench.denoise.DENOISE_BASELINES` (one record) or a GIST recipe
    (``gist``, ``gist_paper`` with ``paper_epochs``, ``gist+<candidate>``; the ``stats`` image features
    where there is an image, used as the recipe says): one record for its reconstruction and one per
    latent-kNN denoiser of :data:`DENOISE_KNN` (``<method>_knn<k>``), the self-calibrated one
    (``<method>_knn_auto``) and the latent diffusions of :data:`DENOISE_DIFFUSION` (``<method>_diff<k>``),
    from the same trained model; with ``keep_rep`` its fused latent is saved there.
    """
    samples = load_samples(dataset)
    genes, settings = split_candidate(denoise_settings(method), samples.n_vars)
    (adata,), _ = apply_gene_rule([samples], genes.get("n_top_genes"), verbose=False)
    masked_data, masked, held = masked_copy(adata, fraction, seed)
    labels, labelled, _ = dataset_labels(dataset, adata)
    markers, scoring_rows = split_half_markers(log_normalize(masked), np.where(labelled, labels, None), seed)
    if method in DENOISE_BASELINES:
        start = time.perf_counter()
        prediction = baseline_prediction(method, masked, adata.obsp[CONNECTIVITIES_KEY], adata.obs[LIBRARY_KEY].to_numpy(), seed)
        predictions, info = {method: prediction}, {"image": False, "seconds": round(time.perf_counter() - start, 2)}
    else:
        keep = Path(keep_rep) / f"{dataset.name}_{method}_s{seed}_masked_latent.npz" if keep_rep else None
        predictions, info = gist_predictions(masked_data, masked, dataset, seed, method, settings, device, gist_epochs,
                                             gist_ensemble, paper_epochs, keep)
    common = {"dataset": dataset.name, "seed": seed, "epochs": recorded_epochs("denoise", method, paper_epochs, gist_epochs),
              "fraction": fraction, "held_out": int(len(held.rows)), "cells": int(adata.n_obs), "genes": int(adata.n_vars),
              "peak_mb": round(peak_rss_mb(), 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    return [common | {"method": name} | {k: (None if np.isnan(v) else round(v, 4)) for k, v in
                                         (score_denoiser(masked, held, predicted)
                                          | {"marker_auroc": marker_auroc(predicted, labels, markers, scoring_rows)}).items()}
            for name, predicted in predictions.items()]


def run_task(task: dict) -> dict:
    """Entry point of a worker process: ``task`` holds ``kind`` (``cluster``/``denoise``), the
    dataset (as a dict) and the run's arguments. Failures come back as a record with ``error``."""
    os.environ["TQDM_DISABLE"] = "1"  # GraphST's per-epoch bar would flood the log
    warnings.simplefilter("ignore")
    dataset = BenchDataset(**task["dataset"])
    try:
        quick = {"gist_epochs": task.get("gist_epochs"), "gist_ensemble": task.get("gist_ensemble")}
        if task["kind"] == "denoise":
            return run_denoising(dataset, task["seed"], task.get("fraction", 0.1), task.get("device", "cpu"), **quick,
                                 method=task.get("method") or "gist", paper_epochs=task["paper_epochs"],
                                 keep_rep=task.get("keep_rep"))
        return run_clustering(dataset, task["method"], task["seed"], task["paper_epochs"], task.get("weights"),
                              task.get("device", "cpu"), tuple(task.get("extractors", ("stats",))), **quick,
                              keep_rep=task.get("keep_rep"))
    except GistInputError as err:
        return {"dataset": dataset.name, "method": task.get("method", "denoise"), "seed": task["seed"], "error": str(err)}


def task_for(kind: str, dataset: BenchDataset, seed: int, paper_epochs: int, method: str | None = None, **options) -> dict:
    """A picklable description of one run for :func:`run_task`."""
    return {"kind": kind, "dataset": asdict(dataset), "seed": seed, "paper_epochs": paper_epochs, "method": method} | options
