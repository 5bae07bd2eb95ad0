"""Readers: each returns one AnnData with raw counts in ``X``, the sample of each cell in
``obs['sample']``, pixel coordinates in ``obsm['spatial']`` and each sample's image in
``uns['spatial'][sample]``. ``read_cosmx_fovs`` / ``read_h5ad_samples`` give one AnnData per sample."""

from gist.io.cosmx import read_cosmx, read_cosmx_fovs
from gist.io.h5ad import read_h5ad, read_h5ad_samples
from gist.io.image import get_image, image_coordinates, image_shape, read_image
from gist.io.spatialdata import read_spatialdata
from gist.io.visium import read_visium
from gist.io.visium_hd import read_visium_hd
from gist.io.xenium import read_xenium

__all__ = ["read_cosmx", "read_cosmx_fovs", "read_visium", "read_visium_hd", "read_xenium", "read_spatialdata", "read_h5ad", "read_h5ad_samples", "read_image",
           "image_shape", "get_image", "image_coordinates"]
