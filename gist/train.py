"""Training the GIST model: the paper's recipe, checkpoints, resume and loss curves.

Files written to ``save_path`` (``R`` = repeat):

- ``final_{epoch}_R.pth`` every ``save_every`` epochs and ``final_R.pth`` at the end: plain
  ``TransImg`` state dicts, as the original writes them, each with a ``.json`` beside it
  (arguments, data shape, versions, seed, epoch, loss);
- ``train_state_R.pt``: model, optimiser and shuffling state of the newest checkpoint, for ``resume``;
- ``loss_R.csv`` and ``loss_R.png``: loss per epoch.

Every file is written to a temporary name and renamed, so an interrupted run leaves none half-written.
"""

from __future__ import annotations

import json
import platform
import random
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gist.data import SampleGraph
from gist.errors import GistInputError
from gist.model import TransImg, gist_loss
from gist.utils import atomic_path


@dataclass
class TrainConfig:
    """Training hyper-parameters; defaults are the paper's."""

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
    extra: dict = field(default_factory=dict)  # recorded in the JSON, e.g. the CLI arguments


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GistInputError("--device cuda was requested but no CUDA GPU is available (use --device auto or cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise GistInputError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on request (about 2x faster on CPU for TransformerConv); fp32 otherwise."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    raise GistInputError(f"precision must be fp32, bf16 or fp16, got {precision!r}")


def versions() -> dict[str, str]:
    import torch_geometric

    import gist

    return {"gist": gist.__version__, "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def data_shape(graphs: list[SampleGraph]) -> dict:
    return {"samples": len(graphs), "cells": int(sum(g.x.shape[0] for g in graphs)),
            "genes": int(graphs[0].x.shape[1]), "img_dim": int(graphs[0].img.shape[1]),
            "edges": int(sum(g.edge_index.shape[1] for g in graphs))}


def build_model(graphs: list[SampleGraph], config: TrainConfig) -> TransImg:
    dims = [graphs[0].x.shape[1], graphs[0].img.shape[1], *config.hidden]
    return TransImg(dims, use_img_loss=config.use_img_loss)


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
    """Train ``TransImg`` on per-sample graphs, one sample per mini-batch.

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
    save_path = Path(save_path)
    save_path.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = build_model(graphs, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    shuffler = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    start_epoch = 1
    state_path = save_path / f"train_state_{config.repeat}.pt"
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=False)
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
        model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        losses = [float("nan")] * epoch
        start_epoch = epoch + 1

    graphs_on_device = [g.to(device) for g in graphs]
    shape = data_shape(graphs)
    if not model.has_image:
        print("no image features (obsm['imgs']): training the gene branch alone (expression + graph)")
    meta_base = {"config": asdict(config), "data": shape, "versions": versions(), "seed": config.seed,
                 "device": str(device)}
    bar = tqdm(range(start_epoch, config.epochs + 1), disable=not progress, desc="train", unit="epoch")
    started = time.perf_counter()
    for epoch in bar:
        model.train()
        total = 0.0
        for i in torch.randperm(len(graphs_on_device), generator=shuffler).tolist():
            g = graphs_on_device[i]
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, config.precision):
                out = model(g.x, g.img if model.has_image else None, g.edge_index)
            loss = gist_loss([None if o is None else o.float() for o in out], g.x, g.img, config.use_img_loss)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clipping)
            optimizer.step()
            total += float(loss.detach())
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
