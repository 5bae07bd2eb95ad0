"""Checkpoint files in one place: their names, records, resume states, listing and loading.

A checkpoint folder (``train.py --save_path``; ``R`` = repeat, one per ensemble member) holds:

- ``final_R.pth``: the member's final weights, a plain ``TransImg`` state dict as the original
  writes it, with ``final_R.json`` beside it (arguments, recipe, genes, data shape, versions, seed,
  epoch, loss, ensemble members);
- ``final_{epoch}_R.pth`` (+ ``.json``) every ``save_every`` epochs (the files ``--select oracle`` reads);
- ``train_state_R.pt``: model, optimiser and shuffling state of the newest checkpoint, for
  ``--resume`` (tensors and plain types only, loaded with ``weights_only=True``);
- ``loss_R.csv`` and ``loss_R.png``: loss per epoch.

Every file is written to a temporary name and renamed, so an interrupted run leaves none half-written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

from gist.errors import GistInputError
from gist.tl.model import TransImg, dims_from_state_dict
from gist.utils import atomic_path


def final_file(folder: str | Path, repeat: int = 0) -> Path:
    """The final weights of member ``repeat``: ``final_<repeat>.pth``."""
    return Path(folder) / f"final_{repeat}.pth"


def epoch_file(folder: str | Path, epoch: int, repeat: int = 0) -> Path:
    """The weights of member ``repeat`` after ``epoch``: ``final_<epoch>_<repeat>.pth``."""
    return Path(folder) / f"final_{epoch}_{repeat}.pth"


def state_file(folder: str | Path, repeat: int = 0) -> Path:
    """The resume state of member ``repeat``: ``train_state_<repeat>.pt``."""
    return Path(folder) / f"train_state_{repeat}.pt"


def save_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))


def save_checkpoint(path: Path, model: TransImg, meta: dict) -> None:
    """``model``'s state dict at ``path`` (``.pth``, the original's format) and its record beside it (``.json``)."""
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    save_json(path.with_suffix(".json"), meta)


def write_losses(save_path: Path, repeat: int, losses: list[float]) -> None:
    """The loss curve of member ``repeat``: ``loss_<repeat>.csv`` and a plot, ``loss_<repeat>.png``."""
    frame = pd.DataFrame({"epoch": np.arange(1, len(losses) + 1), "loss": losses})
    with atomic_path(save_path / f"loss_{repeat}.csv") as tmp:
        frame.to_csv(tmp, index=False)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # only once the backend is chosen (training runs headless)

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


def save_state(path: Path, model: TransImg, optimizer: torch.optim.Optimizer, shuffler: torch.Generator,
                losses: list[float], epoch: int) -> None:
    """The resume state: model, optimiser and shuffling state after ``epoch`` (tensors and plain types)."""
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "shuffler": shuffler.get_state(),
                    "losses": losses, "epoch": epoch, "hidden_dims": model.hidden_dims}, tmp)


def finished_member(save_path: Path, config, model: TransImg) -> tuple[TransImg, list[float]] | None:
    """``(model, losses)`` of a member that already finished in ``save_path`` with this
    configuration (``final_<repeat>.pth``, its record, its loss curve), loaded into ``model``;
    ``None`` when there is none to reuse, so it must be trained."""
    weights = final_file(save_path, config.repeat)
    record, curve = weights.with_suffix(".json"), save_path / f"loss_{config.repeat}.csv"
    if not (weights.is_file() and record.is_file() and curve.is_file()):
        return None
    try:
        meta = json.loads(record.read_text())
        same = {k: meta["config"][k] for k in ("epochs", "seed", "lr", "hidden", "recipe")} == \
            {"epochs": config.epochs, "seed": config.seed, "lr": config.lr, "hidden": list(config.hidden), "recipe": config.recipe}
        if not (same and "stopped" in meta):
            return None
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (ValueError, KeyError, RuntimeError, OSError):
        return None
    print(f"repeat {config.repeat}: finished before ({weights.name}), not trained again")
    return model.cpu(), [float(v) for v in pd.read_csv(curve)["loss"]]


def epoch_checkpoints(save_path: str | Path, repeat: int = 0) -> list[tuple[int, Path]]:
    """All ``final_{epoch}_{repeat}.pth`` in ``save_path`` as ``(epoch, path)``, by epoch."""
    pattern = re.compile(rf"final_(\d+)_{repeat}\.pth$")
    return sorted((int(m.group(1)), p) for p in Path(save_path).glob(f"final_*_{repeat}.pth") if (m := pattern.match(p.name)))


def latest_epoch_checkpoint(save_path: str | Path, repeat: int = 0) -> tuple[int, Path] | None:
    """The newest ``final_{epoch}_{repeat}.pth`` in ``save_path``, or ``None``."""
    found = epoch_checkpoints(save_path, repeat)
    return found[-1] if found else None


def load_state(path: Path, device: torch.device | str = "cpu") -> dict:
    """A resume state written by :func:`save_state`.

    Raises
    ------
    GistInputError
        If the file cannot be read.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # pickle/zip errors come in many types
        raise GistInputError(f"--resume: {path} is not a readable training state ({err}); delete it to "
                             "resume from the newest final_<epoch> checkpoint instead") from None


def load_weights(path: Path, device: torch.device | str = "cpu") -> dict:
    """The state dict in ``path`` (loaded with ``weights_only=True``)."""
    return torch.load(path, map_location=device, weights_only=True)


def read_record(checkpoint: Path) -> dict | None:
    """The JSON record written beside a checkpoint, or ``None`` (the original's checkpoints have none)."""
    path = Path(checkpoint).with_suffix(".json")
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise GistInputError(f"{path} is not valid JSON ({err})") from None


def ensemble_members(checkpoint: Path, record: dict | None) -> list[Path]:
    """The member checkpoints of the ensemble ``checkpoint`` belongs to (itself alone without a record)."""
    members = (record or {}).get("ensemble", {}).get("members") or []
    if len(members) <= 1:
        return [checkpoint]
    paths = [final_file(checkpoint.parent, r) for r in members]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise GistInputError(
            f"{checkpoint.with_suffix('.json')} names an ensemble of {len(members)} models but {', '.join(missing)} "
            f"is missing in {checkpoint.parent} (finish training with train.py --resume, or pass --pretrain FILE "
            "to use one model)"
        )
    return paths


def load_checkpoint(path: str | Path, n_genes: int, img_dim: int) -> TransImg:
    """Load a ``TransImg`` state dict (ours or the original's) safely, checking it fits the data.

    Raises
    ------
    GistInputError
        If the file is missing or unreadable, or its gene / image dimensions differ from the data's
        (a model trained without the image branch fits data with image features: it ignores them).
    """
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f"checkpoint not found: {path} (train first, or pass --pretrain FILE)")
    try:
        state = load_weights(path)
    except Exception as err:  # pickle/zip errors come in many types
        raise GistInputError(f"checkpoint {path} is not a loadable state dict: {err}") from None
    if isinstance(state, dict) and "model" in state and "conv1.lin_key.weight" not in state:
        state = state["model"]
    try:
        dims, options = dims_from_state_dict(state)
    except ValueError as err:
        raise GistInputError(f"checkpoint {path}: {err}") from None
    if dims[0] != n_genes or dims[1] not in (img_dim, 0):  # a model without image branch reads the genes alone
        raise GistInputError(
            f"checkpoint {path} expects {dims[0]} genes and {dims[1]}-d image features, but the data has "
            f"{n_genes} genes and {img_dim}-d image features"
        )
    model = TransImg(dims, **options)
    model.load_state_dict(state, strict=True)
    return model
