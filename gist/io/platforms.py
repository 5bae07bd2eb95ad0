"""Which reader a path needs: Xenium and Visium HD output folders, SpatialData stores, ``.h5ad``."""

from __future__ import annotations

from pathlib import Path

from anndata import AnnData

from gist.errors import GistInputError
from gist.io import read_h5ad, read_spatialdata, read_visium_hd, read_xenium

PLATFORMS = ("xenium", "visium_hd", "spatialdata", "h5ad")


def platform_of(path: str | Path) -> str:
    """``xenium`` (a folder with ``experiment.xenium``), ``visium_hd`` (a folder with
    ``binned_outputs/``), ``spatialdata`` (a zarr store: ``.zarr`` or holding ``zarr.json``/``.zgroup``)
    or ``h5ad`` (anything else: a file or folder of ``.h5ad``)."""
    path = Path(path)
    if path.is_dir():
        if (path / "experiment.xenium").is_file():
            return "xenium"
        if (path / "binned_outputs").is_dir():
            return "visium_hd"
        if path.suffix == ".zarr" or (path / "zarr.json").is_file() or (path / ".zgroup").is_file():
            return "spatialdata"
    return "h5ad"


def read_data(path: str | Path, *, image_path: str | Path | None = None, library_key: str | None = None,
              bin_size: int = 8, table_key: str | None = None, image_key: str | None = None) -> AnnData:
    """The data at ``path`` as one AnnData (``obs['sample']``), read by the reader its layout needs
    (:func:`platform_of`).

    Parameters
    ----------
    path
        A Xenium or Visium HD output folder, a SpatialData store or an ``.h5ad`` file.
    image_path
        ``.h5ad``: the tissue image; Visium HD: the full-resolution image.
    library_key
        ``.h5ad``: the obs column splitting the file into samples.
    bin_size
        Visium HD: the bin side in microns.
    table_key, image_key
        SpatialData: the table and image elements (for Xenium ``image_key`` picks
        ``morphology_focus``, ``morphology_mip`` or an aligned image).

    Returns
    -------
    AnnData
        The reader's AnnData.
    """
    kind = platform_of(path)
    if kind != "h5ad" and library_key is not None:
        raise GistInputError(f"--library_key applies to .h5ad input; {path} is a {kind} folder (one sample)")
    if kind == "xenium":
        if image_path is not None:
            raise GistInputError("--image does not apply to a Xenium folder: its morphology image is read from it "
                                 "(choose another of its images with --image_key)")
        return read_xenium(path, image_key=image_key or "morphology_focus")
    if kind == "visium_hd":
        return read_visium_hd(path, bin_size, fullres_image=image_path)
    if kind == "spatialdata":
        return read_spatialdata(path, table_key=table_key, image_key=image_key)
    return read_h5ad(path, image_path=image_path, library_key=library_key)
