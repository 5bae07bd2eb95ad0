"""Parameter texts shared by docstrings and ``--help`` (scanpy's ``_doc_params``): one text per
parameter, so that the API and the command lines say the same thing.

>>> @doc_params(device=DOC["device"])
... def f(device="auto"):
...     '''Parameters
...     ----------
...     device
...         {device}
...     '''
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

#: One sentence per shared parameter (no trailing default: the CLI adds its own).
DOC: dict[str, str] = {
    "device": "auto (CUDA when present), cpu or cuda",
    "strict": "refuse input whose counts are not whole numbers (otherwise a warning that raw counts are expected)",
    "root": "folder holding the datasets",
    "k_cutoff": "connect each cell to its K nearest cells instead of a radius",
    "pad": "how windows leaving the image are filled (reflect or constant)",
    "flip_y": "image rows run against the y coordinate (row = height - y)",
    "batch_size": "patches per forward pass",
    "num_workers": "DataLoader worker processes cropping patches",
    "extract_precision": ("foundation-model arithmetic: fp32; fp16 autocast on CUDA; int8 = dynamic quantisation, "
                          "~2x faster on CPU; bf16 only on CPUs with bf16 units"),
    "patch_size": "window side in image pixels before resizing to the extractor's input (default: 240 as the paper; "
                  "Visium: the spot diameter)",
    "no_progress": "hide the progress bars",
}


def doc_params(**texts: str) -> Callable[[F], F]:
    """Fill ``{name}`` fields of the decorated object's docstring with ``texts``."""
    def fill(obj: F) -> F:
        obj.__doc__ = (obj.__doc__ or "").format(**texts)
        return obj

    return fill
