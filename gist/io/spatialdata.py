"""SpatialData input (``spatialdata``, the scverse format): one table and one image element.

:func:`read_spatialdata` turns a SpatialData object or zarr store into the AnnData the rest of the
pipeline takes: raw counts of the table in ``X``, each cell's position in ``obsm['spatial']`` as
pixel (column, row) of the chosen image's full-resolution level, and the image entry in
``uns['spatial'][sample]`` that ``extract_features.py`` reads. Positions come from the element the
table annotates (its centroids, as ``spatialdata.get_centroids`` gives them), taken into a shared
coordinate system and back into the image's pixels through the elements' coordinate
transformations, so a scaled, translated or rotated image lands on its cells. The Xenium and Visium
HD readers (:mod:`gist.io.xenium`, :mod:`gist.io.visium_hd`) go through the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from gist.errors import GistInputError
from gist.io._validate import check_coordinates
from gist.io.image import check_inside, spatial_entry
from gist.keys import LIBRARY_KEY, SPATIAL_KEY


def read_store(path: str | Path, selection: Sequence[str] | None = None):
    """A SpatialData zarr store (``spatialdata.read_zarr``), with one clear error when it is not one."""
    import spatialdata

    path = Path(path)
    if not path.exists():
        raise GistInputError(f"SpatialData store not found: {path} (expected a .zarr folder written by spatialdata)")
    try:
        return spatialdata.read_zarr(path, selection=tuple(selection) if selection else None)
    except Exception as err:  # zarr/ome-zarr raise many types for a folder that is not a store
        raise GistInputError(f"{path} is not a readable SpatialData store: {err}") from None


def image_array(element) -> np.ndarray:
    """An image element (single-scale ``DataArray`` or multiscale ``DataTree``) as a
    ``(height, width, channels)`` numpy array of its full-resolution level."""
    if hasattr(element, "children") and "scale0" in getattr(element, "children", {}):
        element = next(iter(element["scale0"].values()))
    return np.asarray(element.transpose("y", "x", "c").data)


def _image_size(element) -> tuple[int, int]:
    if hasattr(element, "children") and "scale0" in getattr(element, "children", {}):
        element = next(iter(element["scale0"].values()))
    return int(element.sizes["y"]), int(element.sizes["x"])


def _affine(element, coordinate_system: str) -> np.ndarray:
    """The 3 x 3 matrix taking an element's own (x, y) to ``coordinate_system``."""
    from spatialdata.transformations import get_transformation

    transformations = get_transformation(element, get_all=True)
    if coordinate_system not in transformations:
        raise GistInputError(f"element has no transformation to coordinate system {coordinate_system!r} "
                             f"(it has {sorted(transformations)})")
    return np.asarray(transformations[coordinate_system].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")),
                      dtype=np.float64)


def _choose(names: Sequence[str], wanted: str | None, preferred: Sequence[str], what: str, source: str) -> str:
    names = list(names)
    if wanted is not None:
        if wanted not in names:
            raise GistInputError(f"{source}: no {what} {wanted!r} (have {sorted(names)})")
        return wanted
    for name in preferred:
        if name in names:
            return name
    if len(names) == 1:
        return names[0]
    if not names:
        raise GistInputError(f"{source}: holds no {what}")
    raise GistInputError(f"{source}: holds several {what}s {sorted(names)}; choose one with {what.replace(' ', '_')}_key=")


def _counts(table: AnnData, layer: str | None, source: str) -> sp.csr_matrix:
    x = table.layers[layer] if layer else table.X
    if x is None:
        raise GistInputError(f"{source}: the table has no counts in {'layers[' + repr(layer) + ']' if layer else 'X'}")
    return sp.csr_matrix(x, dtype=np.float32)


