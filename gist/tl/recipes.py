"""The recipe registry: everything that depends on the recipe, in one entry per recipe.

``train.py``, ``test.py``, :func:`gist.tl.fit` and :func:`gist.tl.cluster` all read a recipe from
here, so the command line and the API agree (training epochs per dataset, task settings, how
domains are clustered).

Two recipes: ``paper`` is the original's (one model, 1,000 epochs, its loss; 100 epochs on the
demo); ``gist`` (the default) is the benchmark's winner (BENCHMARKS.md; docs/reproduction.md lists
each difference from the paper and what it gains).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gist.errors import GistInputError

#: The two tasks a default is chosen for (BENCHMARKS.md, protocol): ``cell_types`` (leiden) and
#: ``domains`` (mclust-like mixtures).
TASKS = ("cell_types", "domains")
#: What the clustering of domains reads: the fused latent, or the principal components of the
#: denoised expression (:func:`gist.tl.clustering.denoised_components`). The ``gist`` recipe reads
#: the latent (BENCHMARKS.md, issue 21: a latent of 50 scored 0.270 on the six domain sets, 5 seeds,
#: against 0.262 for its denoised components and 0.260 for the previous denoised default).
DOMAIN_REPS = ("latent", "denoised")
#: What ``layers['gist_denoised']`` holds (:func:`gist.tl.inference.embed_samples`): the fused
#: reconstruction (the original's), the expression averaged over each cell's nearest cells in the
#: fused latent (:func:`gist.tl.denoise.latent_neighbour_mean`), or diffused over them
#: (:func:`gist.tl.denoise.latent_diffusion`).
DENOISERS = ("reconstruction", "latent_knn", "latent_diffusion")


@dataclass(frozen=True)
class Recipe:
    """One recipe: training settings and the clustering choices that go with them.

    Attributes
    ----------
    name
        ``--recipe`` value; recorded in every checkpoint.
    settings
        :class:`gist.tl.training.TrainConfig` fields that differ from its (the paper's) defaults.
    tasks
        Settings per task (:data:`TASKS`) over ``settings`` (each the winner of the task's
        development sets in BENCHMARKS.md).
    epochs_by_dataset
        Epochs per model for a named dataset when none are given.
    smooth_domains
        Domains (``mclust``) cluster the representation averaged over each cell's neighbours.
    domain_rep
        What domains cluster by default (one of :data:`DOMAIN_REPS`).
    denoiser
        What the denoised expression is (one of :data:`DENOISERS`).
    """

    name: str
    settings: dict = field(default_factory=dict)
    tasks: dict[str, dict] = field(default_factory=dict)
    epochs_by_dataset: dict[str, int] = field(default_factory=dict)
    smooth_domains: bool = False
    domain_rep: str = "latent"
    denoiser: str = "reconstruction"


RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("paper", epochs_by_dataset={"demo": 100}),
    Recipe("gist",
           settings={"epochs": 150, "ensemble": 5, "fused_img_head": True, "standardize_img": True, "save_every": 0,
                     "n_pcs": 50, "hidden": (128, 30), "hops": 2},
           # domains: one message-passing layer, latent 50, no image branch, own | neighbour-mean components
           # in (BANKSY lambda 0.2) (BENCHMARKS.md, issue 21: 0.299 on the six domain sets, 5 seeds, against
           # 0.293 with the own components alone and 0.270 with the image, which costs DLPFC 0.10)
           tasks={"domains": {"hops": 1, "hidden": (128, 50), "use_img": False, "neighbour_input": 0.2}},
           smooth_domains=True, domain_rep="latent"),
)}
DEFAULT_RECIPE = "gist"


def get_recipe(name: str | None) -> Recipe:
    """The registry entry of ``name``; ``None`` (an embedding whose recipe is not recorded) is the
    default recipe.

    Raises
    ------
    GistInputError
        If ``name`` is not a known recipe.
    """
    name = DEFAULT_RECIPE if name is None else name
    if name not in RECIPES:
        raise GistInputError(f"unknown recipe {name!r} (choose from {', '.join(RECIPES)})")
    return RECIPES[name]


def task_of(cluster_method: str) -> str:
    """The task a clusterer serves: ``domains`` for ``mclust``/``hmrf``, ``cell_types`` for ``leiden``."""
    if cluster_method not in ("leiden", "mclust", "hmrf"):
        raise GistInputError(f"unknown clusterer {cluster_method!r} (leiden, mclust or hmrf)")
    return "cell_types" if cluster_method == "leiden" else "domains"


def default_epochs(recipe: str, dataset: str | None) -> int | None:
    """Epochs per model of ``recipe`` on the named ``dataset`` when it has its own (else ``None``:
    the recipe's)."""
    return get_recipe(recipe).epochs_by_dataset.get(dataset) if dataset else None


def smooths(recipe: str | None, method: str) -> bool:
    """Whether ``method`` clusters the neighbour-averaged representation of a ``recipe`` model."""
    return method == "mclust" and get_recipe(recipe).smooth_domains


def clusters_denoised(recipe: str | None, method: str) -> bool:
    """Whether ``method`` clusters the denoised expression of a ``recipe`` model by default."""
    return method == "mclust" and get_recipe(recipe).domain_rep == "denoised"
