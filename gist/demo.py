"""A synthetic CosMx-like dataset, generated from a seed in seconds (the embedded default).

Each FOV is a square composite image with cells on a jittered lattice. Cells belong to the
paper's 8 classes and sit in spatial niches (tumour nest, airway epithelium, stroma, immune
aggregate: Voronoi regions around random seeds), so neighbourhoods are informative. Counts are
negative-binomial draws around type-specific profiles with marker genes, with CosMx-like
sparsity. Every cell is drawn in an RGB composite (red = CD45-like, green = PanCK-like,
blue = DAPI nucleus) with type-specific shape, intensity and texture.

``tumors`` and ``epithelial`` share one expression profile exactly; only the image tells them
apart (tumour cells have large, speckled nuclei; epithelial cells small, smooth ones). This is
the signal that image + expression can use and expression alone cannot. The reverse holds
too: fibroblasts and endothelial cells look the same, as do myeloid cells and neutrophils
(but for the neutrophils' lobed nuclei), so only expression separates them well.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from gist.datasets import COSMX_RADIUS
from gist.errors import GistInputError
from gist.io import read_cosmx
from gist.io.celltypes import PAPER_CLASSES
from gist.io.image import spatial_entry
from gist.io.samples import split_samples
from gist.keys import CONNECTIVITIES_KEY, LIBRARY_KEY, SPATIAL_KEY
from gist.pp.graph import Cal_Spatial_Net
from gist.pp.stats import add_patch_stats
from gist.utils import atomic_path

CELL_TYPES: tuple[str, ...] = PAPER_CLASSES
#: Expression profile of each type; tumors and epithelial share one on purpose.
PROFILE_OF: dict[str, str] = {t: t for t in CELL_TYPES} | {"tumors": "epithelial"}

#: Named markers per profile (the first ``markers_per_type`` are used); they include the paper's
#: 16 figure genes (``gist.pl.PAPER_MARKERS``) where their biology fits the profile.
NAMED_MARKERS: dict[str, tuple[str, ...]] = {
    "epithelial": ("KRT19", "KRT8", "EPCAM", "KRT18", "CEACAM6", "VEGFA", "KRAS", "ERBB2"),
    "fibroblast": ("COL1A1", "COL1A2", "DCN", "LUM", "FN1", "VIM", "PDGFRA"),
    "endothelial": ("PECAM1", "VWF", "CDH5", "CLDN5", "SPARCL1", "VEGFB"),
    "lymphocyte": ("CD3E", "CD2", "MS4A1", "CD79A", "IGKC", "CD4", "CD8A"),
    "myeloid": ("CD68", "CD163", "LYZ", "C1QA", "C1QB", "DNMT3A"),
    "neutrophil": ("S100A8", "S100A9", "FCGR3B", "CSF3R", "CXCL8", "CTSG", "CXCR2"),
    "mast": ("TPSAB1", "CPA3", "KIT", "MS4A2", "HDC"),
}

#: Niche -> probability of each cell type (order of CELL_TYPES).
NICHES: dict[str, dict[str, float]] = {
    "tumor_nest": {"tumors": 0.55, "epithelial": 0.12, "myeloid": 0.1, "fibroblast": 0.08, "lymphocyte": 0.08, "neutrophil": 0.07},
    "airway": {"epithelial": 0.55, "tumors": 0.15, "fibroblast": 0.1, "mast": 0.1, "endothelial": 0.05, "myeloid": 0.05},
    "stroma": {"fibroblast": 0.45, "endothelial": 0.25, "mast": 0.1, "myeloid": 0.1, "lymphocyte": 0.1},
    "immune": {"lymphocyte": 0.5, "myeloid": 0.2, "neutrophil": 0.15, "fibroblast": 0.1, "endothelial": 0.05},
}

# Drawing parameters per type: cell radii (a, b) px, nucleus radius px, nucleus lobes,
# cytoplasm RGB intensity, DAPI intensity, nuclear texture, cytoplasm granularity.
_LOOK: dict[str, dict] = {
    "tumors": dict(cell=(19, 16), nuc=10, lobes=1, rgb=(0.10, 0.70, 0.10), dapi=0.85, nuc_tex=0.55, gran=0.10),
    "epithelial": dict(cell=(18, 15), nuc=6, lobes=1, rgb=(0.10, 0.70, 0.10), dapi=0.70, nuc_tex=0.05, gran=0.10),
    "fibroblast": dict(cell=(23, 8), nuc=5, lobes=1, rgb=(0.30, 0.20, 0.18), dapi=0.60, nuc_tex=0.10, gran=0.10),
    "endothelial": dict(cell=(23, 8), nuc=5, lobes=1, rgb=(0.30, 0.20, 0.18), dapi=0.60, nuc_tex=0.10, gran=0.10),
    "lymphocyte": dict(cell=(9, 9), nuc=7, lobes=1, rgb=(0.80, 0.10, 0.10), dapi=0.90, nuc_tex=0.05, gran=0.10),
    "myeloid": dict(cell=(14, 12), nuc=6, lobes=1, rgb=(0.55, 0.20, 0.25), dapi=0.65, nuc_tex=0.10, gran=0.35),
    "neutrophil": dict(cell=(14, 12), nuc=3, lobes=3, rgb=(0.55, 0.20, 0.25), dapi=0.65, nuc_tex=0.10, gran=0.35),
    "mast": dict(cell=(13, 12), nuc=6, lobes=1, rgb=(0.45, 0.30, 0.35), dapi=0.65, nuc_tex=0.10, gran=0.45),
}

N_NEGATIVE_PROBES = 10
SPACING_PX = 45.0
BORDER_PX = 10.0


def _gene_table(n_genes: int, markers_per_type: int) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Gene names, each gene's profile (or ''), and the marker indices of every profile."""
    profiles = sorted(set(PROFILE_OF.values()))
    if n_genes < markers_per_type * len(profiles) + 10:
        raise ValueError(f"n_genes={n_genes} is too small for {markers_per_type} markers x {len(profiles)} profiles")
    names, marker_of, markers = [], [], {}
    for profile in profiles:
        start = len(names)
        for i in range(markers_per_type):
            named = NAMED_MARKERS[profile]
            names.append(named[i] if i < len(named) else f"{profile[:4].upper()}M{i:02d}")
            marker_of.append(profile)
        markers[profile] = np.arange(start, len(names))
    names += [f"GENE{i:03d}" for i in range(n_genes - len(names))]
    marker_of += [""] * (n_genes - len(marker_of))
    return names, np.asarray(marker_of, dtype=object), markers


