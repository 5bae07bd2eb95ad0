import json
import pickle
import subprocess
import sys

import anndata as ad
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import ROOT, shared_path
from gist.errors import GistInputError
from gist.io.samples import join_samples
from gist.pp.extract import ExtractConfig, extract_samples
from gist.pp.stats import stats_feature_names


def _run(script, *args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def _accuracy(x, y):
    return cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)), x, y, cv=5).mean()


@pytest.fixture(scope="module")
def demo_features(tmp_path_factory):
    out = tmp_path_factory.mktemp("root")
    result = _run("extract_features.py", "--dataset", "demo", "--no_progress", cwd=out)  # no other flag
    assert result.returncode == 0, result.stderr
    folder = out / "dataset" / "demo" / "features"
    return folder, [ad.read_h5ad(p) for p in sorted(folder.glob("*.h5ad"))]


def test_demo_extraction_writes_prepared_samples(demo_features):
    folder, adatas = demo_features
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(adatas) == 4 and set(manifest["samples"]) == {a.obs["sample"].iloc[0] for a in adatas}
    for adata in adatas:
        imgs = adata.obsm["imgs"]
        assert isinstance(imgs, np.ndarray) and imgs.dtype == np.float32
        assert imgs.shape == (adata.n_obs, len(stats_feature_names())) and np.isfinite(imgs).all()
        assert adata.obsp["spatial_connectivities"].nnz > 0 and "Spatial_Net" in adata.uns
        assert adata.uns["gist_features"]["extractor"] == "stats"
    # the generated demo's cells, counts, obs columns (dtypes, categories) and each FOV's own image, as made
    from gist.demo import make_demo

    for adata, original in zip(adatas, make_demo(n_fovs=4, seed=0)):
        assert adata.obs_names.equals(original.obs_names) and (adata.X != original.X).nnz == 0
        assert list(adata.obs.columns) == list(original.obs.columns)
        assert all(adata.obs[c].dtype == original.obs[c].dtype for c in original.obs.columns)
        (name,) = adata.uns["spatial"]
        np.testing.assert_array_equal(adata.uns["spatial"][name]["images"]["hires"],
                                      original.uns["spatial"][name]["images"]["hires"])


def test_stats_features_carry_the_image_signal(demo_features):
    _, adatas = demo_features
    x = np.concatenate([a.obsm["imgs"] for a in adatas])
    y = np.concatenate([a.obs["cell_type"].astype(str) for a in adatas])
    pair = np.isin(y, ["tumors", "epithelial"])  # identical expression, different look
    assert _accuracy(x[pair], y[pair]) > 0.9
    assert _accuracy(x, y) > 0.8


