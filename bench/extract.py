"""Benchmark: per-cell image embedding, the original one-patch-at-a-time loop vs ours.

Both run in this process on the same cells of a demo composite image with the same randomly
initialised ``uni`` model (ViT-L/16; no weights are downloaded):

- original: crop (shrunk near the top/left, truncated at the bottom/right as the original does),
  resize to 224, normalise, one forward pass per patch in fp32;
- ours: edge-padded patches from a DataLoader (workers overlap the crops), batches, and the
  fastest precision for the device (int8 dynamic quantisation on CPU, fp16 autocast on CUDA);
- ours fp32: the same pipeline in fp32 (what batching and loading alone give).

Ours-vs-fp32 cosine similarity is measured on identical patches. One-time costs (int8
quantisation, CUDA warm-up) fall in an untimed warm-up run, as they amortise over a real dataset. The ``stats`` extractor is timed
on the demo and on a Lung13-sized FOV (5,472 x 3,648 px, 4,000 cells). Prints a table, writes
JSON; the last line reads ``speedup <ratio>x`` (ours over the original loop, uni).

    python bench/extract.py [--cells 24] [--json bench/results/extract.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gist.demo import make_demo  # noqa: E402
from gist.pp.extractors import IMAGENET_MEAN, IMAGENET_STD, REGISTRY, FoundationExtractor, embed_patches  # noqa: E402
from gist.pp.stats import patch_stats  # noqa: E402
from gist.pp.patches import DevicePatches, PatchDataset  # noqa: E402


def original_patch(image: np.ndarray, col: float, row: float, half: int = 120) -> torch.Tensor:
    """The original's crop: a 120x120 window near the top/left edge, truncated at the bottom/right."""
    x, y = int(col), int(row)
    if x - half < 0 or y - half < 0:
        half = half // 2
    crop = image[max(y - half, 0) : y + half, max(x - half, 0) : x + half]
    crop = cv2.resize(crop, (224, 224), interpolation=cv2.INTER_LINEAR)
    t = torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (t - mean) / std


def original_loop(model: torch.nn.Module, image: np.ndarray, coords: np.ndarray, device: torch.device) -> torch.Tensor:
    """The original's extraction: one patch at a time, cropped and resized on the CPU, then moved
    to the model's device."""
    out = []
    with torch.no_grad():
        for col, row in coords:
            out.append(model(original_patch(image, col, row).unsqueeze(0).to(device)).cpu())
    return torch.cat(out)


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=24, help="cells embedded by each method (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, help="our batch size (default: 8 on the CPU, 128 on CUDA)")
    parser.add_argument("--num_workers", type=int, default=1, help="DataLoader workers cropping patches (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    parser.add_argument("--json", default="bench/results/extract.json", help="where to write the results")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    fast = "fp16" if device.type == "cuda" else "int8"
    args.batch_size = args.batch_size or (128 if device.type == "cuda" else 8)

    demo = make_demo(n_fovs=4, seed=0)
    adata = demo[0]
    image = adata.uns["spatial"]["demo_fov001"]["images"]["hires"]
    rng = np.random.default_rng(0)
    coords = adata.obsm["spatial"][rng.choice(adata.n_obs, size=args.cells, replace=False)]

    torch.manual_seed(0)
    model = REGISTRY["uni"].build().eval().to(device)
    extractor = FoundationExtractor("uni", model, REGISTRY["uni"])
    rows = []

    def embed(precision):
        # on CUDA the image is uploaded once and patches are cut there (inside the timing)
        dataset = (DevicePatches(image, coords, 240, 224, "reflect", device) if device.type == "cuda"
                   else PatchDataset(image, coords, 240, 224, "reflect"))
        return embed_patches(extractor, dataset, batch_size=args.batch_size, num_workers=args.num_workers, device=device,
                             precision=precision, progress=False)

    def original():
        result = original_loop(model, image, coords, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result

    embed(fast)  # warm-up (quantisation, allocator, cuDNN)
    _, t_orig = timed(original)
    ours, t_ours = timed(lambda: embed(fast))
    ours_fp32, t_fp32 = timed(lambda: embed("fp32"))
    cosine = torch.nn.functional.cosine_similarity(ours, ours_fp32).mean().item()
    n = len(coords)
    rows += [
        {"extractor": "uni", "method": "original loop (fp32, 1 patch)", "cells": n, "seconds": round(t_orig, 2),
         "cells_per_s": round(n / t_orig, 2), "vs_original": 1.0, "cos_vs_fp32": ""},
        {"extractor": "uni", "method": f"ours fp32 (batch {args.batch_size})", "cells": n, "seconds": round(t_fp32, 2),
         "cells_per_s": round(n / t_fp32, 2), "vs_original": round(t_orig / t_fp32, 2), "cos_vs_fp32": 1.0},
        {"extractor": "uni", "method": f"ours {fast} (batch {args.batch_size})", "cells": n, "seconds": round(t_ours, 2),
         "cells_per_s": round(n / t_ours, 2), "vs_original": round(t_orig / t_ours, 2), "cos_vs_fp32": round(cosine, 4)},
    ]
    # stats: the demo's 4 FOVs, and one Lung13-sized FOV
    cells = sum(a.n_obs for a in demo)
    _, t_demo = timed(lambda: [patch_stats(a.uns["spatial"][a.obs["sample"].iloc[0]]["images"]["hires"], a.obsm["spatial"]) for a in demo])
    big = rng.integers(0, 256, size=(3648, 5472, 3), dtype=np.uint8)
    big_xy = rng.uniform((0, 0), (5472, 3648), size=(4000, 2))
    _, t_big = timed(lambda: patch_stats(big, big_xy))
    rows += [
        {"extractor": "stats", "method": "demo, 4 FOVs", "cells": cells, "seconds": round(t_demo, 2),
         "cells_per_s": round(cells / t_demo), "vs_original": "", "cos_vs_fp32": ""},
        {"extractor": "stats", "method": "Lung13-sized FOV", "cells": 4000, "seconds": round(t_big, 2),
         "cells_per_s": round(4000 / t_big), "vs_original": "", "cos_vs_fp32": ""},
    ]
    print(pd.DataFrame(rows).to_string(index=False))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else (platform.processor() or "cpu")
    out.write_text(json.dumps({"device": name, "threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"speedup {t_orig / t_ours:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
