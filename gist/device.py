"""Device and precision choices shared by extraction, training and inference."""

from __future__ import annotations

import contextlib

import torch

from gist.errors import GistInputError

#: Arithmetic of training and inference (:func:`autocast`).
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
#: Arithmetic of a foundation-model extractor (:func:`gist.pp.extractors.embed_patches`): the
#: autocast ones, and int8 dynamic quantisation (a CPU path) instead of tf32.
EXTRACTION_PRECISIONS = ("fp32", "bf16", "fp16", "int8")


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


@contextlib.contextmanager
def _tf32_matmuls(device: torch.device):
    """fp32 tensors, TF32 tensor-core matmuls on CUDA (Ampere and later); the CPU is unchanged."""
    if device.type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with torch.autocast(device.type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(before)


def autocast(device: torch.device, precision: str):
    """The precision of a forward pass: ``fp32``; ``tf32`` (fp32 storage, TF32 matmuls on CUDA,
    plain fp32 on the CPU); ``bf16``/``fp16`` autocast. Measure before using: on this project's CPU
    bf16 training was ~7x slower than fp32, and on an H200 bf16 was slower than fp32 too
    (docs/reproduction.md); tf32 has not been timed on a GPU by this project yet."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if precision == "tf32":
        return _tf32_matmuls(device)
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    raise GistInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
