"""Training the GIST model: the training loop, ensembles, resume and early stopping.

The files a run writes into ``save_path`` (weights, records, resume states, loss curves) are named,
written and read by :mod:`gist.tl.checkpoints`.

The recipes are in :mod:`gist.tl.recipes`: ``paper`` is the original's (one model, 1,000 epochs,
its loss); ``gist`` (the default) trains an ensemble of 5 models of 150 epochs (repeats ``R .. R+4``,
seeds ``seed .. seed+4``), standardises the image features inside the model and adds the fused image
reconstruction (``fused_img_head``). docs/reproduction.md lists each difference and what it gains.
"""

from __future__ import annotations

import contextlib
import platform
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import gist
from gist.device import autocast, resolve_device
from gist.errors import GistInputError
from gist.tl import distributed
from gist.tl._inputs import SampleGraph
from gist.tl.batches import DEFAULT_MAX_CELLS, make_batches, own_rows
from gist.tl.checkpoints import (
    epoch_file,
    final_file,
    finished_member,
    latest_epoch_checkpoint,
    load_state,
    load_weights,
    save_checkpoint,
    save_state,
    state_file,
    write_losses,
)
from gist.tl.model import TransImg, contrast_loss, gist_loss
from gist.tl.recipes import DEFAULT_RECIPE, TASKS, default_epochs, get_recipe
from gist.utils import exclusive_folder


class TrainingDiverged(GistInputError):
    """The loss or a gradient became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Training hyper-parameters; the dataclass defaults are the paper's (``recipe='paper'``).

    Use :func:`recipe_config` for a named recipe with overrides.
    """

    epochs: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    gradient_clipping: float = 5.0
    hidden: tuple[int, int] = (512, 30)
    use_img_loss: bool = False
    seed: int = 1234
    save_every: int = 100  # write final_<epoch>_<repeat>.pth every N epochs (0: never)
    state_every: int = 50  # refresh the resume state train_state_<repeat>.pt every N epochs (and at each save_every)
    keep_state: bool = False  # keep train_state_<repeat>.pt after a clean finish (to extend the run later)
    repeat: int = 0
    device: str = "auto"
    precision: str = "fp32"
    recipe: str = "paper"
    ensemble: int = 1  # models trained (repeats repeat .. repeat + ensemble - 1, seeds seed + k)
    fused_img_head: bool = False  # the fused branch also reconstructs the image features
    standardize_img: bool = False  # z-score image features inside the model (statistics of the training cells)
    use_img: bool = True  # train the image branch when the samples have image features (False: the gene branch alone)
    hops: int | None = None  # graph layers that pass messages from the input (None: all, the original)
    n_pcs: int | None = None  # the model reads this many principal components of the expression (None: genes)
    contrast: bool = False  # add a Deep Graph Infomax term, weighted to equal the reconstruction loss at initialisation
    neighbour_input: float | None = None  # BANKSY lambda: encoders read own | neighbour-mean components (needs n_pcs)
    max_cells_per_batch: int | None = DEFAULT_MAX_CELLS  # larger samples are tiled (gist.tl.batches); None: never
    patience: int | None = None  # stop after this many epochs without a relative loss improvement of min_delta
    min_delta: float = 0.0
    mask_fraction: float = 0.0  # denoising objective: hide this share of the input entries each step, reconstruct them all
    extra: dict = field(default_factory=dict)  # recorded in the JSON, e.g. the CLI arguments


