"""GIST extract_features.py: per-cell image patches -> features, plus the spatial graph, written
as prepared per-sample .h5ad files (see ``python extract_features.py --help``).

Example: ``python extract_features.py --dataset demo --extractor stats`` writes dataset/demo/features/.
"""

import sys

from gist.cli import extract_main

if __name__ == "__main__":
    sys.exit(extract_main())
