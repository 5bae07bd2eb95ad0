"""A killed run resumes to exactly the result of an uninterrupted one, leaves no truncated file,
and two runs never write into one folder at once (demo data, small models: about a minute)."""

import random
import signal
import subprocess
import sys
import time

import anndata as ad
import numpy as np
import pytest
import torch

from conftest import ROOT

TRAIN_OPTIONS = ["--epochs", "6", "--save_every", "2", "--hidden", "32", "8", "--ensemble", "2", "--seed", "3",
                 "--no_progress"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Two small demo FOVs: ``cells.h5ad`` with their images (for extraction) and ``prepared.h5ad``
    with image features and graphs (for training)."""
    from gist.pp.graph import build_graphs
    from gist.demo import make_demo
    from gist.pp.stats import add_patch_stats

    folder = tmp_path_factory.mktemp("small")
    fovs = make_demo(n_fovs=2, seed=4, image_size=448)
    for fov in fovs:
        fov.write_h5ad(folder / f"{fov.obs['sample'].iloc[0]}.h5ad")
    prepared = folder / "prepared"
    prepared.mkdir()
    fovs = [add_patch_stats(a) for a in fovs]
    build_graphs(fovs, 80.0, verbose=False)
    for fov in fovs:
        fov.uns.pop("Spatial_Net", None)
        fov.write_h5ad(prepared / f"{fov.obs['sample'].iloc[0]}.h5ad")
    return folder


def _train_args(small, folder, *extra):
    return ["--data", str(small / "prepared"), *TRAIN_OPTIONS, "--save_path", str(folder), *extra]


def _start(script, *args, slow_writes=None):
    """Run ``script``; with ``slow_writes`` every atomic rename first waits that many seconds
    (tests/slow_writes.py), so that a kill can land in the middle of a write."""
    command = [sys.executable, str(ROOT / script), *args]
    if slow_writes is not None:
        command = [sys.executable, str(ROOT / "tests" / "slow_writes.py"), str(slow_writes), str(ROOT / script), *args]
    return subprocess.Popen(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _run(script, *args):
    proc = _start(script, *args)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _kill_when(proc, ready, timeout=300):
    """SIGKILL ``proc`` once ``ready()`` is true (polled), as a crash would."""
    start = time.time()
    while not ready():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - start < timeout, "the run never reached the kill point"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def _weights(folder):
    return {k: torch.load(folder / f"final_{k}.pth", weights_only=True) for k in (0, 1)}


def _assert_complete(folder):
    """Nothing half-written: no temporary or lock file left, every checkpoint loads."""
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers
    for path in folder.glob("*.pt*"):
        torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small):
    folder = tmp_path_factory.mktemp("uninterrupted")
    _run("train.py", *_train_args(small, folder))
    return _weights(folder)


def _equal(a, b):
    return all(torch.equal(a[k][name], b[k][name]) for k in a for name in a[k])


def test_killed_mid_write_and_mid_epoch_resumes_to_the_same_weights(tmp_path, small, reference):
    # 1. during the second checkpoint write of member 0: its temporary file exists, not yet renamed
    proc = _start("train.py", *_train_args(small, tmp_path), slow_writes=0.5)
    _kill_when(proc, lambda: (tmp_path / "final_2_0.pth").is_file() and any(tmp_path.glob(".final_4_0*.tmp*")))
    assert (tmp_path / ".gist.lock").is_file() and any(tmp_path.glob(".*.tmp*"))  # what a crash leaves
    # 2. resumed, then killed again at a random moment of member 1's epochs
    proc = _start("train.py", *_train_args(small, tmp_path, "--resume"))
    _kill_when(proc, lambda: (tmp_path / "train_state_1.pt").is_file())
    time.sleep(random.Random(7).uniform(0.0, 0.3))
    # 3. a clean resume finishes: exactly the uninterrupted weights, nothing half-written
    _run("train.py", *_train_args(small, tmp_path, "--resume"))
    _assert_complete(tmp_path)
    assert _equal(_weights(tmp_path), reference)


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, small):
    first = _start("train.py", *_train_args(small, tmp_path), slow_writes=1.0)
    try:
        deadline = time.time() + 300
        while not (tmp_path / ".gist.lock").is_file():
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        second = _start("train.py", *_train_args(small, tmp_path))
        out, err = second.communicate(timeout=300)
        assert second.returncode == 2 and "is in use by another run" in err and "Traceback" not in err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)


def test_extraction_killed_mid_write_resumes_to_the_same_files(tmp_path, small):
    args = ["--data", str(small / "demo_fov001.h5ad"), "--extractor", "stats", "--no_progress"]
    _run("extract_features.py", *args, "--out", str(tmp_path / "ref"))
    out = tmp_path / "cut"
    proc = _start("extract_features.py", *args, "--out", str(out), slow_writes=0.5)
    _kill_when(proc, lambda: any(out.glob(".*.tmp*.h5ad")))
    _run("extract_features.py", *args, "--out", str(out), "--resume")
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    files = sorted(p.name for p in (tmp_path / "ref").glob("*.h5ad"))
    assert files == sorted(p.name for p in out.glob("*.h5ad")) and len(files) == 1
    for name in files:
        a, b = ad.read_h5ad(tmp_path / "ref" / name), ad.read_h5ad(out / name)
        assert np.array_equal(a.obsm["imgs"], b.obsm["imgs"]) and (a.obsp["spatial_connectivities"] != b.obsp["spatial_connectivities"]).nnz == 0
