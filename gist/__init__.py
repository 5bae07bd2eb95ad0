"""GIST: Gene expression and histology Integration for SpaTial cellular profiling.

In scanpy's split, one folder per step as the data flow: ``gist.io`` (readers, one AnnData per
dataset), ``gist.pp`` (spatial graph, image features, genes), ``gist.tl`` (fit, embed, cluster,
score) and ``gist.pl`` (figures); ``gist.cli`` maps the scripts onto them. Key names are in
``gist.keys``, named datasets in ``gist.datasets``. Submodules load on first use, so ``import gist``
is cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("cli", "datasets", "demo", "device", "errors", "io", "keys", "pl", "pp", "tl", "utils")
__all__ = [*_SUBMODULES, "__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"gist.{name}")
    raise AttributeError(f"module 'gist' has no attribute {name!r}")
