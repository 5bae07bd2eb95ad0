"""Training the GIST model: the paper's recipe, checkpoints, resume and loss curves.

Files written to ``save_path`` (``R`` = repeat):

- ``final_{epoch}_R.pth`` every ``save_every`` epochs and ``final_R.pth`` at the end: plain
  ``TransImg`` state dicts, as the original writes them, each with a ``.json`` beside it
  (arguments, recipe, genes, data shape, versions, seed, epoch, loss, ensemble members);
- ``train_state_R.pt``: model, optimiser and shuffling state of the newest checkpoint, for
  ``resume`` (tensors and plain types only, loaded with ``weights_only=True``);
- ``loss_R.csv`` and ``loss_R.png``: loss per epoch.

Every file is written to a temporary name and renamed, so an interrupted run leaves none half-written.

Two recipes (:data:`RECIPES`): ``paper`` is the original's (one model, 1,000 epochs, its loss);
``gist`` (the default) trains an ensemble of 5 models of 150 epochs (repeats ``R .. R+4``, seeds
``seed .. seed+4``), standardises the image features inside the model and adds the fused image
reconstruction (``fused_img_head``). docs/reproduction.md lists each difference and what it gains.
"""

from __future__ import annotations

import json
import platform
import random
import re
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gist.data import SampleGraph
from gist.device import autocast, resolve_device
from gist.errors import GistInputError
from gist.model import TransImg, gist_loss
from gist.utils import atomic_path, exclusive_folder


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
    save_every: int = 100
    repeat: int = 0
    device: str = "auto"
    precision: str = "fp32"
    recipe: str = "paper"
    ensemble: int = 1  # models trained (repeats repeat .. repeat + ensemble - 1, seeds seed + k)
    fused_img_head: bool = False  # the fused branch also reconstructs the image features
    standardize_img: bool = False  # z-score image features inside the model (statistics of the training cells)
    extra: dict = field(default_factory=dict)  # recorded in the JSON, e.g. the CLI arguments


#: Named recipes: the settings that differ from :class:`TrainConfig`'s (the paper's) defaults.
RECIPES: dict[str, dict] = {
    "paper": {},
    "gist": {"epochs": 150, "ensemble": 5, "fused_img_head": True, "standardize_img": True, "save_every": 50},
}
DEFAULT_RECIPE = "gist"


