"""From AnnData to model inputs: datasets, normalisation and per-sample graphs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData, read_h5ad

from gist.datasets import DatasetSpec, dataset_spec
from gist.errors import GistInputError
from gist.features import add_patch_stats
from gist.keys import IMG_KEY, LIBRARY_KEY
from gist.graph import Cal_Spatial_Net, edge_index
from gist.io._validate import check_sample_column
from gist.nn import Graph
from gist.samples import join_samples, split_samples  # noqa: F401 (re-exported)

TARGET_SUM = 1e4


@dataclass
class SampleGraph:
    """Model inputs of one sample (FOV), or of one tile of a large sample: a mini-batch.

    ``x`` is the normalised log expression, dense (a tensor) or sparse on the host (a SciPy CSR
    matrix, densified when its step comes, see :meth:`dense_x`). A tile (see
    :func:`gist.batches.tile_sample`) also carries ``own``, the rows whose loss and embedding count
    (the others are its halo), and ``index``, its rows' positions in the whole sample.
    """

    name: str
    x: torch.Tensor | sp.csr_matrix  # (cells, genes) normalised log expression
    img: torch.Tensor  # (cells, img_dim) image features
    edge_index: torch.Tensor  # (2, edges)
    graph: Graph | None = field(default=None, repr=False)  # CSR layout, built once on first use
    own: torch.Tensor | None = field(default=None, repr=False)  # bool (cells,): None = every row is the tile's own
    index: np.ndarray | None = field(default=None, repr=False)  # rows in the whole sample; None = the sample itself

    @property
    def n_cells(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_genes(self) -> int:
        return int(self.x.shape[1])

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.x)

    def dense_x(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The expression as a dense float32 tensor (on ``device`` when given)."""
        x = torch.from_numpy(self.x.toarray()) if self.is_sparse else self.x
        return x if device is None else x.to(device)

    def densified(self) -> "SampleGraph":
        """This batch with ``x`` dense (a no-op when it already is)."""
        return self if not self.is_sparse else replace(self, x=self.dense_x())

    def prepared(self) -> Graph:
        """The edges as a :class:`gist.nn.Graph` (built on first use, then reused every step)."""
        if self.graph is None:
            # cached and reused by training too: never build it as an inference tensor (embed runs
            # under inference_mode, and a graph built there could not take part in a backward pass)
            with torch.inference_mode(False):
                self.graph = Graph(self.edge_index, self.n_cells)
        return self.graph

    def to(self, device: torch.device | str) -> "SampleGraph":
        """Tensors on ``device``; a sparse ``x`` stays on the host until :meth:`dense_x`."""
        x = self.x if self.is_sparse else self.x.to(device)
        own = None if self.own is None else self.own.to(device)
        return replace(self, x=x, img=self.img.to(device), edge_index=self.edge_index.to(device),
                       graph=self.prepared().to(device), own=own)


def log_normalize_sparse(counts) -> sp.csr_matrix:
    """:func:`log_normalize` that keeps sparse counts sparse (``log1p(0) = 0``): float32 CSR."""
    csr = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    totals = np.asarray(csr.sum(axis=1), dtype=np.float32).ravel()
    scale = np.divide(np.float32(TARGET_SUM), totals, out=np.zeros_like(totals), where=totals > 0)
    csr.data *= np.repeat(scale, np.diff(csr.indptr))
    np.log1p(csr.data, out=csr.data)
    return csr


def log_normalize(counts) -> np.ndarray:
    """``normalize_total(target_sum=1e4)`` then ``log1p``, as the original; dense float32."""
    if sp.issparse(counts):
        return log_normalize_sparse(counts).toarray()
    dense = np.asarray(counts).astype(np.float32, copy=True)
    totals = dense.sum(axis=1, keepdims=True)
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(dense * scale)


def sample_name(adata: AnnData, fallback: str) -> str:
    if LIBRARY_KEY in adata.obs and adata.n_obs:
        return str(adata.obs[LIBRARY_KEY].iloc[0])
    return fallback


def ensure_graph(adata: AnnData, rad_cutoff: float) -> AnnData:
    """Build the radius graph unless the sample already has one."""
    if "spatial_connectivities" not in adata.obsp:
        Cal_Spatial_Net(adata, rad_cutoff=rad_cutoff, verbose=False)
    return adata


