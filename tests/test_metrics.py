import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from gist.tl.clustering import mclust, res_search
from gist.tl.evaluate import evaluate
from gist.tl.metrics import hungarian_match, labelled_mask, n_labels, compare_labels


def test_hungarian_recovers_a_known_permutation():
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c", "d"], size=400)
    perm = {"a": "2", "b": "0", "c": "3", "d": "1"}
    clusters = np.array([perm[x] for x in labels])
    assert hungarian_match(labels, clusters) == {v: k for k, v in perm.items()}
    summary, table, matched = compare_labels(labels, clusters)
    assert summary["accuracy"] == 1.0 and summary["ari"] == pytest.approx(1.0) and (table["f1"] == 1.0).all()
    assert (matched == labels).all()


def test_scores_equal_scikit_learn_and_per_class_f1_is_right():
    rng = np.random.default_rng(1)
    labels = rng.choice(["x", "y", "z"], size=300)
    clusters = np.where(rng.random(300) < 0.7, np.array([{"x": 0, "y": 1, "z": 2}[l] for l in labels]), rng.integers(0, 4, 300))
    summary, table, matched = compare_labels(labels, clusters)
    assert summary["ari"] == pytest.approx(adjusted_rand_score(labels, clusters))
    assert summary["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    from sklearn.metrics import f1_score

    f1 = f1_score(labels, matched.astype(str), labels=sorted(set(labels)), average=None)
    np.testing.assert_allclose(table["f1"], f1)
    assert any(m.startswith("unmatched_") for m in matched)  # 4 clusters, 3 labels


def test_missing_labels_are_left_out():
    labels = np.array(["a", "a", None, "b", "b"], dtype=object)
    summary, _, matched = compare_labels(labels, np.array([0, 0, 1, 1, 1]))
    assert summary["n_cells"] == 4 and summary["ari"] == pytest.approx(1.0) and matched[2] == "b"


@pytest.mark.parametrize("missing", [None, np.nan, "nan", "NaN", "None", ""])
def test_a_missing_label_in_any_spelling_is_left_out_and_not_counted_as_a_class(missing):
    # DLPFC's annotation stores its unannotated spots as the category "nan": not an 8th layer
    labels = pd.Series(pd.Categorical(["a", "a", missing, "b", "b"]))
    assert labelled_mask(labels).tolist() == [True, True, False, True, True]
    assert n_labels(labels) == 2
    summary, _, _ = compare_labels(labels.astype(str).to_numpy(), np.array([0, 0, 2, 1, 1]))
    assert summary["n_cells"] == 4 and summary["ari"] == pytest.approx(1.0)


def test_evaluate_sizes_the_clustering_by_the_labelled_classes():
    rng = np.random.default_rng(0)
    centres = np.repeat(np.eye(3) * 10, 20, axis=0)
    adata = ad.AnnData(np.zeros((60, 1), dtype=np.float32))
    adata.obsm["X_gist"] = centres + rng.normal(size=centres.shape)
    adata.obs["layer"] = pd.Categorical(["a"] * 20 + ["b"] * 20 + ["c"] * 17 + ["nan"] * 3)
    metrics, table = evaluate(adata, "layer", None, "mclust")
    assert metrics["ncluster"] == 3 and metrics["n_cells"] == 57
    assert sorted(table["class"]) == ["a", "b", "c"]
    assert adata.obs["gist_matched"].isna().sum() == 3


def test_mclust_tied_mixture_on_shared_covariance_blobs():
    rng = np.random.default_rng(2)
    cov = np.array([[2.0, 1.2], [1.2, 1.0]])
    means = np.array([[0, 0], [8, 0], [0, 8]])
    x = np.concatenate([rng.multivariate_normal(m, cov, 150) for m in means])
    a = ad.AnnData(X=np.zeros((450, 1), np.float32))
    a.obsm["X_gist"] = x
    labels = mclust(a, 3, seed=0)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 150), labels) > 0.95
    assert a.obs["mclust"].nunique() == 3
    np.testing.assert_array_equal(mclust(a, 3, seed=0), labels)  # seeded


def test_mixture_restarts_keep_the_fit_of_highest_likelihood():
    from gist.tl.mixture import tied_mixture

    rng = np.random.default_rng(0)  # 12 uneven blobs: single k-means starts often merge two of them
    centres = rng.uniform(0, 10, size=(12, 2))
    x = np.vstack([c + 0.3 * rng.standard_normal((n, 2)) for c, n in zip(centres, rng.integers(10, 80, 12))])
    single = [tied_mixture(x, 12, seed, restarts=1) for seed in range(4)]
    best = [tied_mixture(x, 12, seed, restarts=10) for seed in range(4)]
    assert all(b.lower_bound_ >= s.lower_bound_ - 1e-9 for s, b in zip(single, best))  # the first start is the single one
    assert all(b.lower_bound_ > s.lower_bound_ + 1e-3 for s, b in zip(single, best))  # and each single start was stuck
    assert min(adjusted_rand_score(best[0].predict(x), b.predict(x)) for b in best[1:]) > 0.99  # restarts agree across seeds
    a = ad.AnnData(X=np.zeros((x.shape[0], 1), np.float32), obsm={"r": x})
    np.testing.assert_array_equal(mclust(a, 12, seed=2, use_rep="r"), best[2].predict(x))  # mclust is the kept fit
    np.testing.assert_array_equal(mclust(a, 12, seed=2, use_rep="r", restarts=1), single[2].predict(x))
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        tied_mixture(x, 12, restarts=0)


def test_res_search_warns_and_returns_the_closest_when_the_count_is_unreachable():
    rng = np.random.default_rng(3)
    a = ad.AnnData(X=np.zeros((40, 1), np.float32))
    a.obsm["X_gist"] = rng.normal(size=(40, 3))
    with pytest.warns(UserWarning, match="no resolution in \\[0, 3\\] gives 39 clusters"):
        resolution = res_search(a, 39, max_iter=6)
    assert 0 <= resolution <= 3 and a.obs["leiden"].nunique() < 39


def test_leiden_restarts_keep_the_partition_of_highest_modularity():
    from gist.tl.clustering import _modularity, res_search

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(c, 1.0, size=(80, 5)) for c in (0, 3, 6, 9)])
    single, several = (ad.AnnData(X=np.zeros((len(x), 1), np.float32), obsm={"X_gist": x}) for _ in range(2))
    res_one = res_search(single, 4, seed=2, restarts=1)
    res_many = res_search(several, 4, seed=2, restarts=6)
    assert res_one == res_many  # the same search; only the partition kept at the end differs
    assert several.obs["leiden"].nunique() == 4
    assert _modularity(several, several.obs["leiden"].to_numpy(), res_many) >= \
        _modularity(single, single.obs["leiden"].to_numpy(), res_one) - 1e-12
