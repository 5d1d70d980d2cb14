"""The fast-reid "bagtricks" (BoT) re-id network, ResNet-50 with IBN-a, and a strict fast-reid checkpoint loader.

Why a re-implementation: DPTN's README scores generated images with a fast-reid BoT(R50-ibn) model, but the
fast-reid package does not import under current Python/PyTorch and its own loader is not strict (it drops
tensors whose shape differs and only logs missing keys). Module names equal fast-reid's, so `state_dict()`
is fast-reid's `checkpoint['model']` key for key, in the same order (350 entries with IBN, 324 without).

- Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019
  (BNNeck, last stride 1, the test feature is the BNNeck output).
- Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities via IBN-Net", ECCV 2018
  (IBN-a: InstanceNorm on the first half of the channels of `bn1` in layer1-3), https://github.com/XingangPan/IBN-Net
- fast-reid, https://github.com/JDAI-CV/fast-reid (`configs/Market1501/bagtricks_R50-ibn.yml`,
  `fastreid/modeling/backbones/resnet.py`, `fastreid/modeling/heads/embedding_head.py`).

Input: float RGB images (N, 3, H, W) on the 0..255 scale (PIL bicubic resize to 256x128, no /255); the model
applies `(x - 255·mean) / (255·std)` itself, into a new tensor (fast-reid normalises the caller's tensor in
place, which makes its flip test normalise the flipped copy twice; `extract_features(flip=True)` does not).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from util.io import InputError, atomic_torch_save
from util.weights import RESNET50, RESNET50_IBN_A, file_sha256

FEATURE_DIM = 2048
PIXEL_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # fast-reid MODEL.PIXEL_MEAN, RGB
PIXEL_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
STEM_POOLS = ("ceil", "pad1")
LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 1))  # (width, blocks, first stride); last stride 1
IMAGENET_WEIGHTS = {True: RESNET50_IBN_A, False: RESNET50}  # with_ibn -> the ImageNet file (util/weights.py)


class IBN(nn.Module):
    """IBN-a: InstanceNorm (affine, no running stats) on channels [0, C/2), BatchNorm on the rest; IN first."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.half = int(planes / 2)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(first.contiguous()), self.BN(second.contiguous())), dim=1)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv); `bn1` is IBN-a when `ibn`."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, ibn: bool) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = IBN(width) if ibn else nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet50(nn.Module):
    """fast-reid's ResNet-50 backbone: IBN-a in layer1-3 when `with_ibn`, last stride 1, no fc."""

    def __init__(self, with_ibn: bool = True, stem_pool: str = "ceil") -> None:
        super().__init__()
        if stem_pool not in STEM_POOLS:
            raise InputError(f"stem_pool {stem_pool!r}: expected one of {', '.join(STEM_POOLS)}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        # fast-reid since 2020-08-14: padding 0 + ceil mode; IBN-Net, torchvision and fast-reid v0.1.x: padding 1
        self.maxpool = (nn.MaxPool2d(3, 2, 0, ceil_mode=True) if stem_pool == "ceil" else nn.MaxPool2d(3, 2, 1))
        cin = 64
        for index, (width, blocks, stride) in enumerate(LAYERS, start=1):
            ibn = with_ibn and width != 512  # layer4 has no IBN
            layer = [Bottleneck(cin, width, stride, ibn)]
            cin = width * Bottleneck.expansion
            layer += [Bottleneck(cin, width, 1, ibn) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        self.random_init()

    def random_init(self) -> None:
        """fast-reid `ResNet.random_init`: convs normal(0, sqrt(2 / (k·k·out))), BN weight 1 / bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 2048, H/16, W/16)


class EmbeddingHead(nn.Module):
    """Global average pool, BNNeck (bias frozen at 0), bias-free linear classifier `weight` (C, 2048)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes > 0:  # registered first: fast-reid's state dict lists heads.weight before the BNNeck
            self.weight = nn.Parameter(torch.empty(num_classes, FEATURE_DIM))
            nn.init.normal_(self.weight, 0, 0.01)
        else:
            self.register_parameter("weight", None)
        self.pool_layer = nn.AdaptiveAvgPool2d(1)
        self.bottleneck = nn.Sequential(nn.BatchNorm2d(FEATURE_DIM))
        nn.init.constant_(self.bottleneck[0].weight, 1)
        nn.init.constant_(self.bottleneck[0].bias, 0)
        self.bottleneck[0].bias.requires_grad_(False)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        pool_feat = self.pool_layer(fmap)  # (N, 2048, 1, 1)
        neck_feat = self.bottleneck(pool_feat)[..., 0, 0]  # (N, 2048)
        if not self.training:
            return neck_feat
        out = {"features": pool_feat[..., 0, 0]}  # before the BNNeck: the triplet loss uses these
        if self.weight is not None:
            logits = F.linear(neck_feat, self.weight)  # CLS_LAYER Linear: scale 1, margin 0
            out["cls_outputs"] = logits
            out["pred_class_logits"] = logits
        return out


class BagtricksReID(nn.Module):
    """fast-reid `Baseline` with the bagtricks settings.

    eval: (N, 2048) BNNeck features, not L2-normalised. train: {"cls_outputs", "pred_class_logits": (N, C)
    logits, "features": (N, 2048) pre-BNNeck pooled features}; with num_classes 0 only "features".
    """

    def __init__(self, num_classes: int = 751, with_ibn: bool = True, stem_pool: str = "ceil") -> None:
        super().__init__()
        if num_classes < 0:
            raise InputError(f"num_classes {num_classes}: expected >= 0")
        self.num_classes = num_classes
        self.with_ibn = with_ibn
        self.stem_pool = stem_pool
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, -1, 1, 1), persistent=False)
        self.backbone = ResNet50(with_ibn, stem_pool)
        self.heads = EmbeddingHead(num_classes)

    def backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB 0..255 -> layer4 map (N, 2048, H/16, W/16); the input is left unchanged."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got {tuple(images.shape)}")
        return self.backbone((images - self.pixel_mean) / self.pixel_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        return self.heads(self.backbone_features(images))


@torch.no_grad()
def extract_features(model: BagtricksReID, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Eval-mode features (N, 2048); with `flip`, the correct average (f(x) + f(x flipped left-right)) / 2."""
    if model.training:
        raise ValueError("extract_features needs the model in eval mode (call model.eval())")
    features = model(images)
    if flip:
        features = (features + model(images.flip(-1))) / 2
    return features


def sha256_of(path: str | os.PathLike) -> str:
    """The full hex SHA-256 of a file (the provenance of a re-id checkpoint)."""
    return file_sha256(path, prefix=64)


def _numpy_safe_globals() -> list:
    """Globals a fast-reid checkpoint's extras need: numpy scalars ('metric'), dtypes, MultiStepLR's Counter."""
    import collections

    import numpy as np

    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray.scalar, np.dtype, collections.Counter]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return allowed


def _torch_load(path: Path) -> object:
    """torch.load with weights_only; then with numpy scalars/Counter allowed; last, a full unpickle, announced."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for a disallowed global; anything else for a broken file
        first = exc
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        pass
    reason = str(first).strip().splitlines()[-1][:200] if str(first).strip() else type(first).__name__
    print(f"WARNING: {path} does not load with weights_only=True ({reason}); loading it with a full unpickle, "
          "which can run code stored in the file: use only files from a source you trust")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"re-id checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None


def _state_dict_of(obj: object, path: Path) -> tuple[dict, str]:
    """(state dict, layout description) of a fast-reid checkpoint dict ('model' key) or a bare state dict."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        extras = sorted(str(k) for k in obj if k != "model")
        return obj["model"], "checkpoint dict {'model'" + "".join(f", {k!r}" for k in extras) + "}"
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, "bare state dict"
    kind = f"dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else type(obj).__name__
    raise InputError(f"re-id checkpoint {path}: expected a fast-reid checkpoint (a dict with a 'model' state dict) "
                     f"or a bare state dict of tensors, got a {kind}")


def _map_old_layouts(state: dict, path: Path) -> tuple[dict, list[str]]:
    """Strip a 'module.' prefix (every key) and rename fast-reid v1.0 / v0.1.x head keys; print each mapping."""
    mappings = []
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
        mappings.append(f"stripped the 'module.' prefix from all {len(state)} keys")
    renames = {"heads.classifier.weight": "heads.weight"}  # fast-reid 2020-09-10 .. 2021-03-22 (v1.0)
    renames.update({k: "heads.bottleneck.0." + k[len("heads.bnneck."):]  # up to 2020-09-09 (v0.1.x)
                    for k in state if k.startswith("heads.bnneck.")})
    clashes = [f"{old} and {new}" for old, new in renames.items() if old in state and new in state]
    if clashes:
        raise InputError(f"re-id checkpoint {path} holds both the old and the new name of: {'; '.join(clashes)}")
    mapped = {}
    for key, value in state.items():
        if key in renames:
            mappings.append(f"{key} -> {renames[key]}")
            key = renames[key]
        mapped[key] = value
    for line in mappings:
        print(f"re-id checkpoint {path.name}: {line}")
    return mapped, mappings


def _check_and_load(model: nn.Module, state: dict, source: str, allow_missing=lambda key: False) -> None:
    """load_state_dict after one check that names every missing, unexpected or mis-shaped key (InputError)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not allow_missing(k)]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model" for k in own
             if k in state and state[k].shape != own[k].shape]
    problems = []
    for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
        if keys:
            shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
            problems.append(f"{title}: {shown}")
    if problems:
        raise InputError(f"{source} does not fit the model: " + "; ".join(problems))
    tolerated = any(k not in state for k in own)  # only keys that allow_missing let through
    model.load_state_dict(state, strict=not tolerated)


