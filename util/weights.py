"""Pretrained weights: one table of every file the project reads, found locally or fetched into the torch hub cache.

A pipeline first asks for everything it needs at once (`ensure_weights`), before loading or computing
anything: present files are used as they are (no HTTP request), missing ones are downloaded with
`torch.hub.download_url_to_file` (a progress bar, a `<file>.<uuid>.partial` temp file that it deletes on any
error, the SHA-256 prefix checked before the move into place). With downloads off (`--no_download`,
HPT_NO_DOWNLOAD=1) or failing (offline), one InputError lists every missing file with its URL and where to
put it. Nothing is ever silently random: random weights are an explicit, announced switch. docs/weights.md.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from util.io import InputError

NO_DOWNLOAD_ENV = "HPT_NO_DOWNLOAD"  # 1/true/yes: never download (the test suite sets it)
BASE_URL_ENV = "HPT_WEIGHTS_BASE_URL"  # tests only: fetch every file from <this>/<file name> instead
TORCHVISION = "https://download.pytorch.org/models/"
WEIGHT_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".ckpt")  # an explicit path absent with these is a file, else a folder


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file: where it comes from, its SHA-256 prefix, and the switches that replace it."""

    filename: str
    url: str
    sha256: str  # expected prefix of the file's SHA-256, checked on download (the `-<hex>.` of the name)
    size_mib: float | None  # as published (torchvision's `_file_size`); None: not recorded
    purpose: str
    flag: str  # the option that gives an explicit path instead of the hub cache
    random_switch: str  # the option that runs with random weights instead (tests and demos only)
    alternatives: tuple[str, ...] = ()  # older file names, accepted when present, never downloaded

    @property
    def names(self) -> tuple[str, ...]:
        return (self.filename, *self.alternatives)


# The one table (file name, URL, SHA-256 prefix, what it is for). Re-id backbones: metrics/reid_net.py.
VGG19 = WeightSpec("vgg19-dcbb9e9d.pth", TORCHVISION + "vgg19-dcbb9e9d.pth", "dcbb9e9d", 548.1,
                   "VGG19 ImageNet (torchvision IMAGENET1K_V1), the perceptual and style losses of DPTN and PATN",
                   "--vgg_path", "--vgg_random_init")
INCEPTION_LEGACY = WeightSpec(
    "inception_v3_google-0cc3c7bd.pth", TORCHVISION + "inception_v3_google-0cc3c7bd.pth", "0cc3c7bd", 103.9,
    "Inception-v3 ImageNet (torchvision IMAGENET1K_V1), legacy FID", "--weights_dir", "--random_weights",
    alternatives=("inception_v3_google-1a9a5a14.pth",))  # torchvision <= 0.8, e.g. the DPTN docker
INCEPTION_TF = WeightSpec(
    "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "6726825d", 91.2, "TF Inception 2015-12-05 (pytorch-fid port), clean FID and IS", "--weights_dir",
    "--random_weights")
ALEXNET = WeightSpec("alexnet-owt-7be5be79.pth", TORCHVISION + "alexnet-owt-7be5be79.pth", "7be5be79", 233.1,
                     "AlexNet ImageNet (torchvision IMAGENET1K_V1), the LPIPS trunk", "--weights_dir",
                     "--random_weights")
KEYPOINT_RCNN = WeightSpec(
    "keypointrcnn_resnet50_fpn_coco-fc266e95.pth", TORCHVISION + "keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
    "fc266e95", 226.1, "Keypoint R-CNN ResNet-50 FPN COCO (torchvision COCO_V1), poses from photos",
    "--pose_weights", "--pose_random_weights")
RESNET50_IBN_A = WeightSpec(
    "resnet50_ibn_a-d9d0bb7b.pth",
    "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth", "d9d0bb7b", None,
    "ResNet-50 IBN-a ImageNet (IBN-Net release v1.0), the re-id backbone (--reid_arch r50_ibn)",
    "--pretrained_backbone", "--random_init_backbone")
RESNET50 = WeightSpec("resnet50-19c8e357.pth", TORCHVISION + "resnet50-19c8e357.pth", "19c8e357", 97.8,
                      "ResNet-50 ImageNet (torchvision, the 2017 file), the re-id backbone (--reid_arch r50)",
                      "--pretrained_backbone", "--random_init_backbone")
PRETRAINED = {spec.filename: spec for spec in
              (VGG19, INCEPTION_LEGACY, INCEPTION_TF, ALEXNET, KEYPOINT_RCNN, RESNET50_IBN_A, RESNET50)}

# what a failed transfer raises: offline (URLError), HTTP errors, a cut connection, a wrong hash (RuntimeError)
DOWNLOAD_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError,
                   RuntimeError)


def hub_checkpoint_dir() -> Path:
    """`$TORCH_HOME/hub/checkpoints`, where torchvision and torch.hub keep downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def downloads_allowed(download: bool = True) -> bool:
    """False when the caller says so (`--no_download`) or HPT_NO_DOWNLOAD is set to 1/true/yes."""
    return download and os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def source_url(spec: WeightSpec) -> str:
    """The spec's URL, or `$HPT_WEIGHTS_BASE_URL/<file name>` (tests serve files from 127.0.0.1 this way)."""
    base = os.environ.get(BASE_URL_ENV)
    return f"{base.rstrip('/')}/{spec.filename}" if base else spec.url


def _size(spec: WeightSpec) -> str:
    return f"{spec.size_mib:.1f} MiB" if spec.size_mib is not None else "size not recorded"