def recipe_config(recipe: str = DEFAULT_RECIPE, task: str = "cell_types", dataset: str | None = None,
                  **overrides) -> TrainConfig:
    """A :class:`TrainConfig` for a named recipe (:data:`gist.tl.recipes.RECIPES`); ``overrides``
    that are ``None`` are ignored.

    ``task`` (one of :data:`gist.tl.recipes.TASKS`) adds the recipe's settings for that task and is
    recorded in ``extra['task']``; ``dataset`` (a named dataset) its epochs for that dataset when
    ``epochs`` is not given (the paper recipe trains the demo 100 epochs). ``hops=4`` (every layer)
    and ``n_pcs=0`` (genes in) mean the original's layout and ``neighbour_input=0`` the own
    components alone; all three are stored as ``None``, so that a recipe with other values can be
    brought back to them. A recipe's ``neighbour_input`` is dropped when genes go in (``n_pcs=0``):
    the neighbour-mean block is one of components; asking for both explicitly is an error."""
    entry = get_recipe(recipe)
    if task not in TASKS:
        raise GistInputError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    settings = entry.settings | entry.tasks.get(task, {})
    if default_epochs(recipe, dataset) is not None:
        settings["epochs"] = default_epochs(recipe, dataset)
    settings |= {k: v for k, v in overrides.items() if v is not None}
    settings["extra"] = dict(settings.get("extra", {})) | {"task": task}
    # the original's layout has its own spelling: every layer passes messages, genes in
    if settings.get("hops") == ALL_HOPS:
        settings["hops"] = None
    if settings.get("n_pcs") == 0:
        settings["n_pcs"] = None
    if settings.get("neighbour_input") == 0:
        settings["neighbour_input"] = None
    if settings.get("n_pcs") is None and settings.get("neighbour_input") is not None:
        if overrides.get("neighbour_input"):
            raise GistInputError(f"neighbour_input {overrides['neighbour_input']} needs principal components in "
                                 "(n_pcs > 0); with genes in (n_pcs 0) leave it out or set it to 0")
        settings["neighbour_input"] = None  # the recipe's, for components; genes in: the own genes alone
    return TrainConfig(recipe=recipe, **settings)


