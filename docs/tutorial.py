# %% [markdown]
# # GIST in a notebook: demo -> graph -> features -> fit -> cluster -> figures
#
# A `.py` notebook in the percent format: open it in Jupyter (jupytext), VS Code or Spyder and run
# cell by cell, or run it whole with `python docs/tutorial.py` (``make test`` does, with few epochs).
# Every step works on **one** AnnData holding all samples, told apart by `obs['sample']`, as in
# scanpy and squidpy. Figures are written to `GIST_TUTORIAL_OUT` (default `results/tutorial`).

# %%
import os
from pathlib import Path

import matplotlib

try:
    get_ipython  # defined in Jupyter/IPython, which shows the figures inline
except NameError:
    matplotlib.use("Agg")  # a plain `python docs/tutorial.py`: figures are saved below

import gist
from gist.demo import make_demo, write_cosmx_export

out = Path(os.environ.get("GIST_TUTORIAL_OUT", "results/tutorial"))
epochs = int(os.environ.get("GIST_TUTORIAL_EPOCHS", "150"))  # the gist recipe's; make test uses a few
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Read the data
# The demo is a synthetic CosMx export (2 FOVs here). `gist.io.read_cosmx` reads any CosMx
# flat-file export; `gist.io.read_visium` and `gist.io.read_h5ad` read the other formats.

# %%
export = write_cosmx_export(make_demo(n_fovs=2, seed=0), out / "demo_export")
adata = gist.io.read_cosmx(export)
print(adata)

# %% [markdown]
# ## 2. Spatial graph, image features, genes
# `spatial_graph` builds one radius graph per sample (keys `obsp['spatial_connectivities']`,
# `obsp['spatial_distances']`); without a radius it takes 1.1 x the median distance to the 6th
# nearest cell. `image_features` crops a patch around every cell and describes it (`stats`: colour
# statistics; `uni`, `virchow2`, `ctranspath` with local weights). `select_genes` marks the genes
# the model reads in `var['highly_variable']` (the marks present, else up to 3,000 most variable).
# Each writes into `adata` and returns `None`, as scanpy does (`copy=True` for a copy). The code of
# each step: `gist/pp/graph.py`, `gist/pp/extract.py` (+ `extractors.py`), `gist/pp/genes.py`.

# %%
gist.pp.spatial_graph(adata)
gist.pp.image_features(adata, extractor="stats")
gist.pp.select_genes(adata)
print(adata.obsm["imgs"].shape, adata.n_vars, "genes")

# %% [markdown]
# ## 3. Train and embed
# `fit` trains the default `gist` recipe (an ensemble of 5 graph-transformer autoencoders; pass
# `recipe="paper"` for the original) and writes `obsm['X_gist']` (fused latent),
# `obsm['X_gist_gene']`, `obsm['X_gist_img']`, `layers['gist_denoised']` and `uns['gist']`
# (`gist/tl/training.py`, recipes in `gist/tl/recipes.py`, the files in `gist/tl/checkpoints.py`).

# %%
models = gist.tl.fit(adata, epochs=epochs, ensemble=2, seed=0, device="auto", progress=False)
print(adata.obsm["X_gist"].shape, adata.uns["gist"]["recipe"])

# %% [markdown]
# ## 4. Cluster and score
# Leiden with a resolution search to the wanted number of clusters (cell types); `method="mclust"`
# for tissue domains (`gist/tl/clustering.py`); the run's parameters land in
# `uns['gist_cluster']['params']`. `score` matches clusters to labels (Hungarian) and gives ARI and NMI.

# %%
gist.tl.cluster(adata, n_clusters=8, method="leiden")
print(adata.uns["gist_cluster"]["params"])
print(gist.tl.score(adata, label_key="merge_cell_type"))

# %% [markdown]
# ## 5. Figures
# Each plotting function returns its figure and saves only when `save=` is given.

# %%
gist.pl.spatial(adata, label_key="merge_cell_type", save=out / "spatial.png")
gist.pl.umap(adata, label_key="merge_cell_type", save=out / "umap.png")
gist.pl.violin(adata, gist.pl.PAPER_MARKERS, ["merge_cell_type"], save=out / "violin.png")
gist.pl.gene_map(adata, "KRAS", save=out / "gene_KRAS.png")
print(sorted(p.name for p in out.glob("*.png")))
