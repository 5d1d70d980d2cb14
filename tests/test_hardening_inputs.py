"""Input decoding (issue 17): damaged images refused naming the file, every mode converted on its own scale,
BOM-tolerant and encoding-checked CSV/JSON, coordinates range-checked. Each case makes its own bad file."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import train as train_script
from data.annotations import read_annotations, read_pairs
from data.market_dataset import MarketDataset
from data.pose_formats import read_csv_pose, read_openpose_json, read_photo
from metrics.image_folder import FileDataset, list_images
from scripts import transfer
from util.image import read_rgb, to_rgb
from util.io import InputError
from util.text_files import read_text_lines

TINY = ["--gpu_ids", "-1", "--num_threads", "0", "--ngf", "8", "--batchSize", "2", "--max_steps", "2"]


# --- making damaged files -----------------------------------------------------------------------------------

def jpeg_bytes(size=(64, 128), seed=0) -> bytes:
    """A textured JPEG (enough scan data to damage in the middle)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size[1], :size[0]]
    pixels = np.stack([(x * 4) % 256, (y * 2) % 256, ((x + y) * 3) % 256], -1)
    pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def scan_span(data: bytes) -> tuple[int, int]:
    """[start, end) of the entropy-coded scan: after the SOS segment, before the end-of-image marker."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big"), len(data) - 2


def corrupt_scan(data: bytes) -> bytes:
    """40 random bytes (no 0xFF, so no marker) written over the middle of the scan."""
    start, end = scan_span(data)
    middle = (start + end) // 2
    noise = np.random.default_rng(1).integers(0, 255, 40, dtype=np.uint8).tobytes()
    return data[:middle] + noise + data[middle + 40:]


def cut_middle(data: bytes) -> bytes:
    """The scan's middle third removed; header and end marker intact (a botched copy or download)."""
    start, end = scan_span(data)
    third = (end - start) // 3
    return data[:start + third] + data[start + 2 * third:]


def pil_decodes_silently(path: Path) -> bool:
    """Whether plain PIL decodes the file without a word (what made the damage invisible before)."""
    with Image.open(path) as image:
        image.load()
    return True


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


# --- JPEG damage ------------------------------------------------------------------------------------------

def test_corrupt_jpeg_scan_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(corrupt_scan(jpeg_bytes()))
    assert pil_decodes_silently(path)
    with pytest.raises(InputError, match=r"corrupt\.jpg: damaged JPEG data \(Corrupt JPEG data"):
        read_rgb(path)


def test_jpeg_with_its_middle_cut_out_is_refused(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut_middle(jpeg_bytes()))
    assert pil_decodes_silently(path)  # PIL fills the missing rows with grey
    with pytest.raises(InputError, match=r"cut\.jpg: damaged JPEG data \(Corrupt JPEG data: "):
        read_rgb(path)


def test_jpeg_cut_short_is_refused(tmp_path):
    data = jpeg_bytes()
    path = tmp_path / "short.jpg"
    path.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(InputError, match=r"short\.jpg: not a readable image \(OSError: image file is truncated"):
        read_rgb(path)


def test_jpeg_with_trailing_bytes_is_accepted_with_equal_pixels(tmp_path):
    data = jpeg_bytes()
    (tmp_path / "clean.jpg").write_bytes(data)
    (tmp_path / "trailing.jpg").write_bytes(data + b"\x00 camera maker notes \xff\x00" * 20)
    clean, trailing = read_rgb(tmp_path / "clean.jpg"), read_rgb(tmp_path / "trailing.jpg")
    assert trailing.mode == "RGB" and trailing.size == (64, 128)
    assert np.array_equal(np.asarray(trailing), np.asarray(clean))


def test_bad_bytes_are_refused_and_a_missing_file_is_named(tmp_path):
    (tmp_path / "text.jpg").write_bytes(b"no image here")
    with pytest.raises(InputError, match=r"text\.jpg: not a readable image \(unknown format\)"):
        read_rgb(tmp_path / "text.jpg")
    with pytest.raises(InputError, match=r"absent\.png: cannot read the image"):
        read_rgb(tmp_path / "absent.png")


