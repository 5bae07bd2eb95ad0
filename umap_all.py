"""GIST umap_all.py: draw UMAPs of the fused latent.

Not available yet: this entry point is delivered by issue #5 of the project tracker.
Today the package offers the readers (gist.io), the spatial graph (gist.graph) and the demo
dataset (`make demo`).
"""

import sys

if __name__ == "__main__":
    sys.exit("umap_all.py: not available yet (issue #5); run 'make demo' for what works today")
