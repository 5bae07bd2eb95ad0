"""Clustering the latent: leiden with a resolution search to a target count, or mclust-EEE-like GMM."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData
from sklearn.decomposition import PCA

from gist.errors import GistInputError
from gist.keys import CLUSTER_KEY, CONNECTIVITIES_KEY, DENOISED_LAYER, DENOISED_PCA_KEY, LATENT_KEY
from gist.tl.hmrf import potts_mixture
from gist.tl.mixture import MIXTURE_RESTARTS, tied_mixture
from gist.tl.recipes import DOMAIN_REPS, clusters_denoised

#: Clusterers of :func:`cluster`: leiden (cell types), a tied Gaussian mixture (domains) and the same
#: mixture with a Potts prior over the spatial graph.
CLUSTER_METHODS = ("leiden", "mclust", "hmrf")
LEIDEN_KWARGS = {"flavor": "igraph", "n_iterations": 2, "directed": False}
#: leiden runs at the found resolution; the partition of highest modularity is kept (label-free).
LEIDEN_RESTARTS = 5


def _leiden(adata: AnnData, resolution: float, seed: int, key: str) -> int:
    sc.tl.leiden(adata, resolution=resolution, random_state=seed, key_added=key, **LEIDEN_KWARGS)
    return int(adata.obs[key].nunique())


def _modularity(adata: AnnData, labels: np.ndarray, resolution: float) -> float:
    """Modularity (with ``resolution``) of ``labels`` on the neighbour graph leiden optimises."""
    graph = sc._utils.get_igraph_from_adjacency(adata.obsp["connectivities"], directed=False)
    codes = pd.factorize(labels)[0].tolist()
    return float(graph.modularity(codes, weights=graph.es["weight"], resolution=resolution))


def best_of_restarts(adata: AnnData, resolution: float, ncluster: int, seed: int, key: str,
                     restarts: int = LEIDEN_RESTARTS) -> float:
    """Run leiden ``restarts`` times at ``resolution`` (random states derived from ``seed``) and keep
    in ``obs[key]`` the partition with ``ncluster`` clusters of highest modularity (the current one
    when none has that count). Leiden with few iterations lands in different partitions from
    different starts; the objective it optimises, not the labels, picks one. Returns the modularity."""
    best = (_modularity(adata, adata.obs[key].to_numpy(), resolution), adata.obs[key].copy())
    trial = f"{key}__restart"
    for r in range(1, restarts):
        count = _leiden(adata, resolution, seed * 1009 + r, trial)
        if count == ncluster:
            quality = _modularity(adata, adata.obs[trial].to_numpy(), resolution)
            if quality > best[0]:
                best = (quality, adata.obs[trial].copy())
    if trial in adata.obs:
        del adata.obs[trial]
    adata.obs[key] = best[1]
    return best[0]


def res_search(
    adata: AnnData,
    ncluster: int,
    seed: int = 0,
    use_rep: str = LATENT_KEY,
    key_added: str = "leiden",
    max_iter: int = 30,
    restarts: int = LEIDEN_RESTARTS,
) -> float:
    """Find a leiden resolution in [0, 3] that gives exactly ``ncluster`` clusters.

    Builds ``sc.pp.neighbors(n_neighbors=8, use_rep=use_rep)`` and bisects the resolution. When the
    count cannot be hit within ``max_iter`` steps, the closest resolution is used and a warning
    says so (the original raises ``NotImplementedError``). At the resolution found, leiden is
    restarted ``restarts`` times and the partition of highest modularity kept
    (:func:`best_of_restarts`; ``restarts=1`` is the original's single run). ``obs[key_added]``
    holds the clusters.

    Returns
    -------
    float
        The resolution.
    """
    if use_rep not in adata.obsm:
        raise KeyError(f"obsm[{use_rep!r}] not found (have {list(adata.obsm)})")
    sc.pp.neighbors(adata, n_neighbors=8, use_rep=use_rep, random_state=seed)
    low, high = 0.0, 3.0
    best = (np.inf, 1.0)
    for _ in range(max_iter):
        mid = (low + high) / 2
        count = _leiden(adata, mid, seed, key_added)
        best = min(best, (abs(count - ncluster), mid))
        if count == ncluster:
            best_of_restarts(adata, mid, ncluster, seed, key_added, restarts)
            return mid
        if count > ncluster:
            high = mid
        else:
            low = mid
    count = _leiden(adata, best[1], seed, key_added)
    warnings.warn(
        f"res_search: no resolution in [0, 3] gives {ncluster} clusters; using {best[1]:.4f} with {count}",
        stacklevel=2,
    )
    return best[1]


def mclust(adata: AnnData, ncluster: int, seed: int = 0, use_rep: str = LATENT_KEY, key_added: str = "mclust",
           restarts: int = MIXTURE_RESTARTS) -> np.ndarray:
    """Gaussian mixture with one covariance shared by all components (mclust's ``EEE``), the fit of
    highest likelihood of ``restarts`` EM runs (:func:`gist.tl.mixture.tied_mixture`). Writes
    ``obs[key_added]``; returns the labels."""
    x = np.asarray(adata.obsm[use_rep], dtype=np.float64)
    labels = tied_mixture(x, ncluster, seed, restarts).predict(x)
    adata.obs[key_added] = pd.Categorical(labels.astype(str))
    return labels


def hmrf(adata: AnnData, ncluster: int, seed: int = 0, use_rep: str = LATENT_KEY, key_added: str = "hmrf") -> float:
    """The tied Gaussian mixture of :func:`mclust` with a Potts prior on the labels over
    ``obsp['spatial_connectivities']`` (:func:`gist.tl.hmrf.potts_mixture`, strength estimated by
    pseudo-likelihood). Writes ``obs[key_added]``; returns the Potts strength."""
    if CONNECTIVITIES_KEY not in adata.obsp:
        raise KeyError("the hmrf clusterer needs the spatial graph in obsp['spatial_connectivities']")
    result = potts_mixture(adata.obsm[use_rep], adata.obsp[CONNECTIVITIES_KEY], ncluster, seed=seed)
    adata.obs[key_added] = pd.Categorical(result.labels.astype(str))
    return float(result.beta)


def neighbour_average(values: np.ndarray, connectivities) -> np.ndarray:
    """Each cell's ``values`` averaged with those of its graph neighbours (the cell itself included,
    the graph made symmetric): one row-normalised sparse product."""
    adj = sp.csr_matrix(connectivities, dtype=np.float64)
    adj = ((adj + adj.T) > 0).astype(np.float64)
    adj.setdiag(1.0)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    return np.asarray(sp.diags(1.0 / degree) @ adj @ np.asarray(values, dtype=np.float64), dtype=np.float32)


def smooth_rep(adata: AnnData, use_rep: str = LATENT_KEY, key_added: str | None = None) -> str:
    """Write ``obsm[key_added]`` (default ``'<use_rep>_smoothed'``): ``obsm[use_rep]`` averaged over
    each cell and its neighbours in ``obsp['spatial_connectivities']`` (:func:`neighbour_average`).
    Returns the key."""
    if CONNECTIVITIES_KEY not in adata.obsp:
        raise KeyError("smoothing needs the spatial graph in obsp['spatial_connectivities']")
    key = key_added or f"{use_rep}_smoothed"
    adata.obsm[key] = neighbour_average(adata.obsm[use_rep], adata.obsp[CONNECTIVITIES_KEY])
    return key


#: Principal components of the denoised expression that `use_rep="denoised"` clusters (GraphST's 20).
DENOISED_PCS = 20


def denoised_components(adata: AnnData, n_pcs: int = DENOISED_PCS, seed: int = 0,
                        key_added: str = DENOISED_PCA_KEY) -> str:
    """Write ``obsm[key_added]``: the first ``n_pcs`` principal components of the denoised
    expression (``layers['gist_denoised']``), as GraphST clusters its reconstruction. Returns the key."""
    if DENOISED_LAYER not in adata.layers:
        raise KeyError(f"no denoised expression in layers[{DENOISED_LAYER!r}] (test.py --denoised off leaves it out)")
    values = np.asarray(adata.layers[DENOISED_LAYER], dtype=np.float64)
    values = values[:, np.isfinite(values).all(axis=0)]  # genes the model did not read are NaN
    adata.obsm[key_added] = PCA(n_components=min(n_pcs, *values.shape), random_state=seed).fit_transform(values)
    return key_added


#: What a clustering may be asked to read: ``auto`` (the recipe's choice) or one of the representations.
REP_CHOICES = ("auto", *DOMAIN_REPS)


def default_rep(adata: AnnData, method: str, recipe: str | None, seed: int = 0, choice: str = "auto") -> str:
    """The representation a clustering reads, as an ``obsm`` key.

    ``choice``: ``latent`` (the fused latent), ``denoised`` (the principal components of the
    denoised expression, written by :func:`denoised_components`) or ``auto``: the recipe's
    ``domain_rep`` (:mod:`gist.tl.recipes`) for ``mclust`` domains, the latent otherwise (leiden cell
    types, paper checkpoints). ``auto`` falls back to the latent with a message when the recipe asks
    for the denoised expression and the layer was left out.

    Raises
    ------
    GistInputError
        If ``choice`` is unknown, or is ``denoised`` and ``layers['gist_denoised']`` is missing.
    """
    if choice not in REP_CHOICES:
        raise GistInputError(f"unknown representation {choice!r} (choose from {', '.join(REP_CHOICES)})")
    if choice == "latent" or (choice == "auto" and not clusters_denoised(recipe, method)):
        return LATENT_KEY
    if DENOISED_LAYER not in adata.layers:
        if choice == "denoised":
            raise GistInputError(f"no denoised expression in layers[{DENOISED_LAYER!r}] to cluster "
                                 "(test.py --denoised off leaves it out)")
        print(f"domains clustered on the latent: the denoised expression (layers[{DENOISED_LAYER!r}]) was left out")
        return LATENT_KEY
    return denoised_components(adata, seed=seed)


def cluster_rep(adata: AnnData, method: str, ncluster: int, seed: int = 0, use_rep: str = LATENT_KEY,
            key_added: str = CLUSTER_KEY, smooth: bool = False) -> dict:
    """Cluster ``obsm[use_rep]`` into ``ncluster`` groups with ``leiden`` (resolution search),
    ``mclust`` (tied Gaussian mixture) or ``hmrf`` (that mixture with a Potts prior over
    ``obsp['spatial_connectivities']``); writes ``obs[key_added]`` and returns the run's parameters.

    With ``smooth`` the representation is first averaged over each cell's spatial neighbourhood
    (:func:`smooth_rep`; the ``gist`` recipe does this for domain detection with ``mclust``)."""
    if method not in CLUSTER_METHODS:
        raise ValueError(f"cluster method must be one of {', '.join(map(repr, CLUSTER_METHODS))}, got {method!r}")
    rep = smooth_rep(adata, use_rep) if smooth else use_rep
    beta = None
    if method == "leiden":
        resolution = res_search(adata, ncluster, seed=seed, use_rep=rep, key_added=key_added)
    elif method == "hmrf":
        beta = hmrf(adata, ncluster, seed=seed, use_rep=rep, key_added=key_added)
        resolution = None
    else:
        mclust(adata, ncluster, seed=seed, use_rep=rep, key_added=key_added)
        resolution = None
    return {"method": method, "resolution": resolution, "n_clusters": int(adata.obs[key_added].nunique()),
            "smoothed": bool(smooth), "rep": rep, "beta": beta,
            "restarts": LEIDEN_RESTARTS if method == "leiden" else MIXTURE_RESTARTS}
