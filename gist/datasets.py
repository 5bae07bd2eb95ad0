"""The one registry of named datasets: the paper's defaults per dataset, used by every command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anndata import AnnData

from gist.errors import GistInputError
from gist.io._validate import check_samples
from gist.io.h5ad import load_prepared
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
        ``cosmx``, ``visium``, ``demo`` or ``h5ad`` (any other file), which selects the reader.
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


def load_dataset(dataset: str | None = None, data: str | Path | None = None, root: str | Path = "dataset",
                 rad_cutoff: float | None = None, k_cutoff: int | None = None, strict: bool = False,
                 verbose: bool = True) -> tuple[list[AnnData], DatasetSpec, str]:
    """Samples of a named dataset (or a prepared path) with graphs, the dataset's defaults and the
    graph rule used.

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
    return adatas, spec, graph
