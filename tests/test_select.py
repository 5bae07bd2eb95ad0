import anndata as ad
import numpy as np
import pytest
import torch

from gist.tl.clustering import res_search
from gist.pp.graph import Cal_Spatial_Net
from gist.errors import GistInputError
from gist.pp.stats import add_patch_stats
from gist.tl.inference import oracle_select
from gist.tl.checkpoints import epoch_checkpoints
from gist.tl.training import TrainConfig, train
from gist.tl._inputs import to_graph


def test_res_search_hits_the_cluster_count_on_separated_blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, size=(5, 6))
    latent = np.concatenate([c + rng.normal(0, 0.5, size=(60, 6)) for c in centres]).astype(np.float32)
    a = ad.AnnData(X=np.zeros((300, 1), np.float32))
    a.obsm["X_gist"] = latent
    resolution = res_search(a, 5, seed=0)
    assert 0 < resolution < 3 and a.obs["leiden"].nunique() == 5
    truth = np.repeat(np.arange(5), 60)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, a.obs["leiden"]) > 0.95


def test_oracle_picks_the_best_scoring_checkpoint_and_needs_labels(tmp_path):
    from gist.demo import make_demo

    adatas = [Cal_Spatial_Net(add_patch_stats(a), rad_cutoff=80, verbose=False) for a in make_demo(n_fovs=2, seed=2, image_size=448)]
    graphs = [to_graph(a, str(i)) for i, a in enumerate(adatas)]
    train(graphs, TrainConfig(epochs=4, save_every=2, hidden=(64, 8), seed=3), tmp_path, progress=False)
    candidates = epoch_checkpoints(tmp_path)
    assert [e for e, _ in candidates] == [2, 4]
    epoch, path, scores = oracle_select(adatas, candidates, "merge_cell_type", 8, torch.device("cpu"))
    assert set(scores) == {2, 4} and scores[epoch] == max(scores.values())
    assert path == dict(candidates)[epoch] and all(-1 <= s <= 1 for s in scores.values())
    with pytest.raises(GistInputError, match="obs\\['nope'\\] is missing"):
        oracle_select(adatas, candidates, "nope", 8, torch.device("cpu"))
