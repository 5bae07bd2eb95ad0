import numpy as np
import pytest

from gist.errors import GistInputError
from gist.pp.he import he_feature_names, otsu_threshold, patch_he, rgb_to_hed

HAEMATOXYLIN = np.array([70, 50, 140], np.uint8)  # dark purple nuclei
EOSIN = np.array([235, 150, 200], np.uint8)  # pink stroma


def _tissue(seed=0):
    """Left half: nuclei (purple dots) packed on pink; right half: pink stroma with few nuclei."""
    rng = np.random.default_rng(seed)
    image = np.tile(EOSIN, (200, 400, 1))
    yy, xx = np.mgrid[:200, :400]
    for density, x0 in ((0.004, 0), (0.0003, 200)):
        for _ in range(int(density * 200 * 200)):
            cy, cx = rng.integers(0, 200), rng.integers(x0, x0 + 200)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = HAEMATOXYLIN
    return image


def test_rgb_to_hed_matches_scikit_image():
    color = pytest.importorskip("skimage.color")
    image = np.random.default_rng(1).integers(0, 256, (37, 23, 3)).astype(np.uint8)
    np.testing.assert_allclose(rgb_to_hed(image), color.rgb2hed(image), rtol=1e-4, atol=1e-6)


def test_otsu_splits_two_groups():
    values = np.r_[np.full(100, 0.1), np.full(50, 0.9)] + np.random.default_rng(0).normal(0, 0.01, 150)
    assert 0.15 < otsu_threshold(values) < 0.85


def test_nuclear_density_and_stains_follow_the_tissue():
    image = _tissue()
    left = np.column_stack([np.arange(30, 170, 20), np.full(7, 100)])
    right = left + [200, 0]
    features = patch_he(image, np.vstack([left, right]), patch_size=240)
    names = he_feature_names()
    assert features.shape == (14, len(names)) == (14, 39) and features.dtype == np.float32
    nuclei = features[:, names.index("ring2_nuclei")]
    assert nuclei[:7].min() > nuclei[7:].max()  # the packed half has more nuclei around every cell
    haem = features[:, names.index("ring2_mean_haematoxylin")]
    assert haem[:7].mean() > 2 * haem[7:].mean()


def test_he_needs_an_rgb_image():
    with pytest.raises(GistInputError, match="RGB"):
        patch_he(np.zeros((50, 50, 2), np.uint16), np.array([[10, 10]]))
