"""GIST: Gene expression and histology Integration for SpaTial cellular profiling."""

__version__ = "0.1.0"

from gist import celltypes, graph, io  # noqa: E402

__all__ = ["celltypes", "graph", "io", "__version__"]
