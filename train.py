"""GIST train.py: train the GIST model on a prepared dataset.

Not available yet: this entry point is delivered by issue #3 of the project tracker.
Today the package offers the readers (gist.io), the spatial graph (gist.graph) and the demo
dataset (`make demo`).
"""

import sys

if __name__ == "__main__":
    sys.exit("train.py: not available yet (issue #3); run 'make demo' for what works today")