def build_graphs(adatas: list[AnnData], rad_cutoff: float | None = None, k_cutoff: int | None = None,
                 rebuild: bool = False, verbose: bool = True) -> str:
    """Give every sample its spatial graph with one rule for all of them.

    Samples that already carry ``obsp['spatial_connectivities']`` keep it unless ``rebuild``. With
    neither ``rad_cutoff`` nor ``k_cutoff`` the radius is :func:`gist.graph.rule_radius` of all
    samples' cells pooled (neighbours sought within samples), so that every sample gets the same
    radius. Prints (and returns) the rule and the neighbours per cell.

    Raises
    ------
    GistInputError
        If the graphs have fewer than :data:`gist.graph.MIN_MEAN_NEIGHBOURS` neighbours per cell on
        average.
    """
    from gist.graph import MIN_MEAN_NEIGHBOURS, RULE, rule_radius

    todo = [a for a in adatas if rebuild or "spatial_connectivities" not in a.obsp]
    rule = "the prepared graphs"
    if todo:
        if rad_cutoff is not None and k_cutoff is not None:
            raise GistInputError("give --rad_cutoff or --k_cutoff, not both")
        if k_cutoff is not None:
            rule = f"{k_cutoff} nearest neighbours"
        else:
            if rad_cutoff is None:
                rad_cutoff = rule_radius([np.asarray(a.obsm["spatial"], dtype=np.float64) for a in todo])
                rule = f"radius {rad_cutoff:.4g} = {RULE}"
            else:
                rule = f"radius {rad_cutoff:.4g}"
        for adata in todo:
            if k_cutoff is not None:
                Cal_Spatial_Net(adata, k_cutoff=k_cutoff, model="KNN", verbose=False)
            else:
                Cal_Spatial_Net(adata, rad_cutoff=rad_cutoff, verbose=False)
    cells = sum(a.n_obs for a in adatas)
    mean = sum(a.obsp["spatial_connectivities"].nnz for a in adatas) / max(cells, 1)
    if mean < MIN_MEAN_NEIGHBOURS:
        raise GistInputError(
            f"the spatial graph ({rule}) has {mean:.2f} neighbours per cell on average, fewer than "
            f"{MIN_MEAN_NEIGHBOURS:g}: the radius is too small for these coordinates (units of obsm['spatial']); "
            "pass a larger --rad_cutoff or --k_cutoff N"
        )
    summary = f"spatial graph: {rule}; {mean:.2f} neighbours per cell on average"
    if verbose:
        print(summary)
    return summary


def to_graph(adata: AnnData, name: str) -> SampleGraph:
    """One sample's inputs: normalised expression (sparse when the counts are), image features
    (``(cells, 0)`` without) and edges."""
    img = np.asarray(adata.obsm[IMG_KEY], dtype=np.float32) if IMG_KEY in adata.obsm else np.zeros((adata.n_obs, 0), np.float32)
    if img.shape[0] != adata.n_obs or not np.isfinite(img).all():
        raise GistInputError(f"sample {name!r}: obsm[{IMG_KEY!r}] must be ({adata.n_obs}, d) finite numbers, got {img.shape}")
    # sparse counts stay sparse on the host (memory scales with the non-zeros); training and
    # inference densify a batch when its step comes, see gist.batches
    x = log_normalize_sparse(adata.X) if sp.issparse(adata.X) else torch.from_numpy(log_normalize(adata.X))
    return SampleGraph(
        name=name,
        x=x,
        img=torch.from_numpy(img),
        edge_index=torch.from_numpy(edge_index(adata)),
    )


def feature_dims(adata: AnnData) -> tuple[int, int]:
    """``(n_genes, img_dim)`` of a sample as the model sees it (``img_dim`` 0 without image features)."""
    return adata.n_vars, (adata.obsm[IMG_KEY].shape[1] if IMG_KEY in adata.obsm else 0)


