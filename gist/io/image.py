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

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile
from anndata import AnnData
from PIL import Image

from gist.errors import GistInputError
from gist.keys import LIBRARY_KEY, SPATIAL_KEY

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
    except Exception as err:  # PIL raises many types (ValueError, SyntaxError, ...) for damaged headers
        raise GistInputError(f"image {path} is unreadable: {err} (expected a JPEG, PNG or TIFF image)") from None
    return int(height), int(width)


def tiff_shape(path: str | Path, what: str = "image") -> tuple[int, int]:
    """``(height, width)`` of a TIFF's full-resolution level (OME-TIFF stacks, pyramids and BigTIFF
    mosaics too large for PIL), reading only its header."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            level = tif.series[0].levels[0]
            return int(level.shape[level.axes.index("Y")]), int(level.shape[level.axes.index("X")])
    except Exception as err:  # tifffile raises many types for a damaged file
        raise GistInputError(f"{what} {path} is unreadable: {type(err).__name__}: {err} (expected a TIFF image)") from None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an RGB ``uint8`` array of shape ``(height, width, 3)``.

    Grayscale images are repeated into three channels, an alpha channel is dropped, 16-bit and
    float images are scaled to 0-255 by their maximum, and a multi-page TIFF gives its first page
    (with a warning).

    Raises
    ------
    GistInputError
        If the file is missing or cannot be decoded.
    """
    return to_rgb8(read_image_raw(path), str(path))


def read_image_raw(path: str | Path) -> np.ndarray:
    """An image file as stored: ``(height, width)`` or ``(height, width, channels)`` in its own pixel
    type (a TIFF's first page, channels moved last); :func:`read_image` makes it RGB ``uint8``."""
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f"image not found: {path} (expected an existing image file)")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            image = _read_tiff(path)
        else:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is not None and image.ndim == 3:
                image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            if image is None:
                with Image.open(path) as img:
                    image = np.asarray(img)
    except GistInputError:
        raise
    except Exception as err:  # decoders raise many types for damaged files
        raise GistInputError(f"image {path} is unreadable: {err} (expected a JPEG, PNG or TIFF image)") from None
    return image


def _read_tiff(path: Path) -> np.ndarray:

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        if "C" in series.axes:
            # a multi-channel stack (OME-TIFF of fluorescence channels): its full-resolution level
            level = series.levels[0]
            image = level.asarray()
            axes = level.axes
            for axis in [a for a in axes if a not in "CYX"]:  # Z, T, ...: the first plane
                image = np.take(image, 0, axis=axes.index(axis))
                axes = axes.replace(axis, "")
            return np.moveaxis(image, axes.index("C"), -1)
        pages = len(tif.pages)
        image = tif.pages[0].asarray()
    if pages > 1:
        warnings.warn(f"image {path} is a multi-page TIFF ({pages} pages); using the first page", stacklevel=3)
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] not in (1, 3, 4):
        image = np.moveaxis(image, 0, -1)  # channels first (some microscopy exports)
    return image


