"""Consensus clustering of an ensemble: one partition from several members' partitions.

Each member of a GIST ensemble is clustered on its own; the consensus is the partition that best
agrees with all of them, found on the co-association of cells (how often two cells share a cluster
over the members). The co-association distance of two cells, ``1 - (shared clusters) / M`` over
``M`` members, is half the squared Euclidean distance between their concatenated one-hot cluster
indicators scaled by ``1 / sqrt(M)``, so k-means on those indicators minimises the within-cluster
co-association distance without forming the cells x cells matrix (memory linear in cells).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.cluster import KMeans

from gist.errors import GistInputError

#: k-means starts of the consensus (the best inertia is kept, as the mixture keeps its best start).
CONSENSUS_STARTS = 10


def indicators(labelings: Sequence[np.ndarray]) -> sp.csr_matrix:
    """Cells x (clusters of all members): one-hot cluster indicators side by side, scaled by
    ``1 / sqrt(M)`` so that ``|h_i - h_j|^2 / 2`` is the co-association distance of cells ``i`` and ``j``."""
    if not labelings:
        raise GistInputError("consensus clustering needs at least one partition")
    n = len(labelings[0])
    if any(len(labels) != n for labels in labelings):
        raise GistInputError(f"partitions of different lengths {[len(labels) for labels in labelings]}: one label per cell each")
    blocks = []
    for labels in labelings:
        codes, uniques = pd.factorize(np.asarray(labels))
        blocks.append(sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, len(uniques))))
    return (sp.hstack(blocks).tocsr() / np.sqrt(len(labelings))).astype(np.float64)


def coassociation(labelings: Sequence[np.ndarray]) -> np.ndarray:
    """The cells x cells co-association matrix (fraction of members that put two cells together);
    dense, for small data and tests."""
    h = indicators(labelings)
    return np.asarray((h @ h.T).todense())


def consensus_clusters(labelings: Sequence[np.ndarray], ncluster: int, seed: int = 0,
                       starts: int = CONSENSUS_STARTS) -> np.ndarray:
    """The consensus partition of ``labelings`` (one array of labels per member) into ``ncluster``
    clusters: k-means on the scaled cluster indicators (:func:`indicators`), the best of ``starts``
    starts. Returns integer labels ``0 .. ncluster - 1``.

    Raises
    ------
    GistInputError
        If the partitions differ in length or ``ncluster`` is below 1 or above the number of cells.
    """
    h = indicators(labelings)
    if not 1 <= ncluster <= h.shape[0]:
        raise GistInputError(f"ncluster {ncluster} must lie in 1 .. {h.shape[0]} (the number of cells)")
    return KMeans(n_clusters=ncluster, n_init=starts, random_state=seed).fit_predict(h)