def recipe_config(recipe: str = DEFAULT_RECIPE, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` for a named recipe; ``overrides`` that are ``None`` are ignored."""
    if recipe not in RECIPES:
        raise GistInputError(f"unknown recipe {recipe!r} (choose from {', '.join(RECIPES)})")
    settings = RECIPES[recipe] | {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(recipe=recipe, **settings)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    import torch_geometric

    import gist

    return {"gist": gist.__version__, "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def data_shape(graphs: list[SampleGraph]) -> dict:
    return {"samples": len(graphs), "cells": int(sum(g.x.shape[0] for g in graphs)),
            "genes": int(graphs[0].x.shape[1]), "img_dim": int(graphs[0].img.shape[1]),
            "edges": int(sum(g.edge_index.shape[1] for g in graphs))}


def ensemble_record(config: TrainConfig) -> dict:
    """``{'size': M, 'members': [repeats]}`` of the ensemble a (member) configuration belongs to."""
    first = config.repeat - int(config.extra.get("member", 0))
    return {"size": config.ensemble, "members": list(range(first, first + config.ensemble))}


def build_model(graphs: list[SampleGraph], config: TrainConfig) -> TransImg:
    """The model for these samples; with ``standardize_img`` its image scaling is set from them."""
    dims = [graphs[0].x.shape[1], graphs[0].img.shape[1], *config.hidden]
    has_image = dims[1] > 0
    model = TransImg(dims, use_img_loss=config.use_img_loss, fused_img_head=config.fused_img_head and has_image,
                     standardize_img=config.standardize_img and has_image)
    if model.standardize_img:
        model.set_image_scaling(torch.cat([g.img for g in graphs]))
    return model


def _save_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))


def _save_checkpoint(save_path: Path, stem: str, model: TransImg, meta: dict) -> None:
    with atomic_path(save_path / f"{stem}.pth") as tmp:
        torch.save(model.state_dict(), tmp)
    _save_json(save_path / f"{stem}.json", meta)


def _write_losses(save_path: Path, repeat: int, losses: list[float]) -> None:
    frame = pd.DataFrame({"epoch": np.arange(1, len(losses) + 1), "loss": losses})
    with atomic_path(save_path / f"loss_{repeat}.csv") as tmp:
        frame.to_csv(tmp, index=False)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(frame["epoch"], frame["loss"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(f"GIST training loss (repeat {repeat})")
    fig.tight_layout()
    with atomic_path(save_path / f"loss_{repeat}.png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def epoch_checkpoints(save_path: str | Path, repeat: int = 0) -> list[tuple[int, Path]]:
    """All ``final_{epoch}_{repeat}.pth`` in ``save_path`` as ``(epoch, path)``, by epoch."""
    pattern = re.compile(rf"final_(\d+)_{repeat}\.pth$")
    return sorted((int(m.group(1)), p) for p in Path(save_path).glob(f"final_*_{repeat}.pth") if (m := pattern.match(p.name)))


def latest_epoch_checkpoint(save_path: str | Path, repeat: int = 0) -> tuple[int, Path] | None:
    """The newest ``final_{epoch}_{repeat}.pth`` in ``save_path``, or ``None``."""
    found = epoch_checkpoints(save_path, repeat)
    return found[-1] if found else None


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
        One :class:`~gist.data.SampleGraph` per sample; their order is shuffled every epoch.
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
    save_path = Path(save_path)
    with exclusive_folder(save_path, "train.py"):
        return _train(graphs, config, save_path, resume, progress)


def _train(graphs: list[SampleGraph], config: TrainConfig, save_path: Path, resume: bool,
           progress: bool) -> tuple[TransImg, list[float]]:
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = build_model(graphs, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    shuffler = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    start_epoch = 1
    state_path = save_path / f"train_state_{config.repeat}.pt"
    if resume and state_path.is_file():
        try:
            state = torch.load(state_path, map_location=device, weights_only=True)
        except Exception as err:  # pickle/zip errors come in many types
            raise GistInputError(f"--resume: {state_path} is not a readable training state ({err}); delete it to "
                                 "resume from the newest final_<epoch> checkpoint instead") from None
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
            model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        except Exception as err:  # a damaged file, or another model's
            raise GistInputError(f"--resume: {path} cannot be loaded into this model ({err}); delete it or start "
                                 "without --resume") from None
        losses = [float("nan")] * epoch
        start_epoch = epoch + 1

    graphs_on_device = [g.to(device) for g in graphs]
    shape = data_shape(graphs)
    if not model.has_image and config.extra.get("member", 0) == 0:
        print("no image features (obsm['imgs']): training the gene branch alone (expression + graph)")
    meta_base = {"config": asdict(config), "recipe": config.recipe, "data": shape, "versions": versions(),
                 "seed": config.seed, "device": str(device),
                 "ensemble": ensemble_record(config)}
    bar = tqdm(range(start_epoch, config.epochs + 1), disable=not progress, desc="train", unit="epoch")
    started = time.perf_counter()
    for epoch in bar:
        model.train()
        total = 0.0
        for i in torch.randperm(len(graphs_on_device), generator=shuffler).tolist():
            g = graphs_on_device[i]
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, config.precision):
                out = model(g.x, g.img if model.has_image else None, g.prepared())
            out = type(out)(*(None if o is None else o.float() for o in out))
            target_img = model.standardize(g.img) if model.has_image else g.img
            loss = gist_loss(out, g.x, target_img, config.use_img_loss)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clipping)
            value = float(loss.detach())
            if not (np.isfinite(value) and torch.isfinite(norm)):
                what = "loss" if not np.isfinite(value) else "gradient norm"
                raise TrainingDiverged(
                    f"training diverged: the {what} is {value if what == 'loss' else float(norm)} at epoch {epoch}, "
                    f"sample {g.name!r} (check the input for extreme values, or lower --lr); the last good "
                    f"checkpoint in {save_path} is kept"
                )
            optimizer.step()
            total += value
        losses.append(total / len(graphs_on_device))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if config.save_every and epoch % config.save_every == 0:
            meta = meta_base | {"epoch": epoch, "loss": losses[-1]}
            _save_checkpoint(save_path, f"final_{epoch}_{config.repeat}", model, meta)
            with atomic_path(state_path) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "shuffler": shuffler.get_state(), "losses": losses, "epoch": epoch,
                            "hidden_dims": model.hidden_dims}, tmp)
    seconds = time.perf_counter() - started
    trained_epochs = config.epochs - start_epoch + 1
    meta = meta_base | {
        "epoch": config.epochs, "loss": losses[-1] if losses else None, "train_seconds": round(seconds, 3),
        "cell_epochs_per_second": round(shape["cells"] * trained_epochs / seconds, 1) if seconds > 0 else None,
    }
    _save_checkpoint(save_path, f"final_{config.repeat}", model, meta)
    _write_losses(save_path, config.repeat, losses)
    return model.cpu(), losses


def train_ensemble(
    graphs: list[SampleGraph],
    config: TrainConfig,
    save_path: str | Path,
    resume: bool = False,
    progress: bool = True,
) -> tuple[list[TransImg], list[list[float]]]:
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
    with exclusive_folder(save_path, "train.py"):
        for k in range(config.ensemble):
            member = replace(config, seed=config.seed + k, repeat=config.repeat + k, extra=config.extra | {"member": k})
            if progress and config.ensemble > 1:
                print(f"ensemble member {k + 1}/{config.ensemble} (repeat {member.repeat}, seed {member.seed})")
            model, losses = train(graphs, member, save_path, resume=resume, progress=progress)
            models.append(model)
            curves.append(losses)
    return models, curves
