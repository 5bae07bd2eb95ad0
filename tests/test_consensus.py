"""Consensus clustering of an ensemble's partitions (gist.tl.consensus)."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from gist.errors import GistInputError
from gist.tl.consensus import coassociation, consensus_clusters, indicators


def test_indicator_distance_is_the_coassociation_distance():
    labelings = [np.array([0, 0, 1, 1, 2]), np.array(["a", "b", "b", "b", "a"]), np.array([5, 5, 5, 7, 7])]
    c = coassociation(labelings)
    # cells 0 and 1: together in members 1 and 3 -> 2/3; cells 0 and 4: together in member 2 only -> 1/3
    assert c[0, 1] == pytest.approx(2 / 3) and c[0, 4] == pytest.approx(1 / 3) and np.allclose(np.diag(c), 1)
    h = indicators(labelings).toarray()
    squared = ((h[:, None, :] - h[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(squared / 2, 1 - c, atol=1e-12)


def test_consensus_of_noisy_members_recovers_the_blobs_better_than_any_member():
    x, truth = make_blobs(n_samples=600, centers=5, cluster_std=1.0, random_state=0)
    rng = np.random.default_rng(0)
    members = []
    for _ in range(7):  # each member: the truth with 25% of cells relabelled at random, its own label names
        labels = truth.copy()
        flip = rng.random(len(labels)) < 0.25
        labels[flip] = rng.integers(0, 5, flip.sum())
        members.append(rng.permutation(5)[labels])
    consensus = consensus_clusters(members, 5, seed=0)
    assert set(consensus) == set(range(5))
    best_member = max(adjusted_rand_score(truth, m) for m in members)
    assert best_member < 0.7 < 0.95 < adjusted_rand_score(truth, consensus)
    # repeatable; the same partition for any seed up to the label names
    np.testing.assert_array_equal(consensus, consensus_clusters(members, 5, seed=0))
    assert adjusted_rand_score(consensus, consensus_clusters(members, 5, seed=3)) == pytest.approx(1.0)


def test_consensus_refuses_partitions_of_other_cells_and_bad_counts():
    with pytest.raises(GistInputError, match="lengths"):
        consensus_clusters([np.zeros(5), np.zeros(4)], 2)
    with pytest.raises(GistInputError, match="ncluster"):
        consensus_clusters([np.zeros(5)], 6)
    with pytest.raises(GistInputError, match="at least one"):
        consensus_clusters([], 2)
