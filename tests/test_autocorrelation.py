"""Moran's I of a representation on the spatial graph (gist.tl.autocorrelation)."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

from gist.errors import GistInputError
from gist.tl.autocorrelation import morans_i, neighbour_similarity


def lattice(side: int = 30) -> tuple[np.ndarray, sp.csr_matrix]:
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2).astype(float)
    pairs = cKDTree(xy).query_pairs(1.01, output_type="ndarray")  # the 4-ring
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(xy),) * 2).tocsr()
    return xy, graph


def test_smooth_field_checkerboard_and_noise_on_a_lattice():
    xy, graph = lattice()
    smooth = np.sin(xy[:, 0] / 6.0) + np.cos(xy[:, 1] / 8.0)
    checker = ((xy[:, 0] + xy[:, 1]) % 2) * 2.0 - 1.0
    noise = np.random.default_rng(0).normal(size=len(xy))
    scores = morans_i(np.stack([smooth, checker, noise], axis=1), graph)
    assert scores[0] > 0.9  # neighbours alike
    assert scores[1] == pytest.approx(-1.0)  # every neighbour the opposite
    assert abs(scores[2]) < 0.1  # spatially random: E[I] = -1 / (n - 1)


def test_random_points_with_random_values_score_near_zero_and_a_gradient_near_one():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, size=(2000, 2))
    _, near = cKDTree(xy).query(xy, k=7)
    rows = np.repeat(np.arange(len(xy)), 6)
    graph = sp.csr_matrix((np.ones(rows.size), (rows, near[:, 1:].ravel())), shape=(len(xy),) * 2)
    values = np.column_stack([rng.normal(size=len(xy)), xy[:, 0] + rng.normal(scale=1.0, size=len(xy))])
    scores = morans_i(values, graph)
    assert abs(scores[0]) < 0.05 and scores[1] > 0.9
    # weighted by variance, the gradient (variance ~833) dominates the noise (variance 1)
    assert neighbour_similarity(values, graph) == pytest.approx(
        (scores[0] * values[:, 0].var() + scores[1] * values[:, 1].var()) / values.var(axis=0).sum())
    assert neighbour_similarity(values, graph) > 0.9


def test_constant_columns_and_bad_graphs():
    xy, graph = lattice(5)
    values = np.column_stack([np.ones(25), xy[:, 0]])
    scores = morans_i(values, graph)
    assert np.isnan(scores[0]) and scores[1] > 0.5
    assert neighbour_similarity(values, graph) == pytest.approx(scores[1])
    with pytest.raises(GistInputError, match="does not fit"):
        morans_i(values[:10], graph)
    with pytest.raises(GistInputError, match="no edge"):
        morans_i(values, sp.csr_matrix((25, 25)))