def _lattice(rng: np.random.Generator, size: int) -> np.ndarray:
    """Jittered hexagonal lattice of cell centres (column, row) within the image."""
    rows = np.arange(BORDER_PX, size - BORDER_PX, SPACING_PX * np.sqrt(3) / 2)
    points = []
    for i, r in enumerate(rows):
        cols = np.arange(BORDER_PX + (SPACING_PX / 2) * (i % 2), size - BORDER_PX, SPACING_PX)
        points.append(np.column_stack([cols, np.full_like(cols, r)]))
    xy = np.concatenate(points) + rng.normal(0, 0.15 * SPACING_PX, size=(sum(map(len, points)), 2))
    xy = xy[rng.random(len(xy)) > 0.1]  # a few gaps, as in tissue
    return np.clip(xy, BORDER_PX, size - 1 - BORDER_PX)


def _assign_types(rng: np.random.Generator, xy: np.ndarray, size: int, n_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Niche of each cell (nearest seed, noisy borders) and a cell type drawn from the niche."""
    niche_names = list(NICHES)
    seeds = rng.uniform(0, size, size=(n_seeds, 2))
    seed_niche = np.array([niche_names[i % len(niche_names)] for i in rng.permutation(n_seeds)])
    dist = np.linalg.norm(xy[:, None, :] - seeds[None, :, :], axis=2)
    dist += rng.normal(0, 0.08 * size, size=dist.shape)
    niche = seed_niche[dist.argmin(axis=1)]
    types = np.empty(len(xy), dtype=object)
    for name in niche_names:
        members = np.flatnonzero(niche == name)
        probs = np.array([NICHES[name].get(t, 0.0) for t in CELL_TYPES])
        types[members] = rng.choice(CELL_TYPES, size=len(members), p=probs / probs.sum())
    return niche, types


def _counts(rng, types, profile_mean, dispersion=2.0) -> np.ndarray:
    """Negative-binomial (gamma-Poisson) counts around each cell's profile."""
    mean = np.stack([profile_mean[PROFILE_OF[t]] for t in types])
    mean *= rng.lognormal(0.0, 0.35, size=(len(types), 1))  # library size
    return rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)


