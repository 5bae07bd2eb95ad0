"""GIST: Gene expression and histology Integration for SpaTial cellular profiling.

Submodules load on first use (``gist.io``, ``gist.graph``, ``gist.demo``, ``gist.celltypes``),
so ``import gist`` is cheap and ``python -m gist.demo`` runs cleanly.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("celltypes", "demo", "errors", "graph", "io", "utils")
__all__ = [*_SUBMODULES, "__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"gist.{name}")
    raise AttributeError(f"module 'gist' has no attribute {name!r}")
