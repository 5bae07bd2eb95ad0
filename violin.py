"""GIST violin.py: Stacked violins of marker genes, raw vs denoised (see ``python violin.py --help``).

Reads results/<dataset>/gist.h5ad written by test.py and writes into results/<dataset>/figures/.
"""

import sys

from gist.cli.figures import violin_main

if __name__ == "__main__":
    sys.exit(violin_main())
