"""GIST test.py: run inference, clustering and scoring with a trained checkpoint.

Not available yet: this entry point is delivered by issue #3 and #5 of the project tracker.
Today the package offers the readers (gist.io), the spatial graph (gist.graph) and the demo
dataset (`make demo`).
"""

import sys

if __name__ == "__main__":
    sys.exit("test.py: not available yet (issue #3 and #5); run 'make demo' for what works today")
