"""Readers: each returns one AnnData with raw counts in ``X``, the sample of each cell in
``obs['sample']``, pixel coordinates in ``obsm['spatial']`` and each sample's image in
``uns['spatial'][sample]`` (:mod:`gist.io.samples` splits it into samples where one is needed)."""

from gist.io.cosmx import read_cosmx
from gist.io.h5ad import read_h5ad
from gist.io.image import get_image, image_coordinates, image_shape, read_image
from gist.io.merscope import read_merscope
from gist.io.spatialdata import read_spatialdata
from gist.io.visium import read_visium
from gist.io.visium_hd import read_visium_hd
from gist.io.xenium import read_xenium

__all__ = ["read_cosmx", "read_merscope", "read_visium", "read_visium_hd", "read_xenium", "read_spatialdata",
           "read_h5ad", "read_image", "image_shape", "get_image", "image_coordinates"]
