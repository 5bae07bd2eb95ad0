"""Device and precision choices shared by extraction, training and inference."""

from __future__ import annotations

import torch

from gist.errors import GistInputError

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GistInputError("--device cuda was requested but no CUDA GPU is available (use --device auto or cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise GistInputError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """bf16/fp16 autocast on request; fp32 otherwise. Measure before using: on this project's CPU
    bf16 training was ~7x slower than fp32 (docs/reproduction.md)."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    raise GistInputError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
