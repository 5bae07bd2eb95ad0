"""GIST mark_gene.py: Per-FOV map of one gene, raw vs denoised (see ``python mark_gene.py --help``).

Reads results/<dataset>/gist.h5ad written by test.py and writes into results/<dataset>/figures/.
"""

import sys

from gist.cli.figures import mark_gene_main

if __name__ == "__main__":
    sys.exit(mark_gene_main())
