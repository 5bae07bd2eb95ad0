"""The model boundary: one sample's AnnData -> its :class:`SampleGraph` (normalised expression,
image features, edges), the only place where samples become per-sample model inputs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from gist.errors import GistInputError
from gist.io.samples import sample_name
from gist.keys import IMG_KEY
from gist.pp.genes import marked_genes
from gist.pp.graph import edge_index
from gist.tl.nn import Graph

TARGET_SUM = 1e4


@dataclass
class SampleGraph:
    """Model inputs of one sample (FOV), or of one tile of a large sample: a mini-batch.

    ``x`` is the normalised log expression, dense (a tensor) or sparse on the host (a SciPy CSR
    matrix, densified when its step comes, see :meth:`dense_x`). A tile (see
    :func:`gist.tl.batches.tile_sample`) also carries ``own``, the rows whose loss and embedding count
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
        """The edges as a :class:`gist.tl.nn.Graph` (built on first use, then reused every step)."""
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


def to_graph(adata: AnnData, name: str) -> SampleGraph:
    """One sample's inputs: normalised expression (sparse when the counts are), image features
    (``(cells, 0)`` without) and edges."""
    img = np.asarray(adata.obsm[IMG_KEY], dtype=np.float32) if IMG_KEY in adata.obsm else np.zeros((adata.n_obs, 0), np.float32)
    if img.shape[0] != adata.n_obs or not np.isfinite(img).all():
        raise GistInputError(f"sample {name!r}: obsm[{IMG_KEY!r}] must be ({adata.n_obs}, d) finite numbers, got {img.shape}")
    # sparse counts stay sparse on the host (memory scales with the non-zeros); training and
    # inference densify a batch when its step comes, see gist.tl.batches
    x = log_normalize_sparse(adata.X) if sp.issparse(adata.X) else torch.from_numpy(log_normalize(adata.X))
    return SampleGraph(
        name=name,
        x=x,
        img=torch.from_numpy(img),
        edge_index=torch.from_numpy(edge_index(adata)),
    )


def model_input(adata: AnnData) -> AnnData:
    """``adata`` as the model reads it: only the genes marked in ``var['highly_variable']``
    (:func:`gist.pp.select_genes`) when some are unmarked, else ``adata`` itself.

    Raises
    ------
    GistInputError
        If ``var['highly_variable']`` is not boolean or marks no gene (:func:`gist.pp.genes.marked_genes`).
    """
    marks = marked_genes(adata)
    return adata if marks is None or marks.all() else adata[:, marks].copy()


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


def sample_graphs(adatas: Sequence[AnnData]) -> Iterator[SampleGraph]:
    """The model inputs of every sample, one :class:`SampleGraph` per sample in order, built one at
    a time (inference holds one sample's normalised expression at once). The one place where
    samples become model inputs: :func:`gist.tl.fit`, :func:`gist.tl.embed`, ``test.py`` and the
    benchmark all come through here.

    Raises
    ------
    GistInputError
        If the samples differ in genes or image feature width (:func:`check_consistent`).
    """
    check_consistent(list(adatas))
    for i, adata in enumerate(adatas):
        yield to_graph(adata, sample_name(adata, f"#{i}"))