def load_fastreid_checkpoint(path: str | os.PathLike, stem_pool: str = "auto", with_ibn: bool | None = None,
                             require_classifier: bool = False) -> tuple[BagtricksReID, dict]:
    """Build the network a fast-reid checkpoint describes and load it strictly; returns (eval model, info).

    Accepts `{'model': state_dict, ...}` (any fast-reid layout since v0.1) or a bare state dict. The
    layout mappings ('module.' prefix, `heads.classifier.weight` -> `heads.weight`, `heads.bnneck.*` ->
    `heads.bottleneck.0.*`) are printed and listed in info["mappings"]. IBN is detected from
    `backbone.layer1.0.bn1.IN.weight` (`with_ibn` forces a choice; a file that disagrees then fails). The class
    count C is the first dimension of `heads.weight`.
    Classifier rule: the classifier is used in training only. A file without `heads.weight` (under any of its
    names) builds a model with num_classes 0, and says so; `require_classifier=True` makes that an error.
    Every other key is required: any missing or unexpected key or shape mismatch is one InputError naming the
    file and the keys. stem_pool 'auto' is 'pad1' for v0.1.x files (`heads.bnneck.*` keys: fast-reid's stem
    pool had padding 1 until 2020-08-14), else 'ceil'.
    """
    path = Path(path)
    if stem_pool not in ("auto",) + STEM_POOLS:
        raise InputError(f"stem_pool {stem_pool!r}: expected auto, {', '.join(STEM_POOLS)}")
    if not path.is_file():
        raise InputError(f"re-id checkpoint {path} not found (a fast-reid model_final.pth, or a state dict)")
    state, layout = _state_dict_of(_torch_load(path), path)
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"re-id checkpoint {path}: entries that are not tensors: {', '.join(bad[:10])}")
    old_bnneck = any(k.removeprefix("module.").startswith("heads.bnneck.") for k in state)
    old_classifier = any(k.removeprefix("module.") == "heads.classifier.weight" for k in state)
    generation = ("fast-reid up to 2020-09-09 (v0.1.x): heads.bnneck.*" if old_bnneck else
                  "fast-reid 2020-09-10..2021-03-22 (v1.0): heads.classifier.weight" if old_classifier else
                  "fast-reid from 2021-03-23 (v1.2+): heads.bottleneck.0.*, heads.weight")
    state, mappings = _map_old_layouts(state, path)
    detected_ibn = "backbone.layer1.0.bn1.IN.weight" in state
    ibn = detected_ibn if with_ibn is None else with_ibn
    classifier = state.get("heads.weight")
    if classifier is None:
        if require_classifier:
            raise InputError(f"re-id checkpoint {path}: missing key heads.weight (the classifier)")
        num_classes = 0
        print(f"re-id checkpoint {path.name}: no classifier (heads.weight); built with num_classes 0 "
              "(eval features need no classifier)")
    elif classifier.dim() != 2:
        raise InputError(f"re-id checkpoint {path}: heads.weight has shape {tuple(classifier.shape)}, "
                         f"expected (num_classes, {FEATURE_DIM})")
    else:
        num_classes = int(classifier.shape[0])
    if stem_pool == "auto":
        stem_pool = "pad1" if old_bnneck else "ceil"
        why = ("heads.bnneck.* keys: a fast-reid v0.1.x file, whose stem max-pool had padding 1" if old_bnneck
               else "current fast-reid head keys: stem max-pool padding 0, ceil mode")
        print(f"re-id checkpoint {path.name}: stem_pool auto -> {stem_pool} ({why})")
    model = BagtricksReID(num_classes, ibn, stem_pool)
    _check_and_load(model, state, f"re-id checkpoint {path} (built with_ibn={ibn}, num_classes={num_classes})")
    info = {"path": str(path), "sha256": sha256_of(path), "with_ibn": ibn, "detected_ibn": detected_ibn,
            "num_classes": num_classes, "stem_pool": stem_pool, "mappings": mappings, "layout": layout, "generation": generation}
    return model.eval(), info


