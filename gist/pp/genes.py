"""Which genes the model sees: the original's ``var['highly_variable']``, or the most variable ones.

The rule (:func:`choose_genes`), in order:

1. ``n_top_genes`` given: the ``n_top_genes`` most variable genes by scanpy's ``seurat_v3``
   flavour on the raw counts of all samples pooled;
2. the data carry ``var['highly_variable']`` (the original's prepared files do): those genes;
3. at most :data:`MAX_GENES` genes: all of them;
4. otherwise the :data:`MAX_GENES` most variable (``seurat_v3``, pooled).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

from gist.errors import GistInputError
from gist.keys import HVG_KEY

#: Genes kept by default when the data have more (and no ``var['highly_variable']``).
MAX_GENES = 3000


@dataclass
class GeneChoice:
    """The genes chosen and why (recorded in checkpoints)."""

    genes: list[str]
    rule: str

    def describe(self) -> str:
        return f"{len(self.genes)} genes ({self.rule})"


def seurat_v3_genes(adatas: list[AnnData], n_top_genes: int) -> list[str]:
    """The ``n_top_genes`` most variable genes of all samples pooled (scanpy ``seurat_v3`` on raw
    counts), in the data's gene order."""

    counts = [sp.csr_matrix(a.X, dtype=np.float32) for a in adatas]
    pooled = AnnData(X=sp.vstack(counts).tocsr(), var=pd.DataFrame(index=adatas[0].var_names.copy()))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*expects raw count data.*")
        sc.pp.highly_variable_genes(pooled, n_top_genes=int(n_top_genes), flavor="seurat_v3")
    return list(pooled.var_names[pooled.var[HVG_KEY].to_numpy()])


def marked_genes(adata: AnnData) -> np.ndarray | None:
    """The boolean mask of ``var['highly_variable']``, or ``None`` when the data carry no marks.

    Raises
    ------
    GistInputError
        If the column is not True/False per gene or marks no gene.
    """
    if HVG_KEY not in adata.var:
        return None
    flags = adata.var[HVG_KEY].to_numpy()
    if flags.dtype != bool:
        raise GistInputError(f"var[{HVG_KEY!r}] must be True/False per gene, got dtype {flags.dtype}")
    if not flags.any():
        raise GistInputError(f"var[{HVG_KEY!r}] marks no gene as highly variable")
    return flags


def choose_genes(adatas: list[AnnData], n_top_genes: int | None = None, max_genes: int = MAX_GENES) -> GeneChoice:
    """Apply the module's rule to samples that share one gene panel.

    Parameters
    ----------
    adatas
        Samples with raw counts in ``X``.
    n_top_genes
        Force this many most-variable genes (``--n_top_genes``).
    max_genes
        Above this many genes, keep the ``max_genes`` most variable ones.

    Returns
    -------
    GeneChoice
        Gene names in the data's order and the rule that chose them.
    """
    if not adatas:
        raise GistInputError("no samples to choose genes from")
    n_vars = adatas[0].n_vars
    if n_top_genes is not None:
        if not 1 <= int(n_top_genes):
            raise GistInputError(f"--n_top_genes must be a positive number, got {n_top_genes}")
        if n_top_genes >= n_vars:
            return GeneChoice(list(adatas[0].var_names), f"all {n_vars} genes (n_top_genes={n_top_genes} >= genes)")
        return GeneChoice(seurat_v3_genes(adatas, n_top_genes), f"{n_top_genes} most variable (seurat_v3, pooled)")
    flags = marked_genes(adatas[0])
    if flags is not None:
        return GeneChoice(list(adatas[0].var_names[flags]), f"var[{HVG_KEY!r}] of the data")
    if n_vars <= max_genes:
        return GeneChoice(list(adatas[0].var_names), f"all genes (<= {max_genes})")
    return GeneChoice(seurat_v3_genes(adatas, max_genes), f"{max_genes} most variable of {n_vars} (seurat_v3, pooled)")


def apply_gene_rule(adatas: list[AnnData], n_top_genes: int | None = None, verbose: bool = True) -> tuple[list[AnnData], GeneChoice]:
    """Restrict every sample to the genes :func:`choose_genes` picks (a copy only when genes drop)."""
    choice = choose_genes(adatas, n_top_genes)
    if verbose:
        print(f"genes: {choice.describe()}")
    if len(choice.genes) == adatas[0].n_vars:
        return adatas, choice
    return [a[:, choice.genes].copy() for a in adatas], choice


def restrict_genes(adatas: list[AnnData], genes: list[str], source: str) -> list[AnnData]:
    """The samples restricted to ``genes`` (in that order), e.g. the genes a checkpoint was trained on.

    Raises
    ------
    GistInputError
        If the data lack any of them.
    """
    have = set(adatas[0].var_names)
    missing = [g for g in genes if g not in have]
    if missing:
        raise GistInputError(
            f"{source} was trained on {len(genes)} genes, {len(missing)} of which the data lack (first: "
            f"{', '.join(map(repr, missing[:5]))})"
        )
    if list(adatas[0].var_names) == list(genes):
        return adatas
    return [a[:, list(genes)].copy() for a in adatas]
