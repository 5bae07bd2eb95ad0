"""Which reader a path needs: Xenium, Visium, Visium HD, CosMx and MERSCOPE output folders, SpatialData
stores, ``.h5ad``."""

from __future__ import annotations

from pathlib import Path

from anndata import AnnData

from gist.errors import GistInputError
from gist.io import read_cosmx, read_h5ad, read_merscope, read_spatialdata, read_visium, read_visium_hd, read_xenium
from gist.io.visium_hd import bin_folder_size

PLATFORMS = ("xenium", "visium", "visium_hd", "cosmx", "merscope", "spatialdata", "h5ad")


def _holds(path: Path, *patterns: str) -> bool:
    return any(next(path.glob(pattern), None) is not None for pattern in patterns)


def platform_of(path: str | Path) -> str:
    """The platform of ``path`` (one of :data:`PLATFORMS`), from the files it holds: ``xenium``
    (``experiment.xenium``), ``visium_hd`` (``binned_outputs/``, or a ``square_<bin>um/`` folder
    with ``spatial/``), ``spatialdata`` (a zarr store: ``.zarr`` or holding ``zarr.json``/``.zgroup``),
    ``cosmx`` (``*exprMat_file.csv`` or ``*metadata_file.csv``), ``merscope`` (``*cell_by_gene.csv``
    or ``*cell_metadata.csv``), ``visium`` (``spatial/``) or ``h5ad`` (anything else: a file or
    folder of ``.h5ad``). A folder lacking one of its platform's files is still told apart, so that
    its reader names the missing file."""
    path = Path(path)
    if path.is_dir():
        if (path / "experiment.xenium").is_file():
            return "xenium"
        if (path / "binned_outputs").is_dir() or bin_folder_size(path) is not None:
            return "visium_hd"
        if path.suffix == ".zarr" or (path / "zarr.json").is_file() or (path / ".zgroup").is_file():
            return "spatialdata"
        if _holds(path, "*exprMat_file.csv", "*metadata_file.csv"):
            return "cosmx"
        if _holds(path, "*cell_by_gene.csv", "*cell_metadata.csv"):
            return "merscope"
        if (path / "spatial").is_dir():
            return "visium"
    return "h5ad"


def read_data(path: str | Path, *, platform: str | None = None, image_path: str | Path | None = None,
              library_key: str | None = None, bin_size: int | None = None, table_key: str | None = None,
              image_key: str | None = None) -> AnnData:
    """The data at ``path`` as one AnnData (``obs['sample']``), read by the reader its layout needs
    (:func:`platform_of`).

    Parameters
    ----------
    path
        A Xenium, Visium, Visium HD, CosMx or MERSCOPE output folder, a SpatialData store or an
        ``.h5ad`` file.
    platform
        One of :data:`PLATFORMS` (default: :func:`platform_of`).
    image_path
        ``.h5ad``: the tissue image; Visium, Visium HD: the full-resolution image.
    library_key
        ``.h5ad``: the obs column splitting the file into samples.
    bin_size
        Visium HD: the bin side in microns (default: 8, or the bin folder's).
    table_key, image_key
        SpatialData: the table and image elements (for Xenium ``image_key`` picks
        ``morphology_focus``, ``morphology_mip`` or an aligned image; for MERSCOPE the mosaic's stain,
        default ``DAPI``).

    Returns
    -------
    AnnData
        The reader's AnnData.
    """
    kind = platform or platform_of(path)
    if kind not in PLATFORMS:
        raise GistInputError(f"unknown platform {kind!r}; expected one of {', '.join(PLATFORMS)}")
    if kind != "h5ad" and library_key is not None:
        raise GistInputError(f"--library_key applies to .h5ad input; {path} is a {kind} folder (one sample)")
    if kind in ("xenium", "cosmx", "merscope") and image_path is not None:
        name, where = {
            "xenium": ("Xenium", "its morphology image is read from it (choose another of its images with --image_key)"),
            "cosmx": ("CosMx", "its composite images are read from CellComposite/"),
            "merscope": ("MERSCOPE", "its mosaic images are read from images/ (choose the stain with --image_key)"),
        }[kind]
        raise GistInputError(f"--image does not apply to a {name} folder: {where}")
    if kind == "xenium":
        return read_xenium(path, image_key=image_key or "morphology_focus")
    if kind == "visium_hd":
        return read_visium_hd(path, bin_size, fullres_image=image_path)
    if kind == "visium":
        return read_visium(path, fullres_image=image_path)
    if kind == "cosmx":
        images = Path(path) / "CellComposite"
        return read_cosmx(path, image_dir=images.name if images.is_dir() else None)
    if kind == "merscope":
        return read_merscope(path, stain=image_key or "DAPI")
    if kind == "spatialdata":
        return read_spatialdata(path, table_key=table_key, image_key=image_key)
    return read_h5ad(path, image_path=image_path, library_key=library_key)
