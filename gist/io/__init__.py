"""Readers: each returns AnnData with raw counts in ``X``, ``obs['sample']``, pixel coordinates in
``obsm['spatial']`` and the image location in ``uns['spatial'][sample]``."""

from gist.io.cosmx import read_cosmx
from gist.io.h5ad import read_h5ad
from gist.io.image import get_image, image_coordinates, image_shape, read_image
from gist.io.visium import read_visium

__all__ = ["read_cosmx", "read_visium", "read_h5ad", "read_image", "image_shape", "get_image", "image_coordinates"]
