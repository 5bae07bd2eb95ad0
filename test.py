"""GIST test.py: embed cells with a trained checkpoint and write results/<dataset>/gist.h5ad
(see ``python test.py --help``)."""

import sys

from gist.cli import test_main

if __name__ == "__main__":
    sys.exit(test_main())
