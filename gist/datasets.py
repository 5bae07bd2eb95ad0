"""The one registry of named datasets: the paper's defaults per dataset, used by every command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anndata import AnnData

from gist.errors import GistInputError
from gist.io._validate import check_samples
from gist.io.cosmx import read_cosmx
from gist.io.visium import read_visium
from gist.io.h5ad import load_prepared
from gist.io.samples import join_samples
from gist.pp.graph import build_graphs
from gist.tl._inputs import check_consistent


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's defaults.

    Attributes
    ----------
    name
        Folder name under the data root (``dataset/<name>/``) and ``--dataset`` value.
    rad_cutoff
        Graph radius in ``obsm['spatial']`` units; ``None`` means the radius rule
        (:func:`gist.pp.graph.rule_radius`).
    label_key, ncluster, cluster
        The labels to score against, the cluster count and ``leiden`` (cell types) or ``mclust``
        (domains), as the paper evaluates the dataset.
    platform
        ``cosmx``, ``visium``, ``demo`` or ``h5ad`` (any other file), which selects the reader
        (:func:`read_raw_dataset`).
    """

    name: str
    rad_cutoff: float | None = None
    label_key: str | None = None
    ncluster: int | None = None
    cluster: str | None = None
    platform: str = "h5ad"


#: CosMx pixels (0.18 um) of the paper's Lung13 graph.
COSMX_RADIUS = 80.0
#: Full-resolution Visium pixels of the paper's breast-cancer graphs.
BREAST_RADIUS = 300.0
#: The paper's colorectal Visium graph.
COLORECTAL_RADIUS = 20.0

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("nanostring", COSMX_RADIUS, "merge_cell_type", 8, "leiden", "cosmx"),
    DatasetSpec("breast", BREAST_RADIUS, "label", 4, "mclust", "visium"),
    DatasetSpec("breast2", BREAST_RADIUS, "label", 3, "mclust", "visium"),
    DatasetSpec("colorectal", COLORECTAL_RADIUS, "label", 5, "mclust", "visium"),
    DatasetSpec("demo", COSMX_RADIUS, "merge_cell_type", 8, "leiden", "demo"),
)}

#: ``--data PATH``: no labels, no cluster count, the radius rule.
USER_DATA = DatasetSpec("data")


def dataset_spec(name: str | None) -> DatasetSpec:
    """The spec of a named dataset, or :data:`USER_DATA` for ``None`` (``--data``)."""
    if name is None:
        return USER_DATA
    if name not in DATASETS:
        raise GistInputError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)}); use --data PATH for others")
    return DATASETS[name]


def scoring_defaults(spec: DatasetSpec, columns, label_key: str | None = None, ncluster: int | None = None,
                     method: str | None = None, source: str = "obs") -> tuple[str | None, int | None, str]:
    """The labels, cluster count and clusterer a run scores with: each as given, else the dataset's.

    The dataset's label column counts only where ``columns`` (the data's obs columns) hold it; its
    cluster count only together with its labels. ``method`` defaults to the dataset's, else leiden.

    Raises
    ------
    GistInputError
        If ``label_key`` was given and is not one of ``columns``.
    """
    columns = list(columns)
    if label_key is not None and label_key not in columns:
        raise GistInputError(f"--label_key {label_key!r} is not a column of {source} (have {columns})")
    label_key = label_key or (spec.label_key if spec.label_key in columns else None)
    ncluster = ncluster or (spec.ncluster if label_key else None)
    return label_key, ncluster, method or spec.cluster or "leiden"


def read_raw_dataset(name: str, root: str | Path = "dataset", image: str | Path | None = None,
                     labels: str | Path | None = None, label_key: str = "label",
                     annotation: str | Path | None = None) -> AnnData:
    """A named dataset before extraction as one AnnData (``obs['sample']``), read by its platform's
    reader (:attr:`DatasetSpec.platform`).

    Parameters
    ----------
    name
        The dataset (:data:`DATASETS`): ``demo`` is generated, ``cosmx`` reads flat files under
        ``root/<name>`` (or ``root``), ``visium`` an ``outs/`` folder under ``root/<name>``.
    root
        The data root.
    image
        Visium: the full-resolution image.
    labels, label_key
        Visium: spot labels (CSV) and their column.
    annotation
        CosMx: the cell annotation (default: ``matched_annotation_all.csv`` there when present).

    Returns
    -------
    AnnData
        The reader's AnnData.
    """
    spec = dataset_spec(name)
    folder = Path(root) / name
    if spec.platform == "demo":
        from gist.demo import make_demo  # gist.demo reads this registry: imported here, not above

        return join_samples(make_demo(n_fovs=4, seed=0))
    if spec.platform == "cosmx":
        folder = folder if folder.is_dir() else Path(root)
        annotation = annotation or (folder / "matched_annotation_all.csv")
        return read_cosmx(folder, annotation_file=annotation if Path(annotation).is_file() else None)
    if spec.platform == "visium":
        return read_visium(folder, fullres_image=image, labels=labels, label_key=label_key)
    raise GistInputError(f"dataset {name!r} has no reader for platform {spec.platform!r}; pass --data PATH")


def load_dataset(dataset: str | None = None, data: str | Path | None = None, root: str | Path = "dataset",
                 rad_cutoff: float | None = None, k_cutoff: int | None = None, strict: bool = False,
                 verbose: bool = True) -> tuple[AnnData, DatasetSpec, str]:
    """One AnnData with every sample of a named dataset (or a prepared path; ``obs['sample']``
    names each cell's sample), with graphs, the dataset's defaults and the graph rule used.

    Names read ``{root}/{name}/features/`` written by ``extract_features.py`` (``demo`` is
    generated in memory when that folder is absent); ``data`` reads any prepared ``.h5ad`` or folder.
    Samples without a graph get one (:func:`build_graphs`): ``rad_cutoff`` / ``k_cutoff`` when
    given (they also replace prepared graphs), else the dataset's paper radius, else (``--data``)
    the radius rule. Every sample is checked first (:func:`gist.io._validate.check_samples`;
    ``strict`` refuses non-integer counts).
    """
    if (dataset is None) == (data is None):
        raise GistInputError("give exactly one of --dataset NAME or --data PATH")
    spec = dataset_spec(dataset if data is None else None)
    if data is not None:
        adatas = load_prepared(data)
    elif dataset == "demo" and not (Path(root) / "demo" / "features").is_dir():
        from gist.demo import load_demo  # gist.demo reads this registry: imported here, not above

        adatas = load_demo()  # same data extract_features.py --dataset demo writes
    else:
        folder = Path(root) / dataset / "features"
        if not folder.is_dir():
            raise GistInputError(
                f"no prepared features for dataset {dataset!r}: {folder} is missing "
                f"(run extract_features.py --dataset {dataset} first, or pass --data PATH)"
            )
        adatas = load_prepared(folder)
    adatas = check_samples(adatas, str(data or f"dataset {dataset!r}"), strict=strict, verbose=verbose)
    check_consistent(adatas)
    explicit = rad_cutoff is not None or k_cutoff is not None
    graph = build_graphs(adatas, rad_cutoff if explicit else spec.rad_cutoff, k_cutoff, rebuild=explicit, verbose=verbose)
    return join_samples(adatas), spec, graph
