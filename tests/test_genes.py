"""Which genes the model sees (gist.pp.genes)."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gist.errors import GistInputError
from gist.pp.genes import MAX_GENES, choose_genes, restrict_genes, apply_gene_rule


def _samples(n_genes: int, n_cells: int = 120, informative: int = 20, seed: int = 0) -> list[ad.AnnData]:
    """Two samples of Poisson counts (gene means spread over two decades); the first ``informative``
    genes are 10x higher in half of the cells."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(-1.0, 1.0, n_genes)
    out = []
    for s in range(2):
        mean = np.tile(base, (n_cells, 1))
        mean[: n_cells // 2, :informative] *= 10.0
        counts = rng.poisson(mean).astype(np.float32)
        out.append(ad.AnnData(X=sp.csr_matrix(counts), var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]),
                              obs=pd.DataFrame(index=[f"s{s}c{i}" for i in range(n_cells)])))
    return out


def test_all_genes_up_to_the_maximum():
    samples = _samples(300)
    kept, choice = apply_gene_rule(samples, verbose=False)
    assert kept is samples and len(choice.genes) == 300 and "all genes" in choice.rule


def test_most_variable_genes_above_the_maximum_and_on_request():
    samples = _samples(MAX_GENES + 200)
    choice = choose_genes(samples)
    assert len(choice.genes) == MAX_GENES and "seurat_v3" in choice.rule
    forced = choose_genes(samples, n_top_genes=15)
    assert len(forced.genes) == 15 and set(forced.genes) <= {f"g{i}" for i in range(20)}  # the informative ones
    kept, _ = apply_gene_rule(samples, n_top_genes=15, verbose=False)
    assert [list(a.var_names) for a in kept] == [forced.genes, forced.genes]


def test_var_highly_variable_is_honoured_as_in_the_original():
    samples = _samples(4000)
    for a in samples:
        a.var["highly_variable"] = a.var_names.isin(["g5", "g7", "g3999"])
    choice = choose_genes(samples)
    assert choice.genes == ["g5", "g7", "g3999"] and "highly_variable" in choice.rule
    assert len(choose_genes(samples, n_top_genes=10).genes) == 10  # an explicit request wins
    for a in samples:
        a.var["highly_variable"] = False
    with pytest.raises(GistInputError, match="marks no gene"):
        choose_genes(samples)


def test_restrict_to_a_checkpoints_genes():
    samples = _samples(50)
    kept = restrict_genes(samples, ["g3", "g1"], "checkpoint x.pth")
    assert list(kept[0].var_names) == ["g3", "g1"]
    with pytest.raises(GistInputError, match="trained on 2 genes, 1 of which the data lack"):
        restrict_genes(samples, ["g3", "nope"], "checkpoint x.pth")
