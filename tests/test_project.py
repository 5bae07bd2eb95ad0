"""The project keeps the promises its README makes: layout, pins and the demo command."""

import re
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPTS = ["train.py", "test.py", "extract_features.py", "spatial.py", "umap_all.py", "violin.py", "mark_gene.py"]


def test_layout():
    for name in SCRIPTS + ["README.md", "requirements.txt", "pyproject.toml", "Makefile", ".ci/run"]:
        assert (ROOT / name).is_file(), name
    for folder in ["gist", "dataset", "checkpoint", "results", "tests", "bench", "docs"]:
        assert (ROOT / folder).is_dir(), folder


def test_requirements_are_exact_pins():
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    lines = [l for l in lines if l]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][^\s]*", l) for l in lines), lines
    pins = dict(l.split("==") for l in lines)
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["pynndescent"].startswith("0.5")


def test_readme_quick_start_comes_first():
    text = (ROOT / "README.md").read_text()
    first_block = text[text.index("```") : text.index("```", text.index("```") + 3)]
    assert "make demo" in first_block and "make test" in first_block


def test_demo_command_writes_export_and_summary(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "gist.demo", "--out", str(out), "--n_fovs", "4", "--seed", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "Demo_exprMat_file.csv").is_file() and len(list((out / "CellComposite").glob("*.jpg"))) == 4
    rows = [l for l in result.stdout.splitlines() if l.strip().startswith("Demo_fov")]
    assert len(rows) == 4
    for row in rows:
        sample, cells, genes, edges, per_cell, zeros, types = row.split()
        assert int(genes) == 300 and int(types) == 8 and 3 < float(per_cell) < 15


@pytest.mark.parametrize("name", ["train_parser", "test_parser", "extract_parser"])
def test_every_flag_has_help(name):
    from gist import cli

    parser = getattr(cli, name)()
    flags = {a.option_strings[-1]: a.help for a in parser._actions if a.option_strings}
    assert {"--dataset", "--data", "--device"} <= set(flags)
    assert all(help_text and len(help_text) > 10 for help_text in flags.values()), flags


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_runs(script):
    result = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--dataset" in result.stdout
