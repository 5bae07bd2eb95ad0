"""GIST spatial.py: Spatial domain maps per FOV (ground truth vs matched GIST clusters) (see ``python spatial.py --help``).

Reads results/<dataset>/gist.h5ad written by test.py and writes into results/<dataset>/figures/.
"""

import sys

from gist.cli.figures import spatial_main

if __name__ == "__main__":
    sys.exit(spatial_main())
