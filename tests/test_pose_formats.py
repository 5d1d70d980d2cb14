"""Pose inputs (OpenPose COCO-18 / BODY_25 JSON, COCO-17, annotation-CSV rows) and framing (crop/pad/resize)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from data.annotations import write_annotations
from data.framing import fit_box, identity_framing, keypoint_box, union_box, whole_image_framing
from data.keypoints import KEYPOINT_NAMES
from data.pose_formats import (
    convert_keypoints,
    is_photo,
    list_pose_folder,
    read_csv_pose,
    read_openpose_json,
    read_photo,
    read_pose,
)
from util.io import InputError

# OpenPose's documented BODY_25 output order (output_keypoints.md); 25 = background is not written
BODY25_NAMES = ("nose", "neck", "r-shoulder", "r-elbow", "r-wrist", "l-shoulder", "l-elbow", "l-wrist", "mid-hip",
                "r-hip", "r-knee", "r-ankle", "l-hip", "l-knee", "l-ankle", "r-eye", "l-eye", "r-ear", "l-ear",
                "l-bigtoe", "l-smalltoe", "l-heel", "r-bigtoe", "r-smalltoe", "r-heel")
# MS COCO's 17 keypoints as torchvision's Keypoint R-CNN names them
COCO17_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                "right_knee", "left_ankle", "right_ankle")


def coco17_as_ours(name: str) -> str:
    """'left_shoulder' -> 'l-shoulder' (our spelling)."""
    side, _, part = name.partition("_")
    return name if not part else f"{side[0]}-{part}"


def numbered(count: int, confidence: float = 0.9) -> list[float]:
    """Flat (x, y, c) triples where keypoint i sits at x = 100 + i, y = 300 + 2i: the index shows in the value."""
    return [v for i in range(count) for v in (100.0 + i, 300.0 + 2 * i, confidence)]


def write_json(path, people, key="pose_keypoints_2d"):
    path.write_text(json.dumps({"version": 1.3, "people": [{"person_id": [-1], key: p} for p in people]}))
    return path


def expected_from(names: tuple[str, ...]) -> np.ndarray:
    """Our (18, 2) (y, x) for `numbered` values in a layout with these names; -1 where the layout lacks one."""
    out = np.full((18, 2), -1.0)
    for ours, name in enumerate(KEYPOINT_NAMES):
        if name in names:
            i = names.index(name)
            out[ours] = 300.0 + 2 * i, 100.0 + i
    return out


# --- OpenPose JSON ----------------------------------------------------------------------------------------


def test_body25_json_maps_by_name_and_drops_midhip_and_feet(tmp_path):
    pose = read_openpose_json(write_json(tmp_path / "b25.json", [numbered(25)]))
    np.testing.assert_array_equal(pose.keypoints, expected_from(BODY25_NAMES))
    assert pose.keypoints[8].tolist() == [300.0 + 2 * 9, 100.0 + 9]  # r-hip is BODY_25's 9, not MidHip 8
    assert pose.keypoints[17].tolist() == [300.0 + 2 * 18, 100.0 + 18]  # l-ear is the last body point, 18


def test_coco18_json_is_our_order_with_low_confidence_missing(tmp_path):
    values = numbered(18)
    values[3 * 4 + 2] = 0.0  # r-wrist not detected: OpenPose writes 0, 0, 0
    values[3 * 4:3 * 4 + 2] = [0.0, 0.0]
    values[3 * 16 + 2] = 0.04  # r-ear below the default threshold 0.05
    pose = read_openpose_json(write_json(tmp_path / "c18.json", [values], key="pose_keypoints"))  # v1.0 key
    expected = expected_from(KEYPOINT_NAMES)
    expected[[4, 16]] = -1
    np.testing.assert_array_equal(pose.keypoints, expected)
    assert read_openpose_json(tmp_path / "c18.json", threshold=0.01).keypoints[16].tolist() == [332.0, 116.0]


def test_json_keeps_the_most_confident_person(tmp_path):
    weak, strong = numbered(18, 0.3), [v + 5.0 if i % 3 != 2 else 0.8 for i, v in enumerate(numbered(18))]
    pose = read_openpose_json(write_json(tmp_path / "two.json", [weak, strong]))
    assert pose.keypoints[0].tolist() == [305.0, 105.0]


def test_coco17_to_18_neck_from_shoulders_and_missing_points():
    xyc = np.array(numbered(17), dtype=np.float64).reshape(17, 3)
    out = convert_keypoints(xyc, threshold=0.5)
    for ours, name in enumerate(KEYPOINT_NAMES):
        if name == "neck":
            continue
        theirs = [coco17_as_ours(n) for n in COCO17_NAMES].index(name)
        assert out[ours].tolist() == [300.0 + 2 * theirs, 100.0 + theirs], name
    left, right = xyc[5], xyc[6]
    assert out[1].tolist() == [(left[1] + right[1]) / 2, (left[0] + right[0]) / 2]  # neck = shoulders' midpoint
    xyc[6, 2] = 0.2  # right shoulder below threshold: it and the neck are missing, the rest unchanged
    xyc[0, 2] = 0.5  # exactly at the threshold counts as missing
    out = convert_keypoints(xyc, threshold=0.5)
    assert out[1].tolist() == [-1, -1] and out[2].tolist() == [-1, -1] and out[0].tolist() == [-1, -1]
    assert out[5].tolist() == [310.0, 105.0]


def test_coco17_order_matches_torchvision_metadata():
    from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights

    assert tuple(KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.meta["keypoint_names"]) == COCO17_NAMES


def test_coco_results_json_with_17_keypoints(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "keypoints": numbered(17), "score": 0.9}]))
    pose = read_openpose_json(path)
    assert pose.keypoints[2].tolist() == [300.0 + 12, 106.0]  # r-shoulder = COCO's 6


@pytest.mark.parametrize("content, message", [
    ('{"version": 1.3, "people": []}', "holds no person"),
    ('{"people": [{"pose_keypoints_2d": %s}]}' % json.dumps(numbered(19)), "57 keypoint values"),
    ('{"people": [{"pose_keypoints_2d": %s}]}' % json.dumps(numbered(18)[:-1]), "53 keypoint values"),
    ('{"people": [{"face_keypoints_2d": []}]}', "no 'pose_keypoints_2d'"),
    ('{"animals": []}', "not an OpenPose JSON"),
    ("{not json", "not valid JSON"),
])
def test_bad_json_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        read_openpose_json(path)
    assert str(path) in str(info.value)


# --- annotation CSV rows, photos, folders --------------------------------------------------------------------


def test_csv_rows_by_name_number_or_single_row(tmp_path, standing_pose):
    rows = {"a.jpg": standing_pose("market"), "b.jpg": standing_pose("market", shift=3)}
    write_annotations(tmp_path / "poses.csv", rows)
    by_name = read_csv_pose(f"{tmp_path / 'poses.csv'}:b.jpg")
    assert by_name.dataset_frame and by_name.origin.endswith("poses.csv:b.jpg")
    np.testing.assert_array_equal(by_name.keypoints, rows["b.jpg"])
    np.testing.assert_array_equal(read_csv_pose(f"{tmp_path / 'poses.csv'}:1").keypoints, rows["a.jpg"])
    with pytest.raises(InputError, match="has 2 rows; pick one"):
        read_csv_pose(str(tmp_path / "poses.csv"))
    with pytest.raises(InputError, match="no row 'c.jpg'"):
        read_csv_pose(f"{tmp_path / 'poses.csv'}:c.jpg")
    write_annotations(tmp_path / "one.csv", {"a.jpg": rows["a.jpg"]})
    assert read_pose(str(tmp_path / "one.csv")).origin.endswith("one.csv:a.jpg")
    assert is_photo("x/photo.JPG") and not is_photo(f"{tmp_path / 'poses.csv'}:b.jpg")


def test_csv_row_with_wrong_keypoint_count_names_file_and_row(tmp_path):
    path = tmp_path / "short.csv"
    ys, xs = ", ".join(["5"] * 17), ", ".join(["5"] * 18)
    path.write_text(f"name:keypoints_y:keypoints_x\na.jpg: [{ys}]: [{xs}]\n")
    with pytest.raises(InputError, match="short.csv row 1: keypoints_y has 17 values, expected 18"):
        read_csv_pose(f"{path}:a.jpg")


def test_unreadable_photo_and_exif_rotation(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="broken.jpg: not a readable image"):
        read_photo(tmp_path / "broken.jpg")
    with pytest.raises(InputError, match="not found"):
        read_photo(tmp_path / "absent.jpg")
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert read_photo(tmp_path / "phone.jpg").size == (20, 40)


def test_pose_folder_in_natural_order_with_csv_rows(tmp_path, standing_pose):
    for i in (10, 2, 1):
        write_json(tmp_path / f"frame{i}.json", [numbered(18)])
    write_annotations(tmp_path / "z.csv", {"a.jpg": standing_pose("market"), "b.jpg": standing_pose("market")})
    (tmp_path / "notes.txt").write_text("ignored")
    names = [s.rsplit("/", 1)[-1] for s in list_pose_folder(tmp_path)]
    assert names == ["frame1.json", "frame2.json", "frame10.json", "z.csv:a.jpg", "z.csv:b.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no poses"):
        list_pose_folder(tmp_path / "empty")


# --- framing -------------------------------------------------------------------------------------------------

PHOTO_POSE = np.array([[40, 150], [70, 152], [72, 120], [120, 108], [165, 104], [71, 184], [118, 196],
                       [163, 201], [178, 132], [262, 128], [344, 126], [179, 172], [263, 176], [345, 180],
                       [33, 142], [33, 158], [38, 131], [-1, -1]], dtype=np.float64)  # (y, x) in a 380x300 photo


def marker_centroid(framing, point, photo_size, radius):
    """Intensity centroid (y, x) in the frame of a white disc drawn at `point` of a black photo."""
    h, w = photo_size
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - point[0]) ** 2 + (xx - point[1]) ** 2 <= radius ** 2).astype(np.uint8) * 255
    out = np.asarray(framing.crop(Image.fromarray(disc).convert("RGB"), fill=(0, 0, 0)), dtype=np.float64)[..., 0]
    ys, xs = np.mgrid[:out.shape[0], :out.shape[1]]
    return np.array([(out * ys).sum(), (out * xs).sum()]) / out.sum()


@pytest.mark.parametrize("case", ["market_down", "fashion_down", "upscale_and_pad", "off_the_edge"])
def test_framing_keeps_keypoints_on_their_body_points(case):
    pose, size, radius = PHOTO_POSE.copy(), (380, 300), 7
    if case == "upscale_and_pad":  # a small photo: scale > 1, the box leaves the photo at the sides
        pose, size, radius = np.where(pose >= 0, pose / 4 - [0, 20], -1), (95, 40), 2
    if case == "off_the_edge":  # the person at the photo's left edge: the crop pads on the left
        pose = np.where(pose >= 0, pose - [0, 100], -1)
    frame = (256, 176) if case in ("fashion_down", "upscale_and_pad") else (128, 64)
    framing = fit_box(keypoint_box(pose), *frame)
    mapped = framing.keypoints_to_frame(pose)
    if case == "upscale_and_pad":
        assert framing.scale > 1 and framing.box[1] < 0 < size[1] < framing.box[3]
    if case == "off_the_edge":
        assert framing.box[1] < 0
    assert (mapped[:17] >= 0).all() and (mapped[17] == -1).all()
    exact = (pose + 0.5 - [framing.top, framing.left]) * framing.scale - 0.5  # before rounding to pixels
    for k in range(17):
        centroid = marker_centroid(framing, pose[k], size, radius)
        assert np.abs(centroid - exact[k]).max() <= 0.5, (k, centroid, exact[k])
        assert np.abs(centroid - mapped[k]).max() <= 1.0, (k, centroid, mapped[k])
    back = framing.keypoints_from_frame(mapped)  # round trip: within half an output pixel
    assert np.abs((back[:17] - pose[:17]) * framing.scale).max() <= 0.5 + 1e-9
    assert (back[17] == -1).all()


def test_fit_keeps_aspect_ratio_and_centres_the_person():
    box = keypoint_box(PHOTO_POSE)
    framing = fit_box(box, 128, 64)
    top, left, bottom, right = framing.box
    assert (bottom - top) / (right - left) == pytest.approx(2.0)
    assert (top + bottom) / 2 == pytest.approx((box[0] + box[2]) / 2)
    assert (left + right) / 2 == pytest.approx((box[1] + box[3]) / 2)
    mapped = framing.keypoints_to_frame(PHOTO_POSE)
    # placed like the datasets: the skeleton spans about 0.07 H .. 0.9 H
    assert 0.05 * 128 <= mapped[:17, 0].min() <= 0.12 * 128 and 0.85 * 128 <= mapped[:17, 0].max() <= 0.92 * 128
    wide = fit_box((0, 0, 10, 100), 128, 64)  # a wide box sets the scale by its width
    assert wide.box[3] - wide.box[1] == pytest.approx(100) and wide.box[2] - wide.box[0] == pytest.approx(200)


def test_whole_image_identity_union_and_too_few_points():
    dataset_image = whole_image_framing((128, 64), 128, 64)
    assert (dataset_image.top, dataset_image.left, dataset_image.scale) == (0, 0, 1)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 64, 3), dtype=np.uint8))
    np.testing.assert_array_equal(np.asarray(dataset_image.crop(image)), np.asarray(image))
    kps = np.array([[5, 7]] + [[-1, -1]] * 17)
    np.testing.assert_array_equal(identity_framing(128, 64).keypoints_to_frame(kps), kps)
    assert union_box([(0, 5, 10, 20), (-3, 8, 4, 30)]) == (-3, 5, 10, 30)
    with pytest.raises(InputError, match="1 visible keypoint"):
        keypoint_box(kps, "pose.json")