def test_damaged_png_is_refused(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "good.png")
    data = bytearray((tmp_path / "good.png").read_bytes())
    data[data.index(b"IDAT") + 2000] ^= 0x55
    (tmp_path / "flipped.png").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"flipped\.png: not a readable image \(OSError: broken data stream"):
        read_rgb(tmp_path / "flipped.png")


# --- modes ------------------------------------------------------------------------------------------------

def test_16bit_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    Image.fromarray(values).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as image:
        assert image.mode == "I;16"
        assert image.convert("RGB").getpixel((2, 0)) == (255, 255, 255)  # PIL's own conversion clips
    rgb = read_rgb(tmp_path / "grey16.png")
    assert rgb.mode == "RGB" and rgb.info["source_mode"] == "I;16"
    assert np.asarray(rgb)[0].tolist() == [[0] * 3, [1] * 3, [128] * 3, [255] * 3]


def test_16bit_big_endian_and_32bit_integer_images(tmp_path):
    big_endian = Image.frombytes("I;16B", (2, 1), np.array([32896, 65535], ">u2").tobytes())
    assert np.asarray(to_rgb(big_endian))[0, :, 0].tolist() == [128, 255]
    Image.fromarray(np.array([[0, 32896]], dtype=np.int32)).save(tmp_path / "int32.tif")
    assert np.asarray(read_rgb(tmp_path / "int32.tif"))[0, :, 1].tolist() == [0, 128]
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(InputError, match=r"wide\.tif: a mode-I image must hold values in 0\.\.65535 .* 0\.\.70000"):
        read_rgb(tmp_path / "wide.tif")


def test_float_tiff_is_scaled_and_out_of_range_refused(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "float.tif")
    rgb = read_rgb(tmp_path / "float.tif")
    assert rgb.info["source_mode"] == "F" and np.asarray(rgb)[0, :, 0].tolist() == [0, 128, 255]
    Image.fromarray(np.array([[0.0, 200.0]], dtype=np.float32)).save(tmp_path / "wide.tif")
    with pytest.raises(InputError, match=r"wide\.tif: a float \(mode F\) image must hold values in \[0, 1\]"):
        read_rgb(tmp_path / "wide.tif")
    Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(InputError, match=r"nan\.tif: .*found non-finite values"):
        read_rgb(tmp_path / "nan.tif")