def _look_up(spec: WeightSpec, explicit: Path | None) -> tuple[Path | None, Path]:
    """(the present file or None, where the preferred file belongs) for `explicit` (file/folder) or the cache."""
    if explicit is not None and (explicit.is_file() or (not explicit.exists() and explicit.suffix in WEIGHT_SUFFIXES)):
        return (explicit if explicit.is_file() else None), explicit
    folder = explicit if explicit is not None else hub_checkpoint_dir()
    for name in spec.names:
        if (folder / name).is_file():
            return folder / name, folder / spec.filename
    return None, folder / spec.filename


def fetch(spec: WeightSpec, destination: Path, progress: bool = True) -> None:
    """Download `spec` to `destination`, printing URL and size; its hash prefix is checked before the move.

    torch.hub.download_url_to_file writes `<destination>.<uuid>.partial` and removes it in a `finally` on any
    error (a cut connection gives a short file, which the hash check refuses), so the cache never holds a
    partial or unverified file. Raises one of DOWNLOAD_ERRORS.
    """
    url = source_url(spec)
    print(f"downloading {spec.filename} ({spec.purpose}; {_size(spec)}) from {url} to {destination}", flush=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(destination), hash_prefix=spec.sha256, progress=progress)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return f"no connection ({exc.reason})"
    if isinstance(exc, RuntimeError) and "invalid hash value" in str(exc):
        return f"refused, wrong SHA-256 (truncated transfer or a changed file): {exc}"
    return f"{type(exc).__name__}: {exc}"


def ensure_weights(specs: list[WeightSpec] | tuple[WeightSpec, ...], download: bool = True,
                   explicit: str | os.PathLike | None = None, progress: bool = True) -> list[Path]:
    """The path of every spec's file, in order; missing files downloaded into the hub cache first.

    `explicit` is the user's own path (a folder holding the files, or one file when there is one spec): it is
    looked in, never downloaded into. Anything still missing raises ONE InputError listing every file, its URL,
    where it goes, and the switches that replace it.
    """
    explicit_path = Path(explicit) if explicit is not None else None
    if explicit_path is not None and len(specs) > 1 and explicit_path.is_file():
        raise InputError(f"{explicit_path} is one file, but {len(specs)} weight files are needed: pass the folder "
                         f"holding {', '.join(s.filename for s in specs)}")
    found: list[Path | None] = []
    missing: list[tuple[WeightSpec, Path, str]] = []
    offline = None  # after one failed connection, the others are not tried
    allowed = downloads_allowed(download) and explicit_path is None
    for spec in specs:
        path, target = _look_up(spec, explicit_path)
        if path is None and allowed and offline is None:
            try:
                fetch(spec, target, progress)
                path = target
            except DOWNLOAD_ERRORS as exc:
                reason = _reason(exc)
                if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
                    offline = reason
                missing.append((spec, target, f"download failed: {reason}"))
        elif path is None:
            why = ("not tried after the failure above" if offline else
                   "not downloaded: an explicit path is used as given" if explicit_path is not None else
                   f"not downloaded: downloads are off (--no_download or {NO_DOWNLOAD_ENV}=1)")
            missing.append((spec, target, why))
        found.append(path)
    if missing:
        raise InputError(missing_message(missing))
    return [path for path in found if path is not None]


def missing_message(missing: list[tuple[WeightSpec, Path, str]]) -> str:
    """One message for every missing file: name, purpose, size, URL, where it goes, why; then what to do."""
    reasons = {why for _, _, why in missing}
    shared = reasons.pop() if len(reasons) == 1 else None
    count = f"{len(missing)} file{'s' if len(missing) > 1 else ''}"
    lines = [f"missing pretrained weights ({count}{'; ' + shared if shared else ''}):"]
    for spec, target, why in missing:
        also = f"; also accepted: {', '.join(spec.alternatives)}" if spec.alternatives else ""
        lines.append(f"  {spec.filename}: {spec.purpose}; {_size(spec)}{also}")
        lines.append(f"    {target} not found; URL {source_url(spec)}{'' if shared else f' ({why})'}")
    flags = sorted({spec.flag for spec, _, _ in missing})
    switches = sorted({spec.random_switch for spec, _, _ in missing})
    lines.append(f"Fetch each URL on a connected machine and copy the file to the path shown (the torch hub cache "
                 f"is {hub_checkpoint_dir()}/), or pass {' / '.join(flags)} <path>; to run with RANDOM weights "
                 f"instead (tests and demos only): {' / '.join(switches)}. See docs/weights.md")
    return "\n".join(lines)


def local_weights(spec: WeightSpec, explicit: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The path of one spec's file (see ensure_weights)."""
    return ensure_weights([spec], download, explicit)[0]


def load_state_dict_file(path: Path) -> dict:
    """torch.load a weights file on CPU (weights_only); InputError naming it when unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated downloads and wrong files raise many different errors
        raise InputError(f"weights file {path} is unreadable ({type(exc).__name__}: {exc})") from None


def file_sha256(path: str | os.PathLike, prefix: int = 12) -> str:
    """The first `prefix` hex digits of the file's SHA-256, for provenance records."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:prefix]


def warn_random_weights(network: str, switch: str) -> None:
    """Announce loudly that `network` uses random weights because `switch` was given."""
    message = (f"{switch}: {network} uses RANDOM weights, not pretrained ones. Results are meaningless "
               "except for tests and offline demos.")
    warnings.warn(message, stacklevel=2)
    print(f"WARNING: {message}")
