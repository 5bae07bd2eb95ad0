"""``he``: an H&E-aware descriptor per cell (no weights needed).

The RGB image is separated into its haematoxylin (nuclei) and eosin (cytoplasm, stroma) optical
densities by colour deconvolution (Ruifrok & Johnston 2001, the stain matrix of
``skimage.color.rgb2hed``). Each stain goes through the ``stats`` descriptor
(:func:`gist.pp.stats.patch_stats`: intensity statistics in a disk and two rings, gradient and
local-variance texture; 18 numbers per stain), and three numbers add the nuclear density: the share
of haematoxylin-positive pixels (above the image's Otsu threshold) in the disk and in each ring.
That is 39 numbers per cell.
"""

from __future__ import annotations

import numpy as np

from gist.errors import GistInputError
from gist.pp.stats import patch_stats, stats_feature_names

#: Stain vectors (rows: haematoxylin, eosin, DAB) in RGB optical density, as ``skimage.color``'s ``rgb_from_hed``.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
_ROWS = 1024  # image rows converted at a time (bounded float memory on large images)
#: ``stats`` columns of a one-channel image that hold the disk, inner-ring and outer-ring means.
_REGION_MEANS = [stats_feature_names(1).index(f"{region}_mean_c0") for region in ("disk", "ring1", "ring2")]


def rgb_to_hed(image: np.ndarray) -> np.ndarray:
    """Haematoxylin, eosin and DAB optical densities of an RGB image (``skimage.color.rgb2hed``).

    Parameters
    ----------
    image
        ``(height, width, 3)`` RGB, uint8 (scaled to [0, 1]) or float in [0, 1].

    Returns
    -------
    numpy.ndarray
        ``(height, width, 3)`` float32, non-negative.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise GistInputError(f"the 'he' descriptor needs an RGB H&E image (height, width, 3); got shape {image.shape}")
    scale = 1 / 255.0 if image.dtype == np.uint8 else 1.0
    out = np.empty(image.shape, np.float32)
    log_floor = np.log(1e-6)
    for start in range(0, image.shape[0], _ROWS):
        block = np.maximum(image[start:start + _ROWS].astype(np.float64) * scale, 1e-6)
        out[start:start + _ROWS] = np.maximum((np.log(block) / log_floor) @ HED_FROM_RGB, 0)
    return out


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of ``values`` (Otsu 1979); where
    several histogram edges tie (an empty gap between two groups), the middle of them."""
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    mass = np.cumsum(counts * centres)
    below, above = weight[:-1], weight[-1] - weight[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = mass[:-1] / below - (mass[-1] - mass[:-1]) / above
        between = below * above * gap ** 2
    between = np.nan_to_num(between)
    tied = between >= between.max() * (1 - 1e-9)  # an empty gap between the groups: its middle
    return float(edges[1:-1][tied].mean())


def he_feature_names() -> list[str]:
    """The 39 column names of :func:`patch_he`: the ``stats`` names per stain, then the nuclear densities."""
    stains = [name.replace("_c0", "_haematoxylin").replace("_c1", "_eosin") for name in stats_feature_names(2)]
    return stains + ["disk_nuclei", "ring1_nuclei", "ring2_nuclei"]


def patch_he(image: np.ndarray, coords: np.ndarray, patch_size: int = 240) -> np.ndarray:
    """The ``he`` descriptor of every cell.

    Parameters
    ----------
    image
        ``(height, width, 3)`` RGB H&E image, uint8 or float in [0, 1].
    coords
        ``(n, 2)`` (column, row) pixel positions.
    patch_size
        The window size the radii are scaled to (paper: 240 px), as for ``stats``.

    Returns
    -------
    numpy.ndarray
        ``(n, 39)`` float32, columns named by :func:`he_feature_names`.
    """
    hed = rgb_to_hed(image)
    stains = np.ascontiguousarray(hed[..., :2])
    nuclei = (hed[..., 0] > otsu_threshold(hed[..., 0][::4, ::4])).astype(np.float32)[..., None]
    density = patch_stats(nuclei, coords, patch_size)[:, _REGION_MEANS]
    return np.hstack([patch_stats(stains, coords, patch_size), density]).astype(np.float32)
