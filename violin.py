"""GIST violin.py: draw stacked violins of marker genes before/after denoising.

Not available yet: this entry point is delivered by issue #5 of the project tracker.
Today the package offers the readers (gist.io), the spatial graph (gist.graph) and the demo
dataset (`make demo`).
"""

import sys

if __name__ == "__main__":
    sys.exit("violin.py: not available yet (issue #5); run 'make demo' for what works today")
