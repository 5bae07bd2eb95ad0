"""GIST train.py: train the hybrid graph-transformer autoencoder (see ``python train.py --help``).

Example (the paper's command): ``python train.py --dataset nanostring --test_only 0 --save_path
checkpoint/nanostring/ --seed 1234 --epochs 1000 --lr 1e-3``.
"""

import sys

from gist.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
