"""The tied Gaussian mixture behind domain clustering (mclust's ``EEE``), fitted from several starts."""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

#: EM runs from different seeded k-means starts; the fit of highest likelihood is kept (label-free,
#: as leiden keeps the partition of highest modularity of its restarts). One start was the rule until
#: 2026-12-06; BENCHMARKS.md ("Round of 2026-12-06, night") has the measured effect.
MIXTURE_RESTARTS = 10


def tied_mixture(x: np.ndarray, ncluster: int, seed: int = 0, restarts: int = MIXTURE_RESTARTS) -> GaussianMixture:
    """Fit a Gaussian mixture with one full covariance shared by all components.

    mclust's EEE model (equal volume, shape and orientation) is scikit-learn's
    ``covariance_type='tied'``. EM runs from ``restarts`` seeded k-means starts and the fit with the
    highest likelihood bound is kept; mclust instead runs once from a hierarchical clustering, so labels
    can differ from R's on the same data while the model is the same.

    Parameters
    ----------
    x
        ``(cells, dims)`` representation.
    ncluster
        Number of components.
    seed
        Seed of the starts (the same seed and data give the same fit).
    restarts
        EM runs; ``1`` is a single start.

    Returns
    -------
    sklearn.mixture.GaussianMixture
        The fitted mixture (``lower_bound_`` is the kept fit's).
    """
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    mixture = GaussianMixture(n_components=ncluster, covariance_type="tied", random_state=seed, n_init=restarts,
                              max_iter=500)
    return mixture.fit(np.asarray(x, dtype=np.float64))