def _draw(rng: np.random.Generator, xy: np.ndarray, types: np.ndarray, size: int) -> np.ndarray:
    """RGB composite (uint8) with one blob per cell."""
    cell_lab = np.zeros((size, size), np.int32)
    nuc_lab = np.zeros((size, size), np.int32)
    for i, ((x, y), t) in enumerate(zip(xy, types)):
        look = _LOOK[t]
        gain = rng.uniform(0.8, 1.2)
        a, b = (int(round(r * gain)) for r in look["cell"])
        angle = float(rng.uniform(0, 180))
        centre = (int(round(x)), int(round(y)))
        cv2.ellipse(cell_lab, centre, (a, b), angle, 0, 360, i + 1, -1)
        if look["lobes"] == 1:
            cv2.circle(nuc_lab, centre, max(2, int(round(look["nuc"] * gain))), i + 1, -1)
        else:
            for k in range(look["lobes"]):
                phi = 2 * np.pi * k / look["lobes"] + angle
                c = (int(round(x + 4 * np.cos(phi))), int(round(y + 4 * np.sin(phi))))
                cv2.circle(nuc_lab, c, look["nuc"], i + 1, -1)

    type_codes = np.array([CELL_TYPES.index(t) for t in types])
    rgb_table = np.array([_LOOK[t]["rgb"] for t in CELL_TYPES], np.float32)
    dapi_table = np.array([_LOOK[t]["dapi"] for t in CELL_TYPES], np.float32)
    tex_table = np.array([_LOOK[t]["nuc_tex"] for t in CELL_TYPES], np.float32)
    gran_table = np.array([_LOOK[t]["gran"] for t in CELL_TYPES], np.float32)
    brightness = np.concatenate([[0.0], rng.uniform(0.6, 1.4, len(types))]).astype(np.float32)
    cell_type_map = np.concatenate([[0], type_codes])[cell_lab]
    nuc_type_map = np.concatenate([[0], type_codes])[nuc_lab]
    in_cell, in_nuc = cell_lab > 0, nuc_lab > 0

    fine = rng.normal(0, 1, size=(size, size)).astype(np.float32)
    grains = cv2.GaussianBlur(rng.normal(0, 1, size=(size, size)).astype(np.float32), (0, 0), 1.2) * 2.5
    image = np.zeros((size, size, 3), np.float32)
    cyto = rgb_table[cell_type_map] * (brightness[cell_lab] * (1 + gran_table[cell_type_map] * grains))[..., None]
    image[in_cell] = cyto[in_cell]
    dapi = dapi_table[nuc_type_map] * brightness[nuc_lab] * (1 + tex_table[nuc_type_map] * fine)
    image[..., 2] = np.where(in_nuc, dapi, image[..., 2] * 0.3)
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    image += rng.normal(0.04, 0.02, size=image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def make_demo(
    n_fovs: int = 4,
    seed: int = 0,
    *,
    image_size: int = 1024,
    n_genes: int = 300,
    markers_per_type: int = 10,
    n_niche_seeds: int = 8,
) -> list[AnnData]:
    """Generate the demo dataset: one CosMx-like AnnData per FOV.

    Parameters
    ----------
    n_fovs
        Number of FOVs (samples).
    seed
        Random seed; the same seed gives the same data.
    image_size
        Side of each square composite image in pixels (~430 cells per 1024 px FOV).
    n_genes
        Genes per cell (markers first, then background genes).
    markers_per_type
        Marker genes per expression profile (7 profiles: tumors share epithelial's).
    n_niche_seeds
        Niche regions per FOV.

    Returns
    -------
    list of AnnData
        Raw counts in ``X``; ``obs`` with ``fov``, ``cell_ID``, ``sample``, ``cell_type``,
        ``merge_cell_type`` and ``niche``; ``obsm['spatial']`` (column, row) in the image;
        ``obsm['control_counts']`` (negative probes); the image in
        ``uns['spatial'][sample]['images']['hires']``.
    """
    if n_fovs < 1:
        raise ValueError(f"n_fovs must be >= 1, got {n_fovs}")
    rng = np.random.default_rng(seed)
    genes, marker_of, markers = _gene_table(n_genes, markers_per_type)
    base = rng.lognormal(np.log(0.08), 0.8, size=n_genes)
    profile_mean = {}
    for profile, idx in markers.items():
        mean = base.copy()
        mean[idx] = rng.uniform(0.3, 1.5, size=len(idx))
        profile_mean[profile] = mean

    adatas = []
    for f in range(n_fovs):
        fov = f + 1
        sample = f"demo_fov{fov:03d}"
        xy = _lattice(rng, image_size)
        niche, types = _assign_types(rng, xy, image_size, n_niche_seeds)
        counts = _counts(rng, types, profile_mean)
        image = _draw(rng, xy, types, image_size)
        cell_ids = np.arange(1, len(xy) + 1)
        obs = pd.DataFrame(
            {
                "fov": fov,
                "cell_ID": cell_ids,
                "sample": pd.Categorical([sample] * len(xy)),
                "cell_type": pd.Categorical(types, categories=list(CELL_TYPES)),
                "merge_cell_type": pd.Categorical(types, categories=list(CELL_TYPES)),
                "niche": pd.Categorical(niche, categories=list(NICHES)),
            },
            index=[f"{sample}_{c}" for c in cell_ids],
        )
        var = pd.DataFrame({"marker_of": marker_of}, index=pd.Index(genes))
        adata = AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
        adata.obsm[SPATIAL_KEY] = xy.astype(np.float64)
        negatives = rng.poisson(0.02, size=(len(xy), N_NEGATIVE_PROBES)).astype(np.float32)
        adata.obsm["control_counts"] = pd.DataFrame(
            negatives, index=adata.obs_names, columns=[f"NegPrb{i + 1}" for i in range(N_NEGATIVE_PROBES)]
        )
        adata.uns["spatial"] = {
            sample: spatial_entry(source="demo", images={"hires": image}, image_shape=image.shape)
        }
        adatas.append(adata)
    return adatas


def load_demo(seed: int = 0, n_fovs: int = 4) -> list[AnnData]:
    """The demo dataset with the ``stats`` image features, generated in memory.

    Used by ``--dataset demo`` when ``dataset/demo/features/`` has not been written by
    ``extract_features.py --dataset demo`` (which holds the same data).
    """
    return [add_patch_stats(a) for a in make_demo(n_fovs=n_fovs, seed=seed)]


def write_cosmx_export(adatas: Sequence[AnnData], root: str | Path, prefix: str = "Demo") -> Path:
    """Write AnnData from :func:`make_demo` as a CosMx flat-file export that ``read_cosmx`` reads.

    Writes ``{prefix}_exprMat_file.csv``, ``{prefix}_metadata_file.csv`` (y pointing up, as
    exported) and ``CellComposite/CellComposite_F{fov:03d}.jpg``. Each file is written to a
    temporary name and renamed, so an interrupted run leaves no half-written file.
    """
    root = Path(root)
    expr_parts, meta_parts = [], []
    for adata in adatas:
        sample = adata.obs[LIBRARY_KEY].iloc[0]
        image = adata.uns["spatial"][sample]["images"]["hires"]
        fov = int(adata.obs["fov"].iloc[0])
        counts = pd.DataFrame(adata.X.toarray().astype(np.int64), columns=adata.var_names)
        controls = adata.obsm["control_counts"].reset_index(drop=True).astype(np.int64)
        keys = adata.obs[["fov", "cell_ID"]].reset_index(drop=True)
        expr_parts.append(pd.concat([keys, counts, controls], axis=1))
        meta_parts.append(
            keys.assign(
                CenterX_local_px=adata.obsm[SPATIAL_KEY][:, 0],
                CenterY_local_px=image.shape[0] - adata.obsm[SPATIAL_KEY][:, 1],
                cell_type=adata.obs["cell_type"].astype(str).to_numpy(),
                niche=adata.obs["niche"].astype(str).to_numpy(),
            )
        )
        with atomic_path(root / "CellComposite" / f"CellComposite_F{fov:03d}.jpg") as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"could not write {tmp}")
    for name, parts in (("exprMat", expr_parts), ("metadata", meta_parts)):
        with atomic_path(root / f"{prefix}_{name}_file.csv") as tmp:
            pd.concat(parts, ignore_index=True).to_csv(tmp, index=False, float_format="%.4f")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gist.demo``: generate, export, read back and summarise the demo dataset."""
    parser = argparse.ArgumentParser(
        prog="python -m gist.demo",
        description="Generate the synthetic CosMx-like demo dataset, write it as a CosMx flat-file "
        "export, read it back through gist.io.read_cosmx (paper preprocessing) and build the "
        "spatial graph of every FOV.",
    )
    parser.add_argument("--out", default="dataset/demo", help="folder for the CosMx-style export (default: %(default)s)")
    parser.add_argument("--n_fovs", type=int, default=4, help="number of FOVs to generate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generator (default: %(default)s)")
    parser.add_argument("--rad_cutoff", type=float, default=COSMX_RADIUS, help="radius of the spatial graph in px (default: %(default)s, the paper's CosMx value)")
    args = parser.parse_args(argv)


    if args.n_fovs < 1:
        parser.error(f"--n_fovs must be >= 1, got {args.n_fovs}")
    adatas = make_demo(n_fovs=args.n_fovs, seed=args.seed)
    root = write_cosmx_export(adatas, args.out)
    print(f"wrote the demo export ({sum(a.n_obs for a in adatas)} cells, {args.n_fovs} FOVs) to {root}")
    try:
        loaded = read_cosmx(root)
    except GistInputError as err:
        parser.exit(2, f"error: {err}\n")
    rows = []
    for adata in split_samples(loaded)[0]:
        Cal_Spatial_Net(adata, rad_cutoff=args.rad_cutoff, verbose=False)
        n_edges = adata.obsp[CONNECTIVITIES_KEY].nnz
        rows.append(
            {
                "sample": adata.obs[LIBRARY_KEY].iloc[0],
                "cells": adata.n_obs,
                "genes": adata.n_vars,
                "edges": n_edges,
                "neighbours/cell": round(n_edges / adata.n_obs, 2),
                "zeros %": round(100 * (1 - adata.X.nnz / (adata.n_obs * adata.n_vars)), 1),
                "types": adata.obs["merge_cell_type"].nunique(),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))
    print("cell types:", pd.concat([a.obs["merge_cell_type"] for a in loaded]).value_counts().to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
