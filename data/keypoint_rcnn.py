"""Poses from photos with torchvision's Keypoint R-CNN (ResNet-50 FPN, COCO), converted to our COCO-18 order.

The weights (`keypointrcnn_resnet50_fpn_coco-fc266e95.pth`, torchvision's COCO_V1) come from `--pose_weights`
or the torch hub cache, downloaded there on first use (util/weights.py; `--no_download` turns it off). `random_weights=True` (the
`--pose_random_weights` switch) builds the network with random weights instead, loudly: for tests only.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.pose_formats import Pose, convert_keypoints
from util.image import to_rgb
from util.io import InputError
from util.weights import KEYPOINT_RCNN, ensure_weights, load_state_dict_file, warn_random_weights

WEIGHTS_URL = KEYPOINT_RCNN.url
WEIGHTS_FILE = KEYPOINT_RCNN.filename
KEYPOINT_THRESHOLD = 2.0  # keypoint scores are heatmap logits; Detectron draws keypoints above 2
PERSON_THRESHOLD = 0.5
DETECTIONS = 4  # the keypoint head runs per detection: keep only the best few (we use one)
POSE_FILE_HINT = ("or give the pose as a file instead, which needs no estimator: an OpenPose .json or an annotation "
                  ".csv row (scripts.transfer: --source_pose, --target, --target_dir)")


def keypoint_rcnn_weights(explicit: str | os.PathLike | None, download: bool = True) -> Path:
    """Where the COCO weights are: `explicit` (a file or a folder holding it) or the hub cache (fetched when
    missing); else one InputError that also says a pose file needs no estimator."""
    try:
        return ensure_weights([KEYPOINT_RCNN], download, explicit)[0]
    except InputError as exc:
        raise InputError(f"{exc}; {POSE_FILE_HINT}") from None


class KeypointRCNNEstimator:
    """Callable photo -> Pose of the most confident person (COCO-17 -> 18, neck from the shoulders).

    min_size / max_size: the detector's resize of the photo's shorter / longer side (torchvision: 800 / 1333).
    """

    def __init__(self, weights: str | os.PathLike | None = None, random_weights: bool = False,
                 keypoint_threshold: float = KEYPOINT_THRESHOLD, person_threshold: float = PERSON_THRESHOLD,
                 min_size: int = 800, max_size: int = 1333, device: torch.device | str = "cpu",
                 seed: int = 0, download: bool = True) -> None:
        from torchvision.models.detection import keypointrcnn_resnet50_fpn  # only photos need torchvision's detector

        self.keypoint_threshold = keypoint_threshold
        self.person_threshold = person_threshold
        self.device = torch.device(device)
        path = None if random_weights else keypoint_rcnn_weights(weights, download)  # fail before building
        with torch.random.fork_rng(devices=[]):  # random init must not move the caller's RNG streams
            torch.manual_seed(seed)
            # weights=None and weights_backbone=None: torchvision must not try to download anything
            net = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, num_keypoints=17,
                                            min_size=min_size, max_size=max_size,
                                            box_detections_per_img=DETECTIONS)
        if random_weights:
            warn_random_weights("Keypoint R-CNN (pose estimation)", "--pose_random_weights")
        else:
            self._load(net, path)
        self.net = net.to(self.device).eval()

    @staticmethod
    def _load(net: torch.nn.Module, path: Path) -> None:
        """Load the COCO state dict. Built without pretrained weights, the backbone has BatchNorm2d where the
        released model has FrozenBatchNorm2d: the same maths in eval mode, plus unused num_batches_tracked."""
        state = load_state_dict_file(path)
        if not isinstance(state, dict):
            raise InputError(f"weights file {path} holds no state dict")
        result = net.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            shown = (missing + list(result.unexpected_keys))[:3]
            raise InputError(f"weights file {path} is not Keypoint R-CNN ResNet-50 FPN COCO "
                             f"({len(missing)} missing, {len(result.unexpected_keys)} unexpected keys, e.g. "
                             f"{', '.join(shown)})")

    @torch.no_grad()
    def detect(self, image: Image.Image) -> dict[str, torch.Tensor]:
        """The detector's raw output for one RGB photo (boxes, scores, keypoints, keypoints_scores)."""
        array = np.asarray(to_rgb(image), dtype=np.float32) / 255.0  # 16-bit photos scaled, not clipped
        tensor = torch.from_numpy(array).permute(2, 0, 1).to(self.device)  # (3, H, W) in [0, 1]
        return {k: v.cpu() for k, v in self.net([tensor])[0].items()}

    def __call__(self, image: Image.Image, origin: str = "photo") -> Pose:
        """The most confident person in `image`; InputError naming `origin` when nobody passes the threshold."""
        found = self.detect(image)
        scores = found["scores"]
        if len(scores) == 0 or float(scores.max()) < self.person_threshold:
            best = f"best person score {float(scores.max()):.2f}" if len(scores) else "no detection at all"
            raise InputError(f"{origin}: no person found ({best}, --person_threshold {self.person_threshold}); "
                             "give the pose as a file instead (.json or .csv)")
        i = int(scores.argmax())
        xy = found["keypoints"][i, :, :2].double().numpy()  # (17, 2) x, y
        confidence = found["keypoints_scores"][i].double().numpy()  # (17,)
        keypoints = convert_keypoints(np.concatenate([xy, confidence[:, None]], axis=1), self.keypoint_threshold,
                                      origin)
        height, width = image.height, image.width
        outside = (keypoints[:, 0] >= height) | (keypoints[:, 1] >= width)  # the head may point past the border
        keypoints[outside] = -1.0
        x0, y0, x1, y1 = (float(v) for v in found["boxes"][i])
        return Pose(keypoints, origin, image_size=(height, width), box=(y0, x0, y1, x1))
