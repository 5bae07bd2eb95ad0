"""GIST umap_all.py: UMAP of the fused latent beside UMAP of the expression (see ``python umap_all.py --help``).

Reads results/<dataset>/gist.h5ad written by test.py and writes into results/<dataset>/figures/.
"""

import sys

from gist.cli.figures import umap_main

if __name__ == "__main__":
    sys.exit(umap_main())
