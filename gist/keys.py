"""Every AnnData key gist reads or writes, in one place.

The layout follows scanpy/squidpy: per-cell matrices in ``obsm``, the spatial graph in ``obsp``,
one AnnData for all samples with the sample of each cell in ``obs[LIBRARY_KEY]`` and each sample's
image in ``uns['spatial'][sample]``.
"""

#: obs: the sample (FOV, section) of each cell; graphs never cross samples.
LIBRARY_KEY = "sample"
#: obsm: (x, y) coordinates, pixels of the sample's image times its scale factor.
SPATIAL_KEY = "spatial"
#: uns: per-sample images and scale factors (scanpy's Visium layout).
SPATIAL_UNS_KEY = "spatial"
#: obsm: per-cell image features (the original's name).
IMG_KEY = "imgs"
#: obsp: the spatial graph (squidpy's names).
CONNECTIVITIES_KEY = "spatial_connectivities"
DISTANCES_KEY = "spatial_distances"
#: uns: the original's edge table (Cell1, Cell2, Distance).
SPATIAL_NET_KEY = "Spatial_Net"
#: var: genes the model uses.
HVG_KEY = "highly_variable"
#: layers: raw counts kept beside the normalised X in results.
COUNTS_LAYER = "counts"

#: What :func:`gist.tl.fit` / :func:`gist.tl.embed` write.
LATENT_KEY = "X_gist"  # obsm: fused latent (the ensemble's consensus)
GENE_LATENT_KEY = "X_gist_gene"  # obsm: gene-branch latent
IMG_LATENT_KEY = "X_gist_img"  # obsm: image-branch latent
MEMBER_LATENTS_KEY = "X_gist_members"  # obsm: each ensemble member's fused latent, side by side (on request)
DENOISED_LAYER = "gist_denoised"  # layers: fused reconstruction (denoised expression)
DENOISED_PCA_KEY = "X_gist_denoised_pca"  # obsm: principal components of the denoised expression (use_rep="denoised")
UNS_KEY = "gist"  # uns: settings, versions, checkpoints
CLUSTER_KEY = "gist_cluster"  # obs: clusters of gist.tl.cluster
MATCHED_KEY = "gist_matched"  # obs: clusters named after their Hungarian-matched labels

#: The original's names, which test.py's gist.h5ad keeps beside the ones above.
ORIGINAL_ALIASES = {LATENT_KEY: "pred", GENE_LATENT_KEY: "gene_pred", IMG_LATENT_KEY: "img_pred"}
ORIGINAL_DENOISED_LAYER = "recon"
