"""GIST extract_features.py: crop per-cell image patches and embed them.

Not available yet: this entry point is delivered by issue #4 of the project tracker.
Today the package offers the readers (gist.io), the spatial graph (gist.graph) and the demo
dataset (`make demo`).
"""

import sys

if __name__ == "__main__":
    sys.exit("extract_features.py: not available yet (issue #4); run 'make demo' for what works today")
