"""Per-cell image patches: centred, full-size windows at every edge.

The paper crops a 240 x 240 px window around each cell of the CosMx composite, resizes it to
224 x 224 and scales RGB to [0, 1]. The original shrinks the window near the top/left border and
silently truncates it at the bottom/right; here every patch is centred and full size, the part
outside the image filled by padding (``reflect`` or ``constant`` zeros). A cell whose centre lies
outside the image is refused before any patch is cut (:func:`gist.io.image.check_inside`): its
window would be padding only, so the coordinates do not belong to the image.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

PAD_MODES = ("reflect", "constant")


def crop_patch(image: np.ndarray, col: float, row: float, size: int, pad: str = "reflect") -> np.ndarray:
    """A ``size`` x ``size`` window centred on (col, row), padded where it leaves the image.

    Parameters
    ----------
    image
        ``(height, width, channels)`` array.
    col, row
        Centre in pixels.
    size
        Window side in pixels.
    pad
        ``'reflect'`` mirrors the image at its border; ``'constant'`` fills with zeros. A window
        entirely outside the image is all zeros.
    """
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    height, width = image.shape[:2]
    x0 = int(round(col)) - size // 2
    y0 = int(round(row)) - size // 2
    x1, y1 = x0 + size, y0 + size
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx0 >= cx1 or cy0 >= cy1:
        return np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    crop = image[cy0:cy1, cx0:cx1]
    widths = ((cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1)) + ((0, 0),) * (image.ndim - 2)
    if any(w for pair in widths for w in pair):
        crop = np.pad(crop, widths, mode=pad)
    return crop


class PatchDataset(Dataset):
    """Patches of one image around each cell, as float tensors ``(3, out_size, out_size)`` in [0, 1].

    Parameters
    ----------
    image
        ``(height, width, 3)`` uint8 RGB image.
    coords
        ``(n, 2)`` (column, row) pixel positions.
    patch_size
        Window side before resizing (paper: 240).
    out_size
        Side after resizing (224 for the ViT extractors).
    pad
        Padding mode at the image border.
    """

    def __init__(self, image: np.ndarray, coords: np.ndarray, patch_size: int = 240, out_size: int = 224,
                 pad: str = "reflect") -> None:
        self.image = image
        self.coords = np.asarray(coords, dtype=np.float64)
        self.patch_size, self.out_size, self.pad = int(patch_size), int(out_size), pad

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, i: int) -> torch.Tensor:
        col, row = self.coords[i]
        patch = crop_patch(self.image, col, row, self.patch_size, self.pad)
        if patch.shape[0] != self.out_size:
            patch = cv2.resize(patch, (self.out_size, self.out_size), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float().div_(255.0)


class DevicePatches:
    """The patches of :class:`PatchDataset`, cut and resized on ``device`` a batch at a time.

    The image is decoded once, padded once (by half a window, so every window is a plain slice)
    and uploaded once; each batch of windows is gathered with one indexing operation and resized
    with bilinear interpolation (half-pixel centres, as ``cv2.INTER_LINEAR``) on the device. On a
    GPU this removes the per-patch CPU crop and resize that bounds :class:`PatchDataset`.
    """

    def __init__(self, image: np.ndarray, coords: np.ndarray, patch_size: int = 240, out_size: int = 224,
                 pad: str = "reflect", device: torch.device | str = "cpu") -> None:
        if pad not in PAD_MODES:
            raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
        self.coords = np.asarray(coords, dtype=np.float64)
        self.patch_size, self.out_size, self.device = int(patch_size), int(out_size), torch.device(device)
        margin = self.patch_size // 2 + 1
        widths = ((margin, margin), (margin, margin)) + ((0, 0),) * (image.ndim - 2)
        padded = np.pad(image, widths, mode=pad)
        self.margin = margin
        self.image = torch.from_numpy(np.ascontiguousarray(padded)).to(self.device)

    def __len__(self) -> int:
        return len(self.coords)

    def batch(self, start: int, stop: int) -> torch.Tensor:
        """Patches ``start:stop`` as ``(n, 3, out_size, out_size)`` float32 in [0, 1] on the device."""
        size = self.patch_size
        xy = torch.as_tensor(np.rint(self.coords[start:stop]).astype(np.int64) - size // 2 + self.margin, device=self.device)
        offsets = torch.arange(size, device=self.device)
        rows = (xy[:, 1:2] + offsets)[:, :, None]  # (n, size, 1)
        cols = (xy[:, 0:1] + offsets)[:, None, :]  # (n, 1, size)
        patches = self.image[rows, cols].permute(0, 3, 1, 2).float().div_(255.0)  # (n, 3, size, size)
        if size != self.out_size:
            patches = torch.nn.functional.interpolate(patches, size=(self.out_size, self.out_size), mode="bilinear",
                                                      align_corners=False)
        return patches

    def batches(self, batch_size: int):
        """Every patch, ``batch_size`` at a time, in order."""
        for start in range(0, len(self), batch_size):
            yield self.batch(start, min(start + batch_size, len(self)))