def test_resume_skips_done_samples_and_failures_leave_no_partial_file(tmp_path, monkeypatch, demo_small):
    calls = {"n": 0}
    original = ad.AnnData.write_h5ad

    def flaky(self, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(ad.AnnData, "write_h5ad", flaky)
    config = ExtractConfig(extractor="stats", rad_cutoff=80)
    with pytest.raises(OSError, match="disk full"):
        extract_samples(join_samples(demo_small), tmp_path, config, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_fov001.h5ad", "manifest.json"]
    first_written = (tmp_path / "demo_fov001.h5ad").stat().st_mtime_ns
    monkeypatch.setattr(ad.AnnData, "write_h5ad", original)
    manifest = extract_samples(join_samples(demo_small), tmp_path, config, resume=True, progress=False)
    assert set(manifest["samples"]) == {"demo_fov001", "demo_fov002"}
    assert (tmp_path / "demo_fov001.h5ad").stat().st_mtime_ns == first_written
    with pytest.raises(GistInputError, match="other settings"):
        extract_samples(join_samples(demo_small), tmp_path, ExtractConfig(extractor="stats", rad_cutoff=50), resume=True,
                        progress=False)


def _small_h5ad_with_image(tmp_path):
    from gist.demo import make_demo

    a = make_demo(n_fovs=1, seed=4, image_size=256)[0]
    image = a.uns["spatial"]["demo_fov001"]["images"]["hires"]
    cv2.imwrite(str(tmp_path / "he.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    del a.uns["spatial"], a.obsm["control_counts"]
    a.write_h5ad(tmp_path / "cells.h5ad")
    return a


def test_foundation_model_through_the_cli(tmp_path):
    from gist.pp.extractors import REGISTRY

    a = _small_h5ad_with_image(tmp_path)
    torch.manual_seed(0)
    torch.save(REGISTRY["ctranspath"].build().state_dict(), tmp_path / "ctranspath.pth")
    result = _run("extract_features.py", "--data", str(tmp_path / "cells.h5ad"), "--image", str(tmp_path / "he.png"),
                  "--extractor", "ctranspath", "--weights", str(tmp_path / "ctranspath.pth"), "--batch_size", "8",
                  "--out", str(tmp_path / "feat"), "--no_progress")
    assert result.returncode == 0, result.stderr
    (out,) = [ad.read_h5ad(p) for p in (tmp_path / "feat").glob("*.h5ad")]
    assert out.obsm["imgs"].shape == (a.n_obs, 768) and np.isfinite(out.obsm["imgs"]).all()
    bad = _run("extract_features.py", "--data", str(tmp_path / "cells.h5ad"), "--image", str(tmp_path / "he.png"),
               "--extractor", "uni", "--weights", str(tmp_path / "ctranspath.pth"), "--out", str(tmp_path / "f2"))
    assert bad.returncode == 2 and "do not match the uni architecture" in bad.stderr and "Traceback" not in bad.stderr


def test_no_image_needs_extractor_none_then_trains_gene_branch(tmp_path):
    _small_h5ad_with_image(tmp_path)
    refused = _run("extract_features.py", "--data", str(tmp_path / "cells.h5ad"), "--out", str(tmp_path / "f"))
    assert refused.returncode == 2 and "--extractor none" in refused.stderr
    done = _run("extract_features.py", "--data", str(tmp_path / "cells.h5ad"), "--extractor", "none",
                "--out", str(tmp_path / "f"), "--no_progress")
    assert done.returncode == 0, done.stderr
    (prepared,) = [ad.read_h5ad(p) for p in (tmp_path / "f").glob("*.h5ad")]
    assert "imgs" not in prepared.obsm and prepared.obsp["spatial_connectivities"].nnz > 0
    trained = _run("train.py", "--data", str(tmp_path / "f"), "--epochs", "2", "--hidden", "32", "8",
                   "--save_path", str(tmp_path / "ck"), "--no_progress")
    assert trained.returncode == 0 and "gene branch alone" in trained.stdout, trained.stderr
    tested = _run("test.py", "--data", str(tmp_path / "f"), "--save_path", str(tmp_path / "ck"),
                  "--result_path", str(tmp_path / "res"), "--no_cluster")
    assert tested.returncode == 0 and "gene branch alone" in tested.stdout, tested.stderr
    result = ad.read_h5ad(tmp_path / "res" / "gist.h5ad")
    assert "img_pred" not in result.obsm and not result.uns["gist"]["image_branch"]


def test_from_pickle_warns_and_keeps_original_features(tmp_path):
    from gist.demo import make_demo

    adatas = make_demo(n_fovs=2, seed=5, image_size=256)
    for a in adatas:
        a.obsm["imgs"] = pd.DataFrame(np.random.default_rng(0).normal(size=(a.n_obs, 16)), index=a.obs_names)
        del a.obs["sample"]
    with open(tmp_path / "adatas_list.pkl", "wb") as fh:
        pickle.dump(adatas, fh)
    result = _run("extract_features.py", "--from-pickle", str(tmp_path / "adatas_list.pkl"), "--extractor", "none",
                  "--out", str(tmp_path / "f"), "--no_progress")
    assert result.returncode == 0, result.stderr
    assert "runs code from that file" in result.stderr
    files = sorted((tmp_path / "f").glob("*.h5ad"))
    assert [p.stem for p in files] == ["sample0", "sample1"]
    first = ad.read_h5ad(files[0])
    np.testing.assert_allclose(first.obsm["imgs"], adatas[0].obsm["imgs"].to_numpy(), rtol=1e-6)
    # each sample keeps its one image, now under its sample's name
    np.testing.assert_array_equal(first.uns["spatial"]["sample0"]["images"]["hires"],
                                  adatas[0].uns["spatial"]["demo_fov001"]["images"]["hires"])


def test_real_cosmx_extraction_end_to_end(tmp_path):
    root = shared_path("cosmx_lung12_mini")
    result = _run("extract_features.py", "--dataset", "nanostring", "--root", str(root), "--out", str(tmp_path),
                  "--no_progress")
    assert result.returncode == 0, result.stderr
    from gist.io import read_cosmx
    from gist.io.samples import split_samples

    expected, _ = split_samples(read_cosmx(root))
    written = [ad.read_h5ad(p) for p in sorted(tmp_path.glob("*.h5ad"))]
    assert [a.n_obs for a in written] == [a.n_obs for a in expected]
    assert all(np.isfinite(a.obsm["imgs"]).all() and a.obsm["imgs"].shape[1] == 54 for a in written)


def test_real_spots_without_image_prepare_with_extractor_none(tmp_path):
    path = shared_path("her2st_spots", "her2st_B1.h5ad")
    result = _run("extract_features.py", "--data", str(path), "--extractor", "none", "--rad_cutoff", "300",
                  "--out", str(tmp_path), "--no_progress")
    assert result.returncode == 0, result.stderr
    (adata,) = [ad.read_h5ad(p) for p in tmp_path.glob("*.h5ad")]
    per_spot = adata.obsp["spatial_connectivities"].nnz / adata.n_obs
    assert adata.n_obs == 295 and 2 <= per_spot <= 4  # square ~218 px lattice: at most 4 within 300 px
