"""The one registry of named datasets: the paper's defaults per dataset, used by every command."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's defaults.

    Attributes
    ----------
    name
        Folder name under the data root (``dataset/<name>/``) and ``--dataset`` value.
    rad_cutoff
        Graph radius in ``obsm['spatial']`` units; ``None`` means the radius rule
        (:func:`gist.graph.rule_radius`).
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
    from gist.errors import GistInputError

    if name is None:
        return USER_DATA
    if name not in DATASETS:
        raise GistInputError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)}); use --data PATH for others")
    return DATASETS[name]