def to_anndata(
    sdata,
    *,
    table_key: str | None = None,
    image_key: str | None = None,
    coordinate_system: str | None = None,
    sample: str = "sample",
    channels: Sequence[int] | None = None,
    counts_layer: str | None = None,
    image_path: str | Path | None = None,
    image_is_file: bool = False,
    source: str = "spatialdata",
    preferred_images: Sequence[str] = (),
    spot_diameter_px: float | None = None,
    what: str = "SpatialData",
    outside_hint: str = "",
) -> AnnData:
    """The pipeline's AnnData from a SpatialData object (see the module docstring).

    ``image_path`` names where the image can be read again lazily: an image file
    (``image_is_file``), or a zarr store or Xenium folder that holds the element; without it the
    image is kept in memory in ``uns['spatial'][sample]['images']``. ``spot_diameter_px``: a spot's
    diameter in image pixels (spot-based platforms), recorded so that the patch window fits a spot.
    ``outside_hint`` ends the error raised when cells fall outside the image (what to check).
    """
    import spatialdata

    table_key = _choose(list(sdata.tables), table_key, ("table",), "table", what)
    table = sdata.tables[table_key]
    attrs = table.uns.get("spatialdata_attrs", {})
    region, region_key, instance_key = attrs.get("region"), attrs.get("region_key"), attrs.get("instance_key")
    regions = [region] if isinstance(region, str) else list(region or [])
    if len(regions) != 1:
        raise GistInputError(f"{what}: table {table_key!r} must annotate exactly one element, it annotates {regions}")
    region = regions[0]
    try:
        annotated = sdata[region]
    except KeyError:
        raise GistInputError(f"{what}: table {table_key!r} annotates {region!r}, which the data do not hold") from None
    image_key = _choose(list(sdata.images), image_key, preferred_images, "image", what)
    image = sdata.images[image_key]
    systems = set(_transformations(image)) & set(_transformations(annotated))
    if coordinate_system is None:
        if not systems:
            raise GistInputError(f"{what}: image {image_key!r} and element {region!r} share no coordinate system")
        coordinate_system = "global" if "global" in systems else sorted(systems)[0]
    centroids = spatialdata.get_centroids(annotated, coordinate_system=coordinate_system)
    centroids = centroids.compute() if hasattr(centroids, "compute") else centroids
    ids = table.obs[instance_key].to_numpy()
    try:
        xy = centroids.loc[ids, ["x", "y"]].to_numpy(dtype=np.float64)
    except KeyError:
        raise GistInputError(f"{what}: some cells of table {table_key!r} are not in element {region!r}") from None
    to_pixels = np.linalg.inv(_affine(image, coordinate_system))
    pixels = (np.c_[xy, np.ones(len(xy))] @ to_pixels.T)[:, :2]
    height, width = _image_size(image)
    check_inside(pixels, (height, width), sample, outside_hint or f"check the coordinate transformations of {what}")

    adata = AnnData(X=_counts(table, counts_layer, what), obs=pd.DataFrame(index=table.obs_names.astype(str)),
                    var=pd.DataFrame(index=table.var_names.astype(str)))
    keep = [c for c in table.obs.columns if c not in (region_key, instance_key)]
    adata.obs = table.obs[keep].copy().set_index(adata.obs_names)
    adata.obs[LIBRARY_KEY] = pd.Categorical([sample] * adata.n_obs)
    adata.var_names_make_unique()
    check_coordinates(pixels, f"{what} cell positions", adata.obs_names)
    adata.obsm[SPATIAL_KEY] = pixels
    adata.obsm[f"spatial_{coordinate_system}"] = xy
    entry: dict[str, Any] = spatial_entry(source=source, image_path=image_path, image_shape=(height, width),
                                          image_scalef=1.0, spot_diameter_fullres=spot_diameter_px)
    if image_path is None:
        entry["images"] = {"fullres": image_array(image)}
    elif not image_is_file:
        entry["metadata"]["image_element"] = image_key
    if channels is not None:
        entry["metadata"]["image_channels"] = [int(c) for c in channels]
    entry["metadata"]["coordinate_system"] = coordinate_system
    adata.uns["spatial"] = {sample: entry}
    return adata


def _transformations(element) -> dict:
    from spatialdata.transformations import get_transformation

    return get_transformation(element, get_all=True)


def read_spatialdata(
    sdata,
    *,
    table_key: str | None = None,
    image_key: str | None = None,
    coordinate_system: str | None = None,
    sample: str | None = None,
    channels: Sequence[int] | None = None,
    counts_layer: str | None = None,
) -> AnnData:
    """Read a SpatialData object or zarr store as one sample.

    Parameters
    ----------
    sdata
        A ``spatialdata.SpatialData`` or the path of a ``.zarr`` store.
    table_key
        The table of counts (default: ``'table'``, or the only one).
    image_key
        The image patches are cut from (default: the only one).
    coordinate_system
        Where cells and image meet (default: ``'global'`` when both have it).
    sample
        Sample name (default: the store's folder name, else ``'sample'``).
    channels
        Image channels drawn as red, green, blue (default: the first three of a multi-channel image).
    counts_layer
        Layer of the table holding raw counts (default: ``X``).

    Returns
    -------
    AnnData
        Raw counts in ``X``; ``obsm['spatial']`` in pixels of the image's full resolution;
        ``obsm['spatial_<coordinate_system>']``; ``obs['sample']``; ``uns['spatial'][sample]`` (a
        store's image is read again from the store when features are extracted).
    """
    path = None
    if isinstance(sdata, (str, Path)):
        path = Path(sdata)
        sdata = read_store(path)
    elif getattr(sdata, "path", None) is not None and Path(sdata.path).exists():
        path = Path(sdata.path)
    name = sample or (path.stem if path is not None else "sample")
    return to_anndata(sdata, table_key=table_key, image_key=image_key, coordinate_system=coordinate_system,
                      sample=name, channels=channels, counts_layer=counts_layer,
                      image_path=None if path is None else path.resolve(), source="spatialdata",
                      what=f"SpatialData {path}" if path is not None else "SpatialData")
