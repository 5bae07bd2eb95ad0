"""``stats``: a fast handcrafted morphology descriptor per cell (no weights needed).

For each cell, per channel: intensity mean, sd and the 10/50/90 % quantiles (nearest rank) in a disk at the
cell centre and in two rings around it, plus texture - mean gradient magnitude (Sobel) in the
disk and the inner ring, and mean local variance (5 x 5 window) in the disk. That is 18
numbers per channel (54 for RGB). Radii scale with the patch size (disk 6 px, rings to 14 and
30 px at the paper's 240 px window). Edge cells are handled by reflect padding.
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from gist.io.image import get_image, image_coordinates
from gist.keys import IMG_KEY

QUANTILES = (0.1, 0.5, 0.9)
_CHUNK = 1024


def _radii(patch_size: int) -> tuple[int, int, int]:
    scale = patch_size / 240.0
    return max(1, round(6 * scale)), max(2, round(14 * scale)), max(3, round(30 * scale))


def _box5(a: np.ndarray) -> np.ndarray:
    """Sum over 5 x 5 windows of a (cells, S, S) stack -> (cells, S - 4, S - 4)."""
    c = np.cumsum(np.cumsum(a, axis=1), axis=2)
    c = np.pad(c, ((0, 0), (1, 0), (1, 0)))
    return c[:, 5:, 5:] - c[:, :-5, 5:] - c[:, 5:, :-5] + c[:, :-5, :-5]


def _texture(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel gradient magnitude and 5 x 5 local variance of (cells, S, S) windows, both cropped to
    the central (S - 4) x (S - 4) pixels."""
    a = window
    gx = (a[:, :-2, 2:] + 2 * a[:, 1:-1, 2:] + a[:, 2:, 2:]) - (a[:, :-2, :-2] + 2 * a[:, 1:-1, :-2] + a[:, 2:, :-2])
    gy = (a[:, 2:, :-2] + 2 * a[:, 2:, 1:-1] + a[:, 2:, 2:]) - (a[:, :-2, :-2] + 2 * a[:, :-2, 1:-1] + a[:, :-2, 2:])
    grad = np.hypot(gx, gy)[:, 1:-1, 1:-1]
    mean = _box5(a) / 25.0
    var = np.maximum(_box5(a * a) / 25.0 - mean * mean, 0)
    return grad, var


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """Mirror indices into ``[0, size)`` as ``np.pad(mode='reflect')`` does (edge not repeated)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.abs(index) % period
    return np.where(index >= size, period - index, index)


def stats_feature_names(channels: int = 3) -> list[str]:
    names = []
    for region in ("disk", "ring1", "ring2"):
        for stat in ("mean", "sd", *(f"q{int(q * 100)}" for q in QUANTILES)):
            names += [f"{region}_{stat}_c{c}" for c in range(channels)]
    for name in ("disk_grad", "ring1_grad", "disk_localvar"):
        names += [f"{name}_c{c}" for c in range(channels)]
    return names


def patch_stats(image: np.ndarray, coords: np.ndarray, patch_size: int = 240) -> np.ndarray:
    """The ``stats`` descriptor of every cell.

    Parameters
    ----------
    image
        ``(height, width, channels)`` image, uint8 (scaled to [0, 1]) or float.
    coords
        ``(n, 2)`` (column, row) pixel positions; cells outside the image use the nearest border pixel.
    patch_size
        The window size the radii are scaled to (paper: 240 px).

    Returns
    -------
    numpy.ndarray
        ``(n, 18 * channels)`` float32, columns named by :func:`stats_feature_names`.
        The outer ring is sampled on a checkerboard and quantiles use every second pixel.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    scale = np.float32(1 / 255.0 if image.dtype == np.uint8 else 1.0)
    image = np.ascontiguousarray(image)
    flat = image.reshape(-1)  # no copy: pixels are gathered straight from the image
    height, width, channels = image.shape
    r1, r2, r3 = _radii(patch_size)
    # Pixel offsets within r3, sorted so that each region is one contiguous block; the outer ring
    # is sampled on a checkerboard (half its pixels) to keep the descriptor fast.
    dy, dx = (a.ravel() for a in np.mgrid[-r3 : r3 + 1, -r3 : r3 + 1])
    dist = np.hypot(dy, dx)
    region = np.select([dist <= r1, dist <= r2, (dist <= r3) & ((dy + dx) % 2 == 0)], [0, 1, 2], default=3)
    order = np.argsort(region, kind="stable")
    order = order[region[order] < 3]
    bounds = np.searchsorted(region[order], [0, 1, 2, 3])
    off_y, off_x = dy[order], dx[order]
    # texture is computed on a square window around the cell (2 px margin for Sobel / 5x5 box)
    half = r2 + 2
    wy, wx = (a.ravel() for a in np.mgrid[-half : half + 1, -half : half + 1])
    inner = (np.hypot(wy, wx) <= r2).reshape(2 * half + 1, 2 * half + 1)[2:-2, 2:-2]
    disk = (np.hypot(wy, wx) <= r1).reshape(2 * half + 1, 2 * half + 1)[2:-2, 2:-2]
    ring1 = inner & ~disk
    centre = np.round(np.asarray(coords, dtype=np.float64)).astype(np.int64)
    col = np.clip(centre[:, 0], 0, width - 1)
    row = np.clip(centre[:, 1], 0, height - 1)
    n = len(centre)
    # columns: [region][stat][channel] for the 5 intensity stats, then grad disk, grad ring1, local var
    out = np.empty((n, 18, channels), np.float32)
    for start in range(0, n, _CHUNK):
        sl = slice(start, start + _CHUNK)
        idx = (_reflect(row[sl, None] + off_y, height) * width + _reflect(col[sl, None] + off_x, width)) * channels
        widx = (_reflect(row[sl, None] + wy, height) * width + _reflect(col[sl, None] + wx, width)) * channels
        for c in range(channels):
            values = flat[idx + c].astype(np.float32) * scale  # (cells, pixels)
            for r, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
                block = values[:, lo:hi]
                mean = block.mean(1)
                out[sl, 5 * r, c] = mean
                out[sl, 5 * r + 1, c] = np.sqrt(np.maximum((block * block).mean(1) - mean * mean, 0))
                sub = block[:, ::2]  # quantiles on every second pixel (nearest rank)
                kth = [int(round(q * (sub.shape[1] - 1))) for q in QUANTILES]
                out[sl, 5 * r + 2 : 5 * r + 5, c] = np.partition(sub, kth, axis=1)[:, kth]
            window = (flat[widx + c].astype(np.float32) * scale).reshape(-1, 2 * half + 1, 2 * half + 1)
            grad, var = _texture(window)
            out[sl, 15, c] = grad[:, disk].mean(1)
            out[sl, 16, c] = grad[:, ring1].mean(1)
            out[sl, 17, c] = var[:, disk].mean(1)
    return out.reshape(n, 18 * channels)


def add_patch_stats(adata: AnnData, key: str = IMG_KEY, patch_size: int = 240) -> AnnData:
    """Compute :func:`patch_stats` from the sample's image into ``obsm[key]`` (in place)."""
    adata.obsm[key] = patch_stats(get_image(adata), image_coordinates(adata), patch_size)
    return adata
