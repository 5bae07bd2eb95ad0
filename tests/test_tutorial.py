"""docs/tutorial.py runs whole in a fresh interpreter (as a notebook kernel would) and makes its figures."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tutorial_runs_in_a_fresh_interpreter(tmp_path):
    env = os.environ | {"GIST_TUTORIAL_OUT": str(tmp_path), "GIST_TUTORIAL_EPOCHS": "5", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "tutorial.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(810, 30) gist" in done.stdout  # fused latent of every cell, default recipe
    assert "'ari'" in done.stdout
    figures = sorted(p.name for p in tmp_path.glob("*.png"))
    assert figures == ["gene_KRAS.png", "spatial.png", "umap.png", "violin.png"]
    assert all((tmp_path / f).stat().st_size > 5000 for f in figures)