def load_imagenet_backbone(model: BagtricksReID, path: str | os.PathLike) -> list[str]:
    """Load IBN-Net / torchvision ImageNet weights into `model.backbone`; returns the ignored keys (fc.*).

    Only `fc.weight` / `fc.bias` may be unexpected; only `*.num_batches_tracked` may be missing (files from
    old PyTorch lack them; BatchNorm keeps its own counter). Anything else is one InputError naming the keys.
    """
    path = Path(path)
    spec = IMAGENET_WEIGHTS[model.with_ibn]
    if not path.is_file():
        raise InputError(f"ImageNet backbone weights {path} not found: fetch {spec.filename} from {spec.url} on a "
                         "connected machine and pass its path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"ImageNet backbone weights {path} are unreadable ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"ImageNet backbone weights {path}: expected a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    ignored = [k for k in state if k in ("fc.weight", "fc.bias")]
    state = {k: v for k, v in state.items() if k not in ignored}
    _check_and_load(model.backbone, state, f"ImageNet backbone weights {path} (expected {spec.filename})",
                    allow_missing=lambda key: key.endswith(".num_batches_tracked"))
    return ignored


def export_fastreid(model: BagtricksReID, path: str | os.PathLike, wrap: bool = False) -> None:
    """Write the weights as a plain fast-reid state dict (or `{'model': state_dict}` when `wrap`), atomically."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):  # DDP / torch.compile wrappers
        model = getattr(model, "module", None) or model._orig_mod
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_torch_save({"model": state} if wrap else state, path)
