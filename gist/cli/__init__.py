"""The command lines (``train.py``, ``test.py``, ``extract_features.py`` and the figure scripts) as
importable, tested functions. Each script at the top level is a thin map onto one of them:

- :mod:`gist.cli.extract`: ``extract_features.py`` (image features and graphs -> prepared files);
- :mod:`gist.cli.train`: ``train.py`` (prepared files -> checkpoints);
- :mod:`gist.cli.test`: ``test.py`` (checkpoints -> ``gist.h5ad``, clusters, scores);
- :mod:`gist.cli.figures`: ``spatial.py``, ``umap_all.py``, ``violin.py``, ``mark_gene.py``.

Arguments they share are defined once in :mod:`gist.cli._args`.
"""

from gist.cli.extract import extract_main, extract_parser
from gist.cli.test import test_main, test_parser, wants_denoised
from gist.cli.train import train_main, train_parser

__all__ = ["extract_main", "extract_parser", "test_main", "test_parser", "train_main", "train_parser", "wants_denoised"]
