"""Several processes (GPUs or CPU processes, one or more machines) with ``torchrun``.

``torchrun --nproc_per_node N train.py ...`` starts N copies of train.py with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in the environment. :func:`setup`
joins them into one process group (nccl on GPUs, gloo on CPUs); training then wraps the model in
:class:`~torch.nn.parallel.DistributedDataParallel`, gives each rank its share of every epoch's
mini-batches, averages gradients, and lets rank 0 alone write checkpoints and logs. Without
``torchrun`` every function here is the single-process no-op.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def requested() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the running group, else the one torchrun gave it (0 without)."""
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes files and prints."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group when there is one; returns this rank's device.

    On CUDA each rank takes GPU ``LOCAL_RANK`` and the nccl backend; on the CPU gloo.
    """
    device = local_device(device)
    if requested() and not active():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def local_device(device: torch.device) -> torch.device:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; other devices are kept."""
    if device.type == "cuda" and device.index is None and requested():
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (every ``world_size``-th, from ``rank``)."""
    return list(items[rank()::world_size()])


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (the values themselves in one process)."""
    if not active():
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def weights_identical(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether every rank holds the same parameters (bit for bit); ``True`` in one process."""
    if not active():
        return True
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()]).to(device)
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    same = torch.tensor([float(torch.equal(flat, reference))], dtype=torch.float64, device=device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item() == 1.0)


def barrier() -> None:
    if active():
        dist.barrier()


def teardown() -> None:
    """Leave the process group (end of train.py)."""
    if active():
        dist.destroy_process_group()
