"""Run a script with every atomic rename delayed: fault injection for the crash-safety tests.

``python tests/slow_writes.py SECONDS SCRIPT [ARGS...]`` runs ``SCRIPT`` as ``__main__`` with
``os.replace`` of a temporary file (what :func:`gist.utils.atomic_path` does last) waiting
``SECONDS`` first, so that a test can kill the run in the middle of a checkpoint write.
"""

import os
import runpy
import sys
import time

_replace = os.replace


def _slow_replace(src, dst, *args, **kwargs):
    if ".tmp" in os.path.basename(os.fspath(src)):
        time.sleep(DELAY)
    return _replace(src, dst, *args, **kwargs)


if __name__ == "__main__":
    DELAY = float(sys.argv[1])
    script = os.path.abspath(sys.argv[2])
    os.replace = _slow_replace
    sys.argv = [script, *sys.argv[3:]]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