def test_palette_la_rgba_and_cmyk_conversions(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "palette.png")
    assert np.asarray(read_rgb(tmp_path / "palette.png"))[0].tolist() == [[10, 20, 30], [200, 100, 50]]
    palette.info["transparency"] = 0  # index 0 transparent: shown on white
    palette.save(tmp_path / "transparent.png", transparency=0)
    assert np.asarray(read_rgb(tmp_path / "transparent.png"))[0].tolist() == [[255, 255, 255], [200, 100, 50]]
    Image.frombytes("LA", (2, 1), bytes([0, 0, 0, 255])).save(tmp_path / "la.png")  # transparent, opaque black
    assert np.asarray(read_rgb(tmp_path / "la.png"))[0].tolist() == [[255] * 3, [0] * 3]
    Image.new("RGBA", (1, 1), (0, 0, 200, 128)).save(tmp_path / "rgba.png")  # half-transparent blue on white
    r, g, b = np.asarray(read_rgb(tmp_path / "rgba.png"))[0, 0].tolist()
    assert abs(r - 127) <= 1 and abs(g - 127) <= 1 and abs(b - 227) <= 1
    Image.new("CMYK", (1, 1), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert np.asarray(read_rgb(tmp_path / "cmyk.jpg"))[0, 0, 0] > 200  # red stays red
    Image.new("1", (1, 1), 1).save(tmp_path / "bilevel.png")
    assert np.asarray(read_rgb(tmp_path / "bilevel.png"))[0, 0].tolist() == [255] * 3


def test_unknown_mode_is_refused_naming_the_file_and_mode(tmp_path):
    Image.new("LAB", (2, 2), (50, 0, 0)).save(tmp_path / "lab.tif")
    with pytest.raises(InputError, match=r"lab\.tif: image mode LAB is not supported"):
        read_rgb(tmp_path / "lab.tif")
    with pytest.raises(InputError, match=r"me\.png: image mode LAB"):
        to_rgb(Image.new("LAB", (1, 1)), "me.png")


# --- text files -------------------------------------------------------------------------------------------

ROW = "a.jpg: [" + ", ".join(["5"] * 18) + "]: [" + ", ".join(["7"] * 18) + "]"


def test_bom_annotation_and_pair_csvs_are_accepted(tmp_path):
    (tmp_path / "ann.csv").write_bytes(b"\xef\xbb\xbf" + f"name:keypoints_y:keypoints_x\r\n{ROW}\r\n".encode())
    (tmp_path / "pairs.csv").write_bytes(b"\xef\xbb\xbffrom,to\r\na.jpg,b.jpg\r\n")
    annotations = read_annotations(tmp_path / "ann.csv")
    assert list(annotations) == ["a.jpg"] and annotations["a.jpg"][0].tolist() == [5, 7]
    assert read_pairs(tmp_path / "pairs.csv") == [("a.jpg", "b.jpg")]
    assert read_csv_pose(f"{tmp_path / 'ann.csv'}:a.jpg").keypoints[3].tolist() == [5.0, 7.0]


def test_utf16_text_with_a_bom_is_read(tmp_path):
    (tmp_path / "pairs.csv").write_bytes("from,to\r\nä.jpg,b.jpg\r\n".encode("utf-16"))
    assert read_text_lines(tmp_path / "pairs.csv") == ["from,to", "ä.jpg,b.jpg"]
    assert read_pairs(tmp_path / "pairs.csv") == [("ä.jpg", "b.jpg")]


def test_latin1_csv_is_refused_naming_file_and_line(tmp_path):
    text = f"name:keypoints_y:keypoints_x\n{ROW}\n" + ROW.replace("a.jpg", "caf\xe9.jpg") + "\n"
    (tmp_path / "ann.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError, match=r"ann\.csv: line 3, column 4: byte 0xe9 is not UTF-8"):
        read_annotations(tmp_path / "ann.csv")
    (tmp_path / "pairs.csv").write_bytes("from,to\nna\xefve.jpg,b.jpg\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"pairs\.csv: line 2, column 3: byte 0xef is not UTF-8"):
        read_pairs(tmp_path / "pairs.csv")


@pytest.mark.parametrize("value", [2**63, -(10**40), 100_001])
def test_coordinate_beyond_range_is_refused_naming_file_row_column(tmp_path, value):
    xs = ", ".join([str(value)] + ["7"] * 17)
    ys = ", ".join(["5"] * 18)
    (tmp_path / "ann.csv").write_text(f"name:keypoints_y:keypoints_x\n{ROW}\nb.jpg: [{ys}]: [{xs}]\n")
    expected = rf"ann\.csv row 2: keypoints_x value {str(value)[:12]}\S* (\(\d+ digits\) )?is out of range"
    with pytest.raises(InputError, match=expected + r" \(at most 100000 pixels\)"):
        read_annotations(tmp_path / "ann.csv")


def test_coordinate_of_5000_digits_is_one_clear_error(tmp_path):
    (tmp_path / "ann.csv").write_text(f"name:keypoints_y:keypoints_x\na.jpg: [{'9' * 5000}]: [1]\n")
    with pytest.raises(InputError, match=r"ann\.csv row 1: keypoints_y is not a list of integers"):
        read_annotations(tmp_path / "ann.csv")


def openpose(path: Path, values: list, bom: bool = False) -> Path:
    text = json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": values}]})
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


@pytest.mark.parametrize("huge", [1e300, 10**400, 2.0e5])
def test_huge_coordinate_in_openpose_json_is_refused(tmp_path, huge):
    values = [10.0, 20.0, 0.9] * 18
    values[3] = huge  # keypoint 1's x
    text = json.dumps({"people": [{"pose_keypoints_2d": values}]})
    (tmp_path / "huge.json").write_text(text)
    in_range = r"keypoint 1 \(in the file's order\) x = .* out of range"
    expected = r"a keypoint value is out of range" if isinstance(huge, int) else in_range
    with pytest.raises(InputError, match=rf"huge\.json: person 0: {expected}"):
        read_openpose_json(tmp_path / "huge.json")


@pytest.mark.parametrize("where, what", [(4, "y"), (5, "confidence")])
def test_nan_or_infinity_in_openpose_json_is_refused(tmp_path, where, what):
    values = [10.0, 20.0, 0.9] * 18
    values[where] = float("nan") if what == "y" else float("inf")
    openpose(tmp_path / "nan.json", values)  # json.dumps writes NaN / Infinity, which Python's json reads
    expected = rf"nan\.json: person 0: keypoint 1 \(in the file's order\) {what} = .* not a finite number"
    with pytest.raises(InputError, match=expected):
        read_openpose_json(tmp_path / "nan.json")


def test_openpose_json_with_a_bom_is_read_and_latin1_refused(tmp_path):
    pose = read_openpose_json(openpose(tmp_path / "bom.json", [10.0, 20.0, 0.9] * 18, bom=True))
    assert pose.keypoints[0].tolist() == [20.0, 10.0]
    (tmp_path / "latin.json").write_bytes('{"people": [], "note": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.json: line 1, column 28: byte 0xe9 is not UTF-8"):
        read_openpose_json(tmp_path / "latin.json")


def test_damaged_photo_is_refused_by_read_photo(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(corrupt_scan(jpeg_bytes()))
    with pytest.raises(InputError, match=r"photo\.jpg: damaged JPEG data"):
        read_photo(tmp_path / "photo.jpg")


# --- metrics image folders ----------------------------------------------------------------------------------

def test_upper_case_extensions_are_listed_in_the_official_order(tmp_path):
    for name in ("b_vis.png", "a_vis.JPG", "c_vis.jpg", "d_vis.PNG"):
        Image.new("RGB", (4, 4)).save(tmp_path / name, format="PNG" if "png" in name.lower() else "JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    listed = [p.name for p in list_images(tmp_path, "listing")]
    assert sorted(listed[:2]) == ["a_vis.JPG", "c_vis.jpg"] and sorted(listed[2:]) == ["b_vis.png", "d_vis.PNG"]
    assert [p.name for p in list_images(tmp_path, "sorted")] == ["a_vis.JPG", "b_vis.png", "c_vis.jpg", "d_vis.PNG"]


def test_metrics_reading_names_a_damaged_file_and_scales_16_bit(tmp_path):
    (tmp_path / "cut.jpg").write_bytes(cut_middle(jpeg_bytes()))
    Image.fromarray(np.full((2, 2), 32896, dtype=np.uint16)).save(tmp_path / "grey16.png")
    files = FileDataset([tmp_path / "cut.jpg", tmp_path / "grey16.png"])
    assert files[0]["error"].startswith(f"{tmp_path / 'cut.jpg'}: unreadable image: damaged JPEG data")
    item = files[1]
    assert item["error"] == "" and item["modes"] == "I;16" and item["image"].unique().tolist() == [128]


# --- datasets and CLIs --------------------------------------------------------------------------------------

def market(root: Path, dataset_opt) -> MarketDataset:
    return MarketDataset(dataset_opt("market", is_train=True, dataroot=str(root)))


def test_dataset_names_a_corrupt_image_at_first_use(tmp_path, make_pose_dataset, dataset_opt):
    root = make_pose_dataset(tmp_path / "data", "market", phases=("train",))
    dataset = market(root, dataset_opt)  # validation reads headers only: it stays fast
    victim = root / "train" / dataset.pairs[0][0]
    victim.write_bytes(corrupt_scan(victim.read_bytes()))
    with pytest.raises(InputError, match=rf"{victim.name}: damaged JPEG data"):
        dataset[0]


def test_dataset_accepts_trailing_bytes_and_refuses_a_cut_file(tmp_path, make_pose_dataset, dataset_opt, capsys):
    root = make_pose_dataset(tmp_path / "data", "market", phases=("train",))
    images = sorted((root / "train").glob("*.jpg"))
    images[0].write_bytes(images[0].read_bytes() + b"\x00" * 100)  # was refused as "truncated"
    dataset = market(root, dataset_opt)
    assert dataset[0]["source_image"].shape == (3, 128, 64)
    images[1].write_bytes(images[1].read_bytes()[:-300])
    with pytest.raises(InputError, match=rf"{images[1].name}: the image file is truncated or damaged"):
        market(root, dataset_opt)


def test_dataset_reports_16_bit_png_mode_and_scales_it(tmp_path, make_pose_dataset, dataset_opt, capsys):
    root = make_pose_dataset(tmp_path / "data", "market", phases=("train",))
    name = read_pairs(root / "market-pairs-train.csv")[0][0]
    Image.fromarray(np.full((128, 64), 32896, dtype=np.uint16)).save(root / "train" / name, format="PNG")
    item = market(root, dataset_opt)[0]
    assert f"first: {name}, I;16" in capsys.readouterr().out
    assert item["source_image"].abs().max().item() < 0.01  # mid-grey is 0 in [-1, 1], not white (1)


def test_train_cli_with_damaged_jpegs_exits_2_naming_a_file(tmp_path, make_pose_dataset, capsys):
    root = make_pose_dataset(tmp_path / "data", "market", phases=("train",))
    for image in (root / "train").glob("*.jpg"):
        image.write_bytes(cut_middle(image.read_bytes()))
    ckpt = tmp_path / "checkpoints"
    rc = train_script.main(["--name", "damaged", "--model", "PG2", "--stage", "1", "--dataset_mode", "market",
                            "--dataroot", str(root), "--checkpoints_dir", str(ckpt), *TINY])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and str(root / "train") in line and ".jpg: damaged JPEG data" in line, line
    assert not list(ckpt.rglob("*.pth"))


@pytest.fixture(scope="module")
def pg2_run(tiny_market_root, tmp_path_factory) -> list[str]:
    ckpt = tmp_path_factory.mktemp("hardening_ckpt")
    assert train_script.main(["--name", "h", "--model", "PG2", "--stage", "1", "--dataset_mode", "market",
                              "--dataroot", str(tiny_market_root), "--checkpoints_dir", str(ckpt), *TINY]) == 0
    return ["--name", "h", "--model", "PG2", "--stage", "1", "--dataset_mode", "market", "--checkpoints_dir",
            str(ckpt), "--gpu_ids", "-1", "--ngf", "8"]


def test_transfer_cli_with_a_corrupt_photo_exits_2_naming_it(pg2_run, tiny_market_root, tmp_path, capsys):
    photo = tmp_path / "me.jpg"
    photo.write_bytes(corrupt_scan(jpeg_bytes()))
    pose = tmp_path / "pose.json"
    kps = read_annotations(tiny_market_root / "market-annotation-test.csv")
    values = []
    for y, x in next(iter(kps.values())):
        values += [0.0, 0.0, 0.0] if y < 0 else [float(x), float(y), 0.9]
    openpose(pose, values)
    before = digest(tmp_path)
    rc = transfer.main(pg2_run + ["--source", str(photo), "--source_pose", str(pose), "--target", str(pose),
                                  "--out", str(tmp_path / "result.png")])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and f"{photo}: damaged JPEG data" in line, line
    assert digest(tmp_path) == before  # no result written


def test_only_the_damaged_dataset_image_is_refused_and_none_is_changed(tmp_path, tiny_market_root):
    """Every clean image of the tiny dataset passes the strict decoder; the one damaged copy alone fails."""
    folder = tmp_path / "imgs"
    shutil.copytree(tiny_market_root / "test", folder)
    victim = sorted(folder.glob("*.jpg"))[0]
    victim.write_bytes(cut_middle(victim.read_bytes()))
    before, refused = digest(folder), []
    for path in sorted(folder.glob("*.jpg")):
        try:
            read_rgb(path)
        except InputError as exc:
            refused.append(str(exc))
    assert len(refused) == 1 and refused[0].startswith(f"{victim}: damaged JPEG data"), refused
    assert digest(folder) == before
