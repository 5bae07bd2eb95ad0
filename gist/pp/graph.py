"""Spatial neighbour graphs per sample (the original's ``Cal_Spatial_Net``).

Graphs are built with a KD-tree per sample, so edges never join cells of different
samples/FOVs. Results are stored the way both the original and squidpy expect:

- ``uns['Spatial_Net']``: DataFrame with columns ``Cell1``, ``Cell2`` (obs names) and
  ``Distance``; no self loops (the original's layout; names are categorical to keep
  million-cell graphs small).
- ``obsp['spatial_connectivities']`` (1 per edge) and ``obsp['spatial_distances']``,
  CSR matrices with row = ``Cell1``, column = ``Cell2``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy.spatial import cKDTree

from gist.errors import GistInputError
from gist.io._validate import check_coordinates
from gist.io.samples import sample_rows
from gist.keys import CONNECTIVITIES_KEY, LIBRARY_KEY, SPATIAL_KEY, SPATIAL_NET_KEY

DEFAULT_LIBRARY_KEY = LIBRARY_KEY  # squidpy's library_key default; absent column = one sample
#: The radius rule: :data:`RADIUS_FACTOR` times the median distance from a cell to its
#: :data:`RADIUS_NEIGHBOUR`-th nearest cell. On a hexagonal lattice (Visium) that is the first ring of
#: 6 (the 6th neighbour lies at the pitch, the second ring at 1.73 pitches); on a square lattice the
#: 8-neighbourhood (the 6th neighbour is a diagonal at 1.41, the next ring at 2); on irregular cells
#: 6-7 neighbours on average (squidpy's default of 6 neighbours, as a radius).
RADIUS_NEIGHBOUR = 6
RADIUS_FACTOR = 1.1
RULE = f"{RADIUS_FACTOR} x median distance to the {RADIUS_NEIGHBOUR}th nearest cell"
#: Below this mean number of neighbours per cell a graph is refused.
MIN_MEAN_NEIGHBOURS = 1.0


def _sample_groups(adata: AnnData, library_key: str | None) -> list[np.ndarray]:
    if library_key is None:
        return [np.arange(adata.n_obs)]
    if library_key not in adata.obs:
        raise GistInputError(f"library_key {library_key!r} is not a column of obs (have {list(adata.obs.columns)})")
    return sample_rows(adata, library_key)[1]


def check_rule(radius: float | None, n_neighbours: int | None) -> None:
    """A graph is built by a radius or by a number of neighbours, never both."""
    if radius is not None and n_neighbours is not None:
        raise GistInputError("give a radius (--rad_cutoff) or a number of neighbours (--k_cutoff, n_neighs), not both")


def check_neighbours(mean: float, what: str) -> None:
    """Refuse a graph with fewer than :data:`MIN_MEAN_NEIGHBOURS` neighbours per cell on average."""
    if mean < MIN_MEAN_NEIGHBOURS:
        raise GistInputError(
            f"the spatial graph ({what}) has {mean:.2f} neighbours per cell on average, fewer than "
            f"{MIN_MEAN_NEIGHBOURS:g}: the radius is too small for these coordinates (units of obsm['spatial']); "
            "pass a larger radius (--rad_cutoff) or a number of neighbours (--k_cutoff N)"
        )


def kth_neighbour_distances(coords: np.ndarray, k: int = RADIUS_NEIGHBOUR) -> np.ndarray:
    """Distance from each cell to its ``k``-th nearest other cell (its farthest when it has fewer;
    empty for fewer than two cells)."""
    coords = np.asarray(coords, dtype=np.float64)
    if len(coords) < 2:
        return np.empty(0)
    k_eff = min(k, len(coords) - 1)
    d, _ = cKDTree(coords).query(coords, k=k_eff + 1, workers=-1)
    return d.reshape(len(coords), -1)[:, k_eff]


def rule_radius(parts: list[np.ndarray]) -> float:
    """The radius rule (:data:`RADIUS_FACTOR` x the median :data:`RADIUS_NEIGHBOUR`-th neighbour
    distance) over the coordinates of one or more samples, pooled. No label is involved.

    Raises
    ------
    GistInputError
        If no sample has two cells, or coincident cells make the distance 0.
    """
    distances = [kth_neighbour_distances(c) for c in parts]
    pooled = np.concatenate(distances) if distances else np.empty(0)
    if not len(pooled):
        raise GistInputError("cannot choose a graph radius: no sample has two or more cells")
    median = float(np.median(pooled))
    if not median > 0:
        raise GistInputError(
            "cannot choose a graph radius: the median distance to the 6th nearest cell is 0 (duplicated "
            "coordinates?); pass a radius or a number of neighbours"
        )
    return RADIUS_FACTOR * median


def auto_radius(adata: AnnData, library_key: str | None = DEFAULT_LIBRARY_KEY, spatial_key: str = SPATIAL_KEY) -> float:
    """:func:`rule_radius` of ``adata``'s coordinates, neighbours sought within samples."""
    if library_key == DEFAULT_LIBRARY_KEY and library_key not in adata.obs:
        library_key = None
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    return rule_radius([coords[m] for m in _sample_groups(adata, library_key)])