def select_channels(image: np.ndarray, channels: Sequence[int] | None, source: str = "image") -> np.ndarray:
    """A multi-channel image (``(height, width, channels)``, e.g. a fluorescence morphology stack) as
    an RGB ``uint8`` image of up to three of its channels.

    ``channels`` lists the channel indices drawn as red, green and blue (one index: grayscale; two:
    red and green). ``None`` keeps a 1-, 3- or 4-channel image as it is (:func:`to_rgb8`) and takes
    the first three channels of any other (e.g. DAPI, boundary, interior stain of a Xenium
    morphology image). Each chosen channel of a non-``uint8`` image is scaled to 0-255 by its own
    range, since stains differ in brightness.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    n = image.shape[2] if image.ndim == 3 else 0
    if channels is None:
        if n in (1, 3, 4):
            return to_rgb8(image, source)
        channels = list(range(min(3, n)))
    channels = [int(c) for c in channels]
    if not 1 <= len(channels) <= 3:
        raise GistInputError(f"{source}: choose 1 to 3 image channels, got {channels}")
    bad = [c for c in channels if not 0 <= c < n]
    if bad:
        raise GistInputError(f"{source}: channel(s) {bad} do not exist; the image has {n} channel(s) (0..{n - 1})")
    planes = [to_rgb8(image[..., c], f"{source} channel {c}")[..., 0] for c in channels]
    if len(planes) == 1:
        planes = planes * 3
    while len(planes) < 3:
        planes.append(np.zeros_like(planes[0]))
    return np.ascontiguousarray(np.stack(planes, axis=-1))


def read_store_image(path: str | Path, element: str) -> np.ndarray:
    """The full-resolution ``(height, width, channels)`` array of an image element of a SpatialData
    zarr store, or of a 10x Xenium output folder (read with ``spatialdata-io``)."""
    path = Path(path)
    if (path / "experiment.xenium").is_file():
        from gist.io.xenium import xenium_images

        images = xenium_images(path, element)
    else:
        from gist.io.spatialdata import read_store

        images = read_store(path, selection=("images",)).images
    if element not in images:
        raise GistInputError(f"{path}: no image element {element!r} (have {sorted(images)})")
    from gist.io.spatialdata import image_array

    return image_array(images[element])


def to_rgb8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Any 2-D grayscale, RGB or RGBA array (uint8, uint16, float) as RGB ``uint8``."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.size == 0:
        raise GistInputError(f"{source}: image of shape {image.shape} is not supported (expected grayscale, RGB or RGBA)")
    image = image[..., :3]
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise GistInputError(f"{source}: image pixels of type {image.dtype} are not supported")
    values = image.astype(np.float64)
    if not np.isfinite(values).all():
        raise GistInputError(f"{source}: image holds NaN or infinite pixels")
    low = min(values.min(), 0.0)
    high = values.max()
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.ascontiguousarray(((values - low) * scale).round().astype(np.uint8))


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
        present = adata.obs[LIBRARY_KEY].astype(str).unique() if LIBRARY_KEY in adata.obs else []
        if len(spatial) == 1:
            sample = next(iter(spatial))
        elif len(present) == 1 and present[0] in spatial:  # one sample's cells, every sample's images
            sample = str(present[0])
        else:
            raise GistInputError(f"AnnData holds several samples {sorted(spatial)}; pass sample=")
    if sample not in spatial:
        raise GistInputError(f"sample {sample!r} not in uns['spatial'] (have {sorted(spatial)})")
    return sample, spatial[sample]


def get_image(adata: AnnData, sample: str | None = None, channels: Sequence[int] | None = None) -> np.ndarray:
    """Return a sample's image as RGB ``uint8``: the in-memory copy if present, else read from
    ``metadata['image_path']`` (an image file, or with ``metadata['image_element']`` an element of a
    SpatialData store or Xenium folder). ``channels`` (default: ``metadata['image_channels']``)
    chooses the channels of a multi-channel image (:func:`select_channels`)."""
    sample, entry = _entry(adata, sample)
    metadata = entry.get("metadata", {})
    if channels is None and metadata.get("image_channels") is not None:
        channels = list(np.atleast_1d(metadata["image_channels"]).astype(int))
    images = entry.get("images", {})
    if images:
        image = np.asarray(images.get("fullres", next(iter(images.values()))))
        return image if channels is None and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 \
            else select_channels(image, channels, f"sample {sample!r}")
    path = metadata.get("image_path")
    if path is None:
        raise GistInputError(f"sample {sample!r} has no image (no uns['spatial'][{sample!r}]['metadata']['image_path'])")
    element = metadata.get("image_element")
    if element:
        return select_channels(read_store_image(path, str(element)), channels, f"{path}:{element}")
    return select_channels(read_image_raw(path), channels, str(path))


def image_coordinates(adata: AnnData, sample: str | None = None) -> np.ndarray:
    """``obsm['spatial']`` scaled to pixel positions (column, row) in the sample's image."""
    _, entry = _entry(adata, sample)
    scale = float(entry.get("metadata", {}).get("image_scalef", 1.0))
    return np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64) * scale


def check_inside(coords: np.ndarray, shape: tuple[int, ...], sample: str,
                 hint: str = "check --image, the image's scale factor and --flip_y") -> None:
    """Refuse cells whose centre lies outside the image: their patches would be padding only, which
    means the coordinates do not belong to this image (wrong file, scale factor, pixel size or y
    direction). ``hint`` ends the message: what to check."""
    coords = np.asarray(coords)
    outside = (coords[:, 0] < 0) | (coords[:, 1] < 0) | (coords[:, 0] >= shape[1]) | (coords[:, 1] >= shape[0])
    if outside.any():
        raise GistInputError(
            f"sample {sample!r}: {int(outside.sum())} of {len(coords)} cell(s) lie outside the {shape[1]} x {shape[0]} px "
            f"image (first at column, row {coords[outside][0].round(1).tolist()}); expected pixel positions inside it: "
            f"{hint}"
        )
