"""Mini-batches that bound memory: large samples split into spatial tiles with their halo.

A sample (FOV, section) is one mini-batch, as in the original. A sample of more than
``max_cells`` cells (a whole Xenium or Visium HD section) is split into tiles of at most
``max_cells`` *own* cells, each carrying the cells within ``hops`` graph steps of them (its halo).
With ``hops`` equal to the model's message-passing depth (:attr:`gist.tl.model.TransImg.depth`),
every own cell sees exactly the neighbourhood it has in the whole sample, so its embedding and
reconstruction equal the untiled ones; the loss counts own cells only, and inference keeps own
rows only, so every cell gets exactly one embedding.

Tiles follow a reverse Cuthill-McKee order of the graph (a breadth-first order that keeps graph
neighbours, hence spatial neighbours, close), cut into runs of ``max_cells`` cells: compact bands
of tissue with a thin halo, found from the graph alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from gist.errors import GistInputError
from gist.tl._inputs import SampleGraph

#: Default ``max_cells_per_batch``: own cells per training step. Sized for a 24 GiB GPU with the
#: paper model at ~1,000 genes (activations and their gradients of the widest layers, a few
#: hundred kB per cell); lower it for thousands of genes. CosMx FOVs (~4,000 cells) are untouched.
DEFAULT_MAX_CELLS = 50_000
#: Dense expression of all batches up to this size is built once and kept (fast path); above it,
#: each batch is densified when its step comes, so host memory follows the sparse counts.
DENSE_BUDGET_BYTES = 2 * 1024**3


def _adjacency(g: SampleGraph) -> sp.csr_matrix:
    """The graph made symmetric, as 0/1 int32 (a neighbour count must not overflow at high degree)."""
    edges = g.edge_index.cpu().numpy()
    n = g.n_cells
    a = sp.csr_matrix((np.ones(edges.shape[1], dtype=np.int32), (edges[0], edges[1])), shape=(n, n))
    return ((a + a.T) > 0).astype(np.int32).tocsr()


def halo(adjacency: sp.csr_matrix, own: np.ndarray, hops: int) -> np.ndarray:
    """Boolean mask of the cells within ``hops`` edges (either direction) of the ``own`` cells."""
    mask = np.zeros(adjacency.shape[0], dtype=bool)
    mask[own] = True
    for _ in range(hops):
        grown = mask | (adjacency @ mask.astype(np.int32) > 0)
        if (grown == mask).all():
            break
        mask = grown
    return mask


def _subset(g: SampleGraph, rows: np.ndarray, own: np.ndarray, name: str) -> SampleGraph:
    """The induced subgraph on ``rows`` (sorted positions) with ``own`` (bool over rows)."""
    position = np.full(g.n_cells, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    edges = g.edge_index.cpu().numpy()
    keep = (position[edges[0]] >= 0) & (position[edges[1]] >= 0)
    sub_edges = torch.from_numpy(position[edges[:, keep]])
    index_t = torch.from_numpy(rows)
    x = g.x[rows] if g.is_sparse else g.x[index_t]
    return SampleGraph(name, x, g.img[index_t], sub_edges, own=torch.from_numpy(own), index=rows)


def tile_sample(g: SampleGraph, max_cells: int | None, hops: int) -> list[SampleGraph]:
    """``g`` itself when it has at most ``max_cells`` cells, else its tiles (see the module doc).

    Parameters
    ----------
    g
        One sample.
    max_cells
        Own cells per tile; ``None`` never tiles.
    hops
        Halo depth in graph steps; the model's message-passing depth makes tiles exact.
    """
    if max_cells is None or g.n_cells <= max_cells:
        return [g]
    if max_cells < 1:
        raise GistInputError(f"max_cells_per_batch must be >= 1, got {max_cells}")
    adjacency = _adjacency(g)
    order = sp.csgraph.reverse_cuthill_mckee(adjacency, symmetric_mode=True)
    tiles = []
    for t, start in enumerate(range(0, g.n_cells, max_cells)):
        own_rows = np.sort(order[start:start + max_cells])
        rows = np.flatnonzero(halo(adjacency, own_rows, hops))
        own = np.isin(rows, own_rows)
        tiles.append(_subset(g, rows, own, f"{g.name}/tile{t}"))
    return tiles


def make_batches(graphs: Sequence[SampleGraph], max_cells: int | None, hops: int,
                 dense_budget: int | None = None) -> list[SampleGraph]:
    """The mini-batches of an epoch: samples, large ones tiled; densified once when they all fit
    ``dense_budget`` bytes (default :data:`DENSE_BUDGET_BYTES`), else left sparse (densified per step)."""
    batches = [tile for g in graphs for tile in tile_sample(g, max_cells, hops)]
    dense_bytes = sum(4 * b.n_cells * b.n_genes for b in batches)
    budget = DENSE_BUDGET_BYTES if dense_budget is None else dense_budget
    return [b.densified() for b in batches] if dense_bytes <= budget else batches


def own_rows(tensor: torch.Tensor | None, batch: SampleGraph) -> torch.Tensor | None:
    """The rows of ``tensor`` that belong to ``batch`` itself (all rows of an untiled sample)."""
    if tensor is None or batch.own is None:
        return tensor
    return tensor[batch.own]


def stitch(parts: Sequence[tuple[SampleGraph, dict[str, np.ndarray]]], n_cells: int) -> dict[str, np.ndarray]:
    """Per-tile results (``{key: rows of the tile}``) back into one array per key, own rows only."""
    if len(parts) == 1 and parts[0][0].index is None:
        return parts[0][1]
    out: dict[str, np.ndarray] = {}
    filled = np.zeros(n_cells, dtype=np.int64)
    for tile, values in parts:
        own = tile.own.cpu().numpy()
        target = tile.index[own]
        filled[target] += 1
        for key, value in values.items():
            if key not in out:
                out[key] = np.zeros((n_cells, *value.shape[1:]), dtype=value.dtype)
            out[key][target] = value[own]
    if not (filled == 1).all():
        raise RuntimeError(f"tiles cover {int((filled == 0).sum())} cells 0 times and {int((filled > 1).sum())} more than once")
    return out