def check_consistent(adatas: list[AnnData]) -> None:
    """All samples must share genes (in order) and image feature width."""
    genes = list(adatas[0].var_names)
    width = feature_dims(adatas[0])[1]
    for i, adata in enumerate(adatas[1:], start=1):
        name = sample_name(adata, f"#{i}")
        if list(adata.var_names) != genes:
            raise GistInputError(f"sample {name!r} has other genes than the first sample ({adata.n_vars} vs {len(genes)})")
        if feature_dims(adata)[1] != width:
            raise GistInputError(f"sample {name!r} has {feature_dims(adata)[1]}-d image features, the first sample {width}-d")


def load_prepared(path: str | Path) -> list[AnnData]:
    """Read prepared samples: one ``.h5ad`` (split by ``obs['sample']``) or a folder of per-sample files."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.h5ad"))
        if not files:
            raise GistInputError(f"no .h5ad files in {path} (expected one prepared file per sample)")
    elif path.is_file():
        files = [path]
    else:
        raise GistInputError(f"prepared data not found: {path} (expected an .h5ad file or a folder of them)")
    adatas = []
    for file in files:
        try:
            adata = read_h5ad(file)
        except Exception as err:  # h5py/anndata raise many types for a damaged file
            raise GistInputError(f"{file} is not a readable .h5ad file: {err}") from None
        if LIBRARY_KEY not in adata.obs:
            adata.obs[LIBRARY_KEY] = pd.Categorical([file.stem] * adata.n_obs)
        check_sample_column(adata.obs, LIBRARY_KEY, str(file))
        for name in adata.obs[LIBRARY_KEY].astype(str).unique():
            part = adata[adata.obs[LIBRARY_KEY].astype(str) == name].copy() if adata.obs[LIBRARY_KEY].nunique() > 1 else adata
            adatas.append(part)
    return adatas


def load_demo(seed: int = 0, n_fovs: int = 4) -> list[AnnData]:
    """The demo dataset with the ``stats`` image features, generated in memory.

    Used by ``--dataset demo`` when ``dataset/demo/features/`` has not been written by
    ``extract_features.py --dataset demo`` (which holds the same data).
    """
    from gist.demo import make_demo

    return [add_patch_stats(a) for a in make_demo(n_fovs=n_fovs, seed=seed)]


def load_dataset(dataset: str | None = None, data: str | Path | None = None, root: str | Path = "dataset",
                 rad_cutoff: float | None = None, k_cutoff: int | None = None, strict: bool = False,
                 verbose: bool = True) -> tuple[list[AnnData], DatasetSpec, str]:
    """Samples of a named dataset (or a prepared path) with graphs, the dataset's defaults and the
    graph rule used.

    Names read ``{root}/{name}/features/`` written by ``extract_features.py`` (``demo`` is
    generated in memory when that folder is absent); ``data`` reads any prepared ``.h5ad`` or folder.
    Samples without a graph get one (:func:`build_graphs`): ``rad_cutoff`` / ``k_cutoff`` when
    given (they also replace prepared graphs), else the dataset's paper radius, else (``--data``)
    the radius rule. Every sample is checked first (:func:`gist.io._validate.check_samples`;
    ``strict`` refuses non-integer counts).
    """
    from gist.io._validate import check_samples

    if (dataset is None) == (data is None):
        raise GistInputError("give exactly one of --dataset NAME or --data PATH")
    spec = dataset_spec(dataset if data is None else None)
    if data is not None:
        adatas = load_prepared(data)
    elif dataset == "demo" and not (Path(root) / "demo" / "features").is_dir():
        adatas = load_demo()  # same data extract_features.py --dataset demo writes
    else:
        folder = Path(root) / dataset / "features"
        if not folder.is_dir():
            raise GistInputError(
                f"no prepared features for dataset {dataset!r}: {folder} is missing "
                f"(run extract_features.py --dataset {dataset} first, or pass --data PATH)"
            )
        adatas = load_prepared(folder)
    adatas = check_samples(adatas, str(data or f"dataset {dataset!r}"), strict=strict, verbose=verbose)
    check_consistent(adatas)
    explicit = rad_cutoff is not None or k_cutoff is not None
    graph = build_graphs(adatas, rad_cutoff if explicit else spec.rad_cutoff, k_cutoff, rebuild=explicit, verbose=verbose)
    return adatas, spec, graph