#: ``hops`` of the original (all four encoder layers pass messages); ``recipe_config`` stores it as ``None``.
ALL_HOPS = 4


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    import torch_geometric


    return {"gist": gist.__version__, "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def data_shape(graphs: list[SampleGraph]) -> dict:
    return {"samples": len(graphs), "cells": int(sum(g.n_cells for g in graphs)),
            "genes": int(graphs[0].n_genes), "img_dim": int(graphs[0].img.shape[1]),
            "edges": int(sum(g.edge_index.shape[1] for g in graphs))}


def ensemble_record(config: TrainConfig) -> dict:
    """``{'size': M, 'members': [repeats]}`` of the ensemble a (member) configuration belongs to."""
    first = config.repeat - int(config.extra.get("member", 0))
    return {"size": config.ensemble, "members": list(range(first, first + config.ensemble))}


def build_model(graphs: list[SampleGraph], config: TrainConfig) -> TransImg:
    """The model for these samples; with ``standardize_img`` its image scaling is set from them."""
    model = _model(graphs[0].n_genes, graphs[0].img.shape[1], config)
    if model.standardize_img:
        model.set_image_scaling(torch.cat([g.img for g in graphs]))
    if model.n_pcs is not None:
        model.set_pca(pca_sample(graphs, PCA_MAX_CELLS, config.seed), seed=config.seed)
    return model


#: At most this many training cells (drawn evenly from the samples) define the input components.
PCA_MAX_CELLS = 20000


def pca_sample(graphs: list[SampleGraph], max_cells: int, seed: int) -> torch.Tensor:
    """Dense expression of at most ``max_cells`` training cells, the same share from every sample
    (rows drawn with ``seed``; a sample's sparse counts are densified for those rows only)."""
    rng = np.random.default_rng(seed)
    total = sum(g.n_cells for g in graphs)
    parts = []
    for g in graphs:
        take = g.n_cells if total <= max_cells else max(1, round(max_cells * g.n_cells / total))
        rows = np.sort(rng.choice(g.n_cells, size=min(take, g.n_cells), replace=False))
        x = g.x[rows].toarray() if g.is_sparse else g.x[torch.from_numpy(rows)].cpu().numpy()
        parts.append(torch.from_numpy(np.asarray(x, dtype=np.float32)))
    return torch.cat(parts)


def _model(n_genes: int, img_dim: int, config: TrainConfig) -> TransImg:
    has_image = img_dim > 0
    # a panel with fewer genes than the recipe's components is read through all of its axes
    n_pcs = None if config.n_pcs is None else min(config.n_pcs, n_genes)
    return TransImg([n_genes, img_dim, *config.hidden], use_img_loss=config.use_img_loss,
                    fused_img_head=config.fused_img_head and has_image, standardize_img=config.standardize_img and has_image,
                    hops=config.hops, n_pcs=n_pcs, contrast=config.contrast, neighbour_input=config.neighbour_input)


def expected_checkpoint_bytes(n_genes: int, img_dim: int, config: TrainConfig) -> dict[str, int]:
    """What a run with ``config`` leaves in its checkpoint folder, from the model's size:
    ``kept`` (bytes of the files that stay: final weights of every member, the intermediate
    ``final_<epoch>`` files of ``save_every`` and, with ``keep_state``, each member's resume state),
    ``state`` (the resume state one member holds while it trains: weights and Adam's two moments)
    and ``files`` (weight files kept)."""
    model = _model(n_genes, img_dim if config.use_img else 0, config)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trained = sum(p.numel() * p.element_size() for p in model.parameters())
    saves = config.epochs // config.save_every if config.save_every else 0
    state = weights + 2 * trained
    files = config.ensemble * (1 + saves)
    return {"kept": files * weights + (config.ensemble * state if config.keep_state else 0), "state": state, "files": files}


def stop_reason(losses: list[float], patience: int | None, min_delta: float) -> str | None:
    """Why training should stop after these epochs' losses, or ``None`` to go on.

    Stops when the last ``patience`` epochs brought no loss below ``(1 - min_delta)`` times the best
    loss before them (a relative improvement rule, so the scale of the loss does not matter).
    """
    if not patience or len(losses) <= patience:
        return None
    before = [v for v in losses[:-patience] if np.isfinite(v)]
    recent = [v for v in losses[-patience:] if np.isfinite(v)]
    if not before or not recent:
        return None
    best = min(before)
    if min(recent) < best * (1 - min_delta):
        return None
    return (f"early stop: no relative loss improvement of {min_delta:g} in {patience} epochs "
            f"(best {best:.6g}, last {losses[-1]:.6g})")


def train(
    graphs: list[SampleGraph],
    config: TrainConfig,
    save_path: str | Path,
    resume: bool = False,
    progress: bool = True,
) -> tuple[TransImg, list[float]]:
    """Train ``TransImg`` on per-sample graphs, one sample per mini-batch (``save_path`` is locked
    against a second run for the duration, see :func:`gist.utils.exclusive_folder`).

    Parameters
    ----------
    graphs
        One :class:`~gist.tl._inputs.SampleGraph` per sample; their order is shuffled every epoch.
    config
        Hyper-parameters (paper defaults).
    save_path
        Folder for checkpoints, JSON records and loss curves.
    resume
        Continue from ``train_state_{repeat}.pt`` when present; the result equals an
        uninterrupted run with the same configuration.
    progress
        Show a tqdm bar with epoch and loss.

    Returns
    -------
    (TransImg, list of float)
        The trained model (on CPU) and the mean loss of every epoch.
    """
    if not graphs:
        raise GistInputError("no samples to train on")
    if config.epochs < 1:
        raise GistInputError(f"epochs must be >= 1, got {config.epochs}")
    if not config.use_img:
        graphs = [without_image(g) for g in graphs]
    save_path = Path(save_path)
    with _folder_lock(save_path):
        return _train(graphs, config, save_path, resume, progress)


def without_image(graph: SampleGraph) -> SampleGraph:
    """``graph`` with no image features (``(cells, 0)``): what ``use_img=False`` trains on."""
    return replace(graph, img=graph.img[:, :0])


def _folder_lock(save_path: Path):
    """The run's lock on ``save_path``: taken by rank 0 alone under torchrun (one run, many ranks)."""
    return exclusive_folder(save_path, "train.py") if distributed.is_main() else contextlib.nullcontext()


def _train(graphs: list[SampleGraph], config: TrainConfig, save_path: Path, resume: bool,
           progress: bool) -> tuple[TransImg, list[float]]:
    device = distributed.setup(resolve_device(config.device))
    main = distributed.is_main()
    seed_everything(config.seed)
    model = build_model(graphs, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    shuffler = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    start_epoch = 1
    state_path = state_file(save_path, config.repeat)
    if resume and not state_path.is_file() and (done := finished_member(save_path, config, model)) is not None:
        return done  # this member finished cleanly before (its resume state was removed)
    if resume and state_path.is_file():
        state = load_state(state_path, device)
        if state["hidden_dims"] != model.hidden_dims:
            raise GistInputError(
                f"{state_path} was trained with hidden_dims {state['hidden_dims']}, this run has {model.hidden_dims}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        shuffler.set_state(state["shuffler"])
        losses = list(state["losses"])
        start_epoch = int(state["epoch"]) + 1
    elif resume and (newest := latest_epoch_checkpoint(save_path, config.repeat)) is not None:
        epoch, path = newest
        warnings.warn(
            f"resuming from {path} without {state_path.name}: the weights are restored, but the optimiser and "
            "shuffling start afresh, so the run will not equal an uninterrupted one",
            stacklevel=2,
        )
        try:
            model.load_state_dict(load_weights(path, device))
        except Exception as err:  # a damaged file, or another model's
            raise GistInputError(f"--resume: {path} cannot be loaded into this model ({err}); delete it or start "
                                 "without --resume") from None
        losses = [float("nan")] * epoch
        start_epoch = epoch + 1

    # samples (large ones tiled with their halo) as batches; dense once when they fit, else per step
    batches = [b.to(device) for b in make_batches(graphs, config.max_cells_per_batch, model.depth)]
    if model.contrast and float(model.contrast_weight) == 0.0:  # a fresh model (a resumed one keeps its weight)
        model.set_contrast_weight(balanced_contrast_weight(model, batches, config, device))
    shape = data_shape(graphs) | {"batches": len(batches)}
    if not model.has_image and config.extra.get("member", 0) == 0 and main:
        why = "use_img is off (the recipe's setting for this task, or --use_img 0)" if not config.use_img else \
            "no image features (obsm['imgs'])"
        print(f"{why}: training the gene branch alone (expression + graph)")
    runner = model
    if distributed.active():  # gradients averaged over ranks; rank 0's weights broadcast first
        # the original's norm1/norm2 take no part in forward: DDP must expect parameters without gradients
        runner = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                           find_unused_parameters=True)
    meta_base = {"config": asdict(config), "recipe": config.recipe, "data": shape, "versions": versions(),
                 "seed": config.seed, "device": str(device),
                 "ensemble": ensemble_record(config)}
    if distributed.active():
        meta_base["distributed"] = {"world_size": distributed.world_size(), "backend": torch.distributed.get_backend()}
    bar = tqdm(range(start_epoch, config.epochs + 1), disable=not (progress and main), desc="train", unit="epoch")
    started = time.perf_counter()
    stopped, last_epoch = None, start_epoch - 1
    for epoch in bar:
        model.train()
        order = torch.randperm(len(batches), generator=shuffler).tolist()
        total, steps = 0.0, 0
        with runner.join() if distributed.active() else contextlib.nullcontext():
            for i in distributed.shard(order):
                total += _step(runner, model, optimizer, batches[i], config, epoch, save_path, device, i)
                steps += 1
        total, steps = distributed.all_sum([total, steps], device)
        losses.append(total / steps)
        last_epoch = epoch
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        saves = bool(config.save_every) and epoch % config.save_every == 0
        if main and saves:
            save_checkpoint(epoch_file(save_path, epoch, config.repeat), model, meta_base | {"epoch": epoch, "loss": losses[-1]})
        if main and (saves or (config.state_every and epoch % config.state_every == 0)) and epoch < config.epochs:
            save_state(state_path, model, optimizer, shuffler, losses, epoch)
        if (stopped := stop_reason(losses, config.patience, config.min_delta)) is not None:
            if main:
                print(f"{stopped}; stopped after epoch {epoch} of {config.epochs}")
            break
    seconds = time.perf_counter() - started
    trained_epochs = last_epoch - start_epoch + 1  # 0 when a finished run is resumed
    meta = meta_base | {
        "epoch": last_epoch, "loss": losses[-1] if losses else None, "train_seconds": round(seconds, 3),
        "cell_epochs_per_second": round(shape["cells"] * trained_epochs / seconds, 1) if seconds > 0 else None,
        "stopped": {"epoch": last_epoch, "reason": stopped or f"reached --epochs {config.epochs}"},
    }
    if distributed.active():
        meta["distributed"] = meta_base["distributed"] | {"weights_identical": distributed.weights_identical(model, device)}
    if main:
        if config.keep_state:  # the state of the last epoch, so that the run can be extended exactly
            save_state(state_path, model, optimizer, shuffler, losses, last_epoch)
        save_checkpoint(final_file(save_path, config.repeat), model, meta)
        write_losses(save_path, config.repeat, losses)
        if not config.keep_state:
            state_path.unlink(missing_ok=True)  # finished cleanly: final_<repeat>.pth is what is needed
    distributed.barrier()
    return model.cpu(), losses


def _step(runner: torch.nn.Module, model: TransImg, optimizer: torch.optim.Optimizer, batch: SampleGraph,
          config: TrainConfig, epoch: int, save_path: Path, device: torch.device, index: int = 0) -> float:
    """One optimiser step on one batch (loss on its own cells); returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    recon, contrast = _loss_terms(runner, model, batch, config, device, epoch, index)
    loss = recon if contrast is None else recon + model.contrast_weight * contrast
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clipping)
    value = float(loss.detach())
    if not (np.isfinite(value) and torch.isfinite(norm)):
        what = "loss" if not np.isfinite(value) else "gradient norm"
        raise TrainingDiverged(
            f"training diverged: the {what} is {value if what == 'loss' else float(norm)} at epoch {epoch}, "
            f"sample {batch.name!r} (check the input for extreme values, or lower --lr); the last good "
            f"checkpoint in {save_path} is kept"
        )
    optimizer.step()
    return value


def _loss_terms(runner: torch.nn.Module, model: TransImg, batch: SampleGraph, config: TrainConfig,
                device: torch.device, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The two training terms of one batch on its own cells: :func:`gist_loss`, and for a model
    with ``contrast`` the unweighted :func:`contrast_loss` (its cells shuffled by a generator seeded
    from the run's seed, the epoch and the batch, so that a resumed run repeats them), else ``None``."""
    x = batch.dense_x(device)
    seen = masked_input(x, config.mask_fraction, config.seed * 1_000_003 + epoch * 1_009 + index + 1)
    with autocast(device, config.precision):
        out = runner(seen, batch.img if model.has_image else None, batch.prepared())
    fused_z = out.fused_z.float()
    out = type(out)(*(None if o is None else own_rows(o.float(), batch) for o in out))
    target_img = model.standardize(batch.img) if model.has_image else batch.img
    recon = gist_loss(out, own_rows(model.project(x), batch), own_rows(target_img, batch), config.use_img_loss)
    if not model.contrast:
        return recon, None
    shuffle = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 1_009 + index)
    perm = torch.randperm(x.shape[0], generator=shuffle).to(x.device)
    with autocast(device, config.precision):
        corrupt_z = model.encode(x[perm], batch.img[perm] if model.has_image else None, batch.prepared()).float()
    return recon, contrast_loss(model, fused_z, corrupt_z, batch.prepared(), batch.own)


@torch.no_grad()
def masked_input(x: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """``x`` with a random ``fraction`` of its entries set to 0 (a generator seeded with ``seed``, so
    that a resumed run hides the same entries); ``x`` itself when ``fraction`` is 0.

    The denoising objective (``TrainConfig.mask_fraction``): the model reads the masked input and is
    scored on the whole of ``x``, so it must predict each hidden entry from the cell's other genes
    and from its neighbours (a masked entry is never part of the input of the forward pass).
    """
    if not fraction:
        return x
    if not 0 < fraction < 1:
        raise GistInputError(f"mask_fraction must be in [0, 1), got {fraction}")
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) >= fraction
    return x * keep.to(device=x.device, dtype=x.dtype)


def balanced_contrast_weight(model: TransImg, batches: list[SampleGraph], config: TrainConfig,
                             device: torch.device) -> float:
    """The contrastive term's weight by a label-free rule: the reconstruction loss of the untrained
    model over the batches divided by its contrastive loss (about ``2 ln 2``), so that the two terms
    start equal."""
    was_training = model.training
    model.eval()
    terms = [_loss_terms(model, model, b, config, device, 0, i) for i, b in enumerate(batches)]
    model.train(was_training)
    recon, contrast = (sum(float(t[k]) for t in terms) for k in (0, 1))
    return recon / max(contrast, 1e-12)


def train_ensemble(graphs: list[SampleGraph], config: TrainConfig, save_path: str | Path, resume: bool = False,
                   progress: bool = True) -> tuple[list[TransImg], list[list[float]]]:
    """Train ``config.ensemble`` models: member ``k`` is repeat ``config.repeat + k`` with seed
    ``config.seed + k`` (each its own files, each resumable). One model when ``ensemble`` is 1.

    Returns
    -------
    (list of TransImg, list of list of float)
        The trained members (on CPU) and each member's loss per epoch.
    """
    if config.ensemble < 1:
        raise GistInputError(f"ensemble must be >= 1, got {config.ensemble}")
    models, curves = [], []
    with _folder_lock(Path(save_path)):
        for k in range(config.ensemble):
            member = replace(config, seed=config.seed + k, repeat=config.repeat + k, extra=config.extra | {"member": k})
            if progress and config.ensemble > 1:
                print(f"ensemble member {k + 1}/{config.ensemble} (repeat {member.repeat}, seed {member.seed})")
            model, losses = train(graphs, member, save_path, resume=resume, progress=progress)
            models.append(model)
            curves.append(losses)
    return models, curves
