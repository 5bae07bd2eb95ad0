"""Tissue images: reading them and recording where they are (``uns['spatial']``).

Every reader stores, per sample, the scanpy/squidpy layout::

    adata.uns['spatial'][sample] = {
        'images': {...},            # in-memory images (only the demo fills this)
        'scalefactors': {'tissue_hires_scalef': ..., 'spot_diameter_fullres': ...},
        'metadata': {'image_path': str, 'image_shape': [h, w, c],
                     'image_scalef': float, 'source': str},
    }

``metadata['image_scalef']`` maps ``obsm['spatial']`` to pixels of the image at
``metadata['image_path']``: ``pixel = obsm['spatial'] * image_scalef`` (1.0 for CosMx and for
full-resolution Visium images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from anndata import AnnData
from PIL import Image, UnidentifiedImageError

from gist.errors import GistInputError

Image.MAX_IMAGE_PIXELS = None  # whole-slide H&E images exceed PIL's decompression-bomb guard


def image_shape(path: str | Path) -> tuple[int, int]:
    """Return ``(height, width)`` of an image file, reading only its header.

    Raises
    ------
    GistInputError
        If the file is missing or is not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f"image not found: {path} (expected an existing image file)")
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError) as err:
        raise GistInputError(f"image {path} is unreadable: {err} (expected a JPEG, PNG or TIFF image)") from None
    return int(height), int(width)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an RGB ``uint8`` array of shape ``(height, width, 3)``.

    Raises
    ------
    GistInputError
        If the file is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f"image not found: {path} (expected an existing image file)")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        try:
            with Image.open(path) as img:
                image = np.asarray(img.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise GistInputError(
                f"image {path} is unreadable: {err} (expected a JPEG, PNG or TIFF image)"
            ) from None
        return np.ascontiguousarray(image)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def spatial_entry(
    *,
    source: str,
    image_path: str | Path | None = None,
    image_shape: tuple[int, ...] | None = None,
    image_scalef: float = 1.0,
    spot_diameter_fullres: float | None = None,
    images: dict[str, np.ndarray] | None = None,
    scalefactors: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Build one sample's ``uns['spatial']`` entry (see the module docstring)."""
    factors = {"tissue_hires_scalef": float(image_scalef)}
    if spot_diameter_fullres is not None:
        factors["spot_diameter_fullres"] = float(spot_diameter_fullres)
    factors.update(scalefactors or {})
    metadata: dict[str, Any] = {"source": source, "image_scalef": float(image_scalef)}
    if image_path is not None:
        metadata["image_path"] = str(image_path)
    if image_shape is not None:
        metadata["image_shape"] = [int(s) for s in image_shape]
    return {"images": dict(images or {}), "scalefactors": factors, "metadata": metadata}


def _entry(adata: AnnData, sample: str | None) -> tuple[str, dict[str, Any]]:
    spatial = adata.uns.get("spatial", {})
    if not spatial:
        raise GistInputError("AnnData has no uns['spatial'] entry; read it with a gist.io reader")
    if sample is None:
        if len(spatial) != 1:
            raise GistInputError(f"AnnData holds several samples {sorted(spatial)}; pass sample=")
        sample = next(iter(spatial))
    if sample not in spatial:
        raise GistInputError(f"sample {sample!r} not in uns['spatial'] (have {sorted(spatial)})")
    return sample, spatial[sample]


def get_image(adata: AnnData, sample: str | None = None) -> np.ndarray:
    """Return a sample's image: the in-memory copy if present, else read from ``image_path``."""
    sample, entry = _entry(adata, sample)
    images = entry.get("images", {})
    if images:
        return np.asarray(images.get("fullres", next(iter(images.values()))))
    path = entry.get("metadata", {}).get("image_path")
    if path is None:
        raise GistInputError(f"sample {sample!r} has no image (no uns['spatial'][{sample!r}]['metadata']['image_path'])")
    return read_image(path)


def image_coordinates(adata: AnnData, sample: str | None = None) -> np.ndarray:
    """``obsm['spatial']`` scaled to pixel positions (column, row) in the sample's image."""
    _, entry = _entry(adata, sample)
    scale = float(entry.get("metadata", {}).get("image_scalef", 1.0))
    return np.asarray(adata.obsm["spatial"], dtype=np.float64) * scale