def spatial_graph(
    adata: AnnData,
    library_key: str | None = DEFAULT_LIBRARY_KEY,
    radius: float | None = None,
    n_neighs: int | None = None,
    spatial_key: str = SPATIAL_KEY,
    key_added: str = SPATIAL_KEY,
    verbose: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Build each sample's spatial graph, choosing the radius from the data when none is given
    (squidpy's ``gr.spatial_neighbors``).

    Parameters
    ----------
    adata
        Cells with coordinates in ``obsm[spatial_key]``; the graph is written into it.
    library_key
        obs column naming each cell's sample; edges never cross samples.
    radius
        Connect cells within this distance (the coordinates' units).
    n_neighs
        Connect each cell to its ``n_neighs`` nearest cells instead.
    spatial_key
        Key of the coordinates in ``obsm``.
    key_added
        The graph goes to ``obsp[f'{key_added}_connectivities']`` (1 per edge, row = cell, column =
        neighbour) and ``obsp[f'{key_added}_distances']``; ``uns[f'{key_added}_neighbors']['params']``
        records the radius and how it was chosen. The model reads ``key_added='spatial'``.
    verbose
        Print the rule, the radius and the neighbours per cell.
    copy
        Return a copy with the graph instead of writing into ``adata``.

    Returns
    -------
    AnnData or None
        With ``copy``, the copy; else ``None``. Unlike :func:`Cal_Spatial_Net` (the original's
        API) no ``uns['Spatial_Net']`` edge table is written.

    Raises
    ------
    GistInputError
        If the graph has fewer than :data:`MIN_MEAN_NEIGHBOURS` neighbours per cell on average.

    Notes
    -----
    With neither ``radius`` nor ``n_neighs`` the radius is :func:`auto_radius`: 1.1 times the median
    distance to the 6th nearest cell, the first ring of a Visium lattice (6 neighbours).
    """
    check_rule(radius, n_neighs)
    adata = adata.copy() if copy else adata
    rule = "given"
    if n_neighs is None and radius is None:
        radius = auto_radius(adata, library_key, spatial_key)
        rule = RULE
    _write_graph(adata, radius, n_neighs, "KNN" if n_neighs is not None else "Radius", library_key, spatial_key, key_added,
                 edge_table=False)
    mean = adata.obsp[f"{key_added}_connectivities"].nnz / max(adata.n_obs, 1)
    adata.uns[f"{key_added}_neighbors"]["params"] |= {"rule": rule, "neighbours_per_cell": round(float(mean), 3)}
    what = f"{n_neighs} nearest neighbours" if n_neighs is not None else f"radius {radius:.4g} ({rule})"
    check_neighbours(mean, what)
    if verbose:
        print(f"spatial graph: {what}; {mean:.2f} neighbours per cell on average")
    return adata if copy else None


def radius_edges(coords: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs ``(i, j)``, ``i != j``, with distance ``<= radius``."""
    tree = cKDTree(coords)
    pairs = tree.query_pairs(r=radius, output_type="ndarray")
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return src, dst


def knn_edges(coords: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell to its ``k`` nearest other cells (fewer when the sample is smaller)."""
    n = len(coords)
    k_eff = min(k, n - 1)
    if k_eff <= 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    _, idx = cKDTree(coords).query(coords, k=k_eff + 1, workers=-1)
    idx = idx.reshape(n, k_eff + 1)
    src = np.repeat(np.arange(n), k_eff + 1)
    dst = idx.ravel()
    keep = dst != src
    src, dst = src[keep], dst[keep]
    # Where coincident points displace a cell from its own first slot, it keeps k+1 others.
    counts = np.bincount(src, minlength=n)
    if (counts > k_eff).any():
        rank = np.arange(len(src)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < k_eff
        src, dst = src[keep], dst[keep]
    return src, dst


def Cal_Spatial_Net(
    adata: AnnData,
    rad_cutoff: float | None = None,
    k_cutoff: int | None = None,
    model: str = "Radius",
    verbose: bool = True,
    library_key: str | None = DEFAULT_LIBRARY_KEY,
    spatial_key: str = SPATIAL_KEY,
) -> AnnData:
    """Build the spatial neighbour graph of every sample in ``adata``, in place.

    Parameters
    ----------
    adata
        Cells with coordinates in ``obsm[spatial_key]``.
    rad_cutoff
        ``model='Radius'``: connect cells whose distance is ``<= rad_cutoff`` (same units as
        the coordinates; the paper uses 80 px for CosMx).
    k_cutoff
        ``model='KNN'``: connect each cell to its ``k_cutoff`` nearest cells (a directed graph,
        as in the original).
    model
        ``'Radius'`` or ``'KNN'``.
    verbose
        Print the number of edges, as the original does.
    library_key
        obs column naming each cell's sample; edges never cross samples. The default
        ``'sample'`` is used when that column exists; ``None`` treats all cells as one sample.
    spatial_key
        Key of the coordinates in ``obsm``.

    Returns
    -------
    AnnData
        The same object, with ``uns['Spatial_Net']``, ``obsp['spatial_connectivities']`` and
        ``obsp['spatial_distances']`` written.
    """
    _write_graph(adata, rad_cutoff, k_cutoff, model, library_key, spatial_key, SPATIAL_KEY, edge_table=True)
    n_edges = adata.obsp[CONNECTIVITIES_KEY].nnz
    n = adata.n_obs
    if verbose:
        print(f"The graph contains {n_edges} edges, {n} cells.")
        print(f"{n_edges / max(n, 1):.4f} neighbors per cell on average.")
    return adata


def _write_graph(adata: AnnData, rad_cutoff: float | None, k_cutoff: int | None, model: str, library_key: str | None,
                 spatial_key: str, key_added: str, edge_table: bool) -> None:
    """Build every sample's graph into ``obsp[f'{key_added}_connectivities']`` / ``_distances`` and
    ``uns[f'{key_added}_neighbors']`` (squidpy's names); ``edge_table``: also the original's
    ``uns['Spatial_Net']`` (only :func:`Cal_Spatial_Net`, the original's API, writes it)."""
    if model not in ("Radius", "KNN"):
        raise GistInputError(f"model must be 'Radius' or 'KNN', got {model!r}")
    if model == "Radius" and (rad_cutoff is None or not rad_cutoff > 0):
        raise GistInputError(f"model='Radius' needs rad_cutoff > 0, got {rad_cutoff!r}")
    if model == "KNN" and (k_cutoff is None or int(k_cutoff) != k_cutoff or k_cutoff < 1):
        raise GistInputError(f"model='KNN' needs an integer k_cutoff >= 1, got {k_cutoff!r}")
    if spatial_key not in adata.obsm:
        raise GistInputError(f"adata.obsm has no {spatial_key!r} coordinates (have {list(adata.obsm)})")
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    check_coordinates(coords, f"adata.obsm[{spatial_key!r}]", adata.obs_names)
    if library_key == DEFAULT_LIBRARY_KEY and library_key not in adata.obs:
        library_key = None

    sources, targets = [], []
    for members in _sample_groups(adata, library_key):
        if model == "Radius":
            src, dst = radius_edges(coords[members], float(rad_cutoff))
        else:
            src, dst = knn_edges(coords[members], int(k_cutoff))
        sources.append(members[src])
        targets.append(members[dst])
    src = np.concatenate(sources) if sources else np.empty(0, np.int64)
    dst = np.concatenate(targets) if targets else np.empty(0, np.int64)
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    dist = np.linalg.norm(coords[src] - coords[dst], axis=1)

    n = adata.n_obs
    adata.obsp[f"{key_added}_connectivities"] = sp.csr_matrix((np.ones(len(src), np.float32), (src, dst)), shape=(n, n))
    distances = sp.csr_matrix((dist, (src, dst)), shape=(n, n))
    adata.obsp[f"{key_added}_distances"] = distances
    if edge_table:
        names = pd.Index(adata.obs_names.astype(str))
        adata.uns[SPATIAL_NET_KEY] = pd.DataFrame(
            {
                "Cell1": pd.Categorical.from_codes(src, categories=names),
                "Cell2": pd.Categorical.from_codes(dst, categories=names),
                "Distance": dist,
            }
        )
    adata.uns[f"{key_added}_neighbors"] = {
        "connectivities_key": f"{key_added}_connectivities",
        "distances_key": f"{key_added}_distances",
        "params": {
            "model": model,
            "rad_cutoff": None if rad_cutoff is None else float(rad_cutoff),
            "k_cutoff": None if k_cutoff is None else int(k_cutoff),
            "library_key": library_key,
        },
    }


def Stats_Spatial_Net(adata: AnnData, ax=None, verbose: bool = True) -> pd.DataFrame:
    """Summarise ``uns['Spatial_Net']``: how many cells have each number of neighbours.

    Parameters
    ----------
    adata
        AnnData after :func:`Cal_Spatial_Net`.
    ax
        Optional matplotlib axes to draw the original's bar chart on.
    verbose
        Print total edges and the mean number of neighbours per cell.

    Returns
    -------
    pandas.DataFrame
        Columns ``n_neighbors``, ``n_cells`` and ``fraction``; cells without any neighbour are
        counted under 0 (the original leaves them out).
    """
    if CONNECTIVITIES_KEY not in adata.obsp:
        raise GistInputError("no spatial graph in adata: run gist.pp.graph.Cal_Spatial_Net first")
    per_cell = np.diff(adata.obsp[CONNECTIVITIES_KEY].indptr)
    values, counts = np.unique(per_cell, return_counts=True)
    table = pd.DataFrame({"n_neighbors": values, "n_cells": counts, "fraction": counts / max(adata.n_obs, 1)})
    mean = per_cell.mean() if len(per_cell) else 0.0
    if verbose:
        print(f"The graph contains {int(per_cell.sum())} edges, {adata.n_obs} cells, {mean:.2f} neighbors per cell on average.")
    if ax is not None:
        ax.bar(table["n_neighbors"], table["fraction"])
        ax.set_ylabel("Percentage")
        ax.set_title(f"Number of Neighbors (Mean={mean:.2f})")
    return table


def edge_index(adata: AnnData) -> np.ndarray:
    """The graph as a PyG ``edge_index`` array of shape ``(2, n_edges)`` (source, target)."""
    if CONNECTIVITIES_KEY not in adata.obsp:
        raise GistInputError("no spatial graph in adata: run gist.pp.graph.Cal_Spatial_Net first")
    coo = sp.coo_matrix(adata.obsp[CONNECTIVITIES_KEY])
    return np.vstack([coo.row, coo.col]).astype(np.int64)


def build_graphs(adatas: list[AnnData], rad_cutoff: float | None = None, k_cutoff: int | None = None,
                 rebuild: bool = False, verbose: bool = True) -> str:
    """Give every sample its spatial graph with one rule for all of them.

    Samples that already carry ``obsp['spatial_connectivities']`` keep it unless ``rebuild``. With
    neither ``rad_cutoff`` nor ``k_cutoff`` the radius is :func:`gist.pp.graph.rule_radius` of all
    samples' cells pooled (neighbours sought within samples), so that every sample gets the same
    radius. Prints (and returns) the rule and the neighbours per cell.

    Raises
    ------
    GistInputError
        If the graphs have fewer than :data:`gist.pp.graph.MIN_MEAN_NEIGHBOURS` neighbours per cell on
        average.
    """
    check_rule(rad_cutoff, k_cutoff)
    todo = [a for a in adatas if rebuild or CONNECTIVITIES_KEY not in a.obsp]
    rule = "the prepared graphs"
    if todo:
        if k_cutoff is not None:
            rule = f"{k_cutoff} nearest neighbours"
        else:
            if rad_cutoff is None:
                rad_cutoff = rule_radius([np.asarray(a.obsm[SPATIAL_KEY], dtype=np.float64) for a in todo])
                rule = f"radius {rad_cutoff:.4g} = {RULE}"
            else:
                rule = f"radius {rad_cutoff:.4g}"
        for adata in todo:
            if k_cutoff is not None:
                Cal_Spatial_Net(adata, k_cutoff=k_cutoff, model="KNN", verbose=False)
            else:
                Cal_Spatial_Net(adata, rad_cutoff=rad_cutoff, verbose=False)
    cells = sum(a.n_obs for a in adatas)
    mean = sum(a.obsp[CONNECTIVITIES_KEY].nnz for a in adatas) / max(cells, 1)
    check_neighbours(mean, rule)
    summary = f"spatial graph: {rule}; {mean:.2f} neighbours per cell on average"
    if verbose:
        print(summary)
    return summary
