"""metrics/: SSIM variants, PSNR, L1/MAE against scikit-image; mask-SSIM; Fréchet distance against scipy; the
statistics cache; IS; the Inception input paths; LPIPS against the lpips package. No download, no real weights."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from data.keypoints import evaluation_mask
from metrics import ssim as ssim_ops
from metrics.evaluate import Networks, real_statistics, score_pairs, summarise
from metrics.fid import StatisticsCache, frechet_distance, frechet_distance_scipy, legacy_subset, statistics
from metrics.inception import IMAGENET_MEAN, IMAGENET_STD, preprocess, tf1_resize_bilinear
from metrics.inception_score import inception_score
from metrics.pairing import LAYOUTS, match
from util.io import InputError

TOL = 1e-5


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt to fetch weights fails the test; one torch thread (a shared 2-core CPU stalls with two)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args[:1]}")
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["cpu kernels", "torch"])
def ssim_path(request, monkeypatch):
    """Run a test through the numba CPU kernels and through the batched torch code (the accelerator path)."""
    if request.param == "torch":
        monkeypatch.setattr(ssim_ops, "streaming_kernels", lambda images: False)
    return request.param


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def synthetic_images(rng: np.random.Generator, count: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W, 3): gradients, flat blocks (constant windows), stripes and noise."""
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    images = []
    for i in range(count):
        base = 255 * (0.5 + 0.5 * np.sin(6 * xx + i) * np.cos(4 * yy))
        image = np.stack([base, base[::-1], np.full_like(base, 40.0 * (i % 6))], axis=-1)
        image[: height // 3, : width // 2] = rng.integers(0, 256)  # a flat block
        image[height // 2:, :, i % 3] += rng.normal(0, 25, (height - height // 2, width))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(images)


@pytest.mark.parametrize("size", [(128, 64), (256, 176), (64, 64)])
def test_ssim_variants_and_psnr_equal_scikit_image(size, ssim_path):
    rng = np.random.default_rng(0)
    gen = np.concatenate([rng.integers(0, 256, (2, *size, 3)), synthetic_images(rng, 2, size)]).astype(np.uint8)
    ref = np.clip(gen + rng.normal(0, 30, gen.shape), 0, 255).astype(np.uint8)
    ref[1] = rng.integers(0, 256, (*size, 3))
    g01, r01 = gen.astype(np.float64) / 255, ref.astype(np.float64) / 255
    ours51 = ssim_ops.ssim_uniform(nchw(g01), nchw(r01), win_size=51, data_range=1.0)
    ours_gauss = ssim_ops.ssim_gaussian(nchw(gen * 1.0), nchw(ref * 1.0), sigma=1.5)
    ours_psnr = ssim_ops.psnr(nchw(g01), nchw(r01))
    combined = ssim_ops.reconstruction_uint8(nchw(gen), nchw(ref))
    for i in range(len(gen)):
        g255 = gen[i].astype(np.float64)
        want51 = structural_similarity(r01[i], g01[i], data_range=1, win_size=51, channel_axis=-1)
        want_gauss = structural_similarity(ref[i] * 1.0, g255, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, channel_axis=-1,
                                           data_range=g255.max() - g255.min())
        want_psnr = peak_signal_noise_ratio(r01[i], g01[i], data_range=1)
        assert abs(ours51[i].item() - want51) < TOL
        assert abs(ours_gauss[i].item() - want_gauss) < TOL
        assert abs(ours_psnr[i].item() - want_psnr) < TOL
        assert abs(combined["ssim"][i].item() - want51) < TOL
        assert abs(combined["ssim_256"][i].item() - want_gauss) < TOL
        assert abs(combined["psnr"][i].item() - want_psnr) < TOL
        assert abs(combined["l1"][i].item() - np.abs(g01[i] - r01[i]).mean()) < 1e-12
        assert abs(combined["mae"][i].item() - np.abs(g01[i] - r01[i]).sum() / (g01[i] + r01[i]).sum()) < 1e-12


def test_other_ssim_settings_equal_scikit_image(ssim_path):
    rng = np.random.default_rng(1)
    gen, ref = rng.random((2, 40, 30, 3)), rng.random((2, 40, 30, 3))
    ours = ssim_ops.ssim_gaussian(nchw(gen), nchw(ref), sigma=1.2, data_range=1.0, sample_covariance=True)
    ours7 = ssim_ops.ssim_uniform(nchw(gen), nchw(ref), win_size=7, data_range=2.0, sample_covariance=False)
    for i in range(2):
        want = structural_similarity(gen[i], ref[i], gaussian_weights=True, sigma=1.2, data_range=1.0,
                                     channel_axis=-1)
        want7 = structural_similarity(gen[i], ref[i], win_size=7, data_range=2.0, use_sample_covariance=False,
                                      channel_axis=-1)
        assert abs(ours[i].item() - want) < TOL and abs(ours7[i].item() - want7) < TOL
    assert ssim_ops.ssim_window(1.2) == 9 and ssim_ops.ssim_window(1.5) == 11


def test_any_dtype_and_tensors_with_grad_are_scored(ssim_path):
    rng = np.random.default_rng(4)
    gen = torch.from_numpy(rng.random((2, 3, 32, 32)))
    ref = torch.from_numpy(rng.random((2, 3, 32, 32)))
    half_gen, half_ref = gen.to(torch.bfloat16), ref.to(torch.bfloat16)
    want = ssim_ops.ssim_gaussian(half_gen.double(), half_ref.double(), data_range=1.0)
    got = ssim_ops.ssim_gaussian(half_gen.requires_grad_(), half_ref, data_range=1.0)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)


def test_chunking_does_not_change_values(monkeypatch):
    monkeypatch.setattr(ssim_ops, "streaming_kernels", lambda images: False)
    rng = np.random.default_rng(2)
    gen, ref = nchw(rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)), nchw(rng.integers(0, 256, (5, 64, 64, 3),
                                                                                           dtype=np.uint8))
    whole = ssim_ops.reconstruction_uint8(gen, ref)
    monkeypatch.setattr(ssim_ops, "CHUNK_ELEMENTS", 1)  # one image per chunk
    single = ssim_ops.reconstruction_uint8(gen, ref)
    assert all(torch.allclose(whole[m], single[m], rtol=0, atol=1e-14) for m in whole)


def test_constant_and_identical_images_are_reported_not_averaged(ssim_path):
    gen = np.full((1, 32, 32, 3), 7, dtype=np.uint8)
    ref = np.random.default_rng(3).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    values = ssim_ops.reconstruction_uint8(nchw(np.concatenate([gen, ref])), nchw(np.concatenate([ref, ref])),
                                           ("ssim_256", "psnr"))
    assert torch.isnan(values["ssim_256"][0]) and values["ssim_256"][1] == 1.0
    assert torch.isinf(values["psnr"][1])
    summary = summarise(values["ssim_256"].numpy(), ["const.jpg", "same.jpg"])
    assert summary["value"] == 1.0 and summary["n"] == 1
    assert summary["excluded"] == {"count": 1, "names": ["const.jpg"]}


def test_ssim_rejects_small_images(ssim_path):
    with pytest.raises(ValueError, match="exceeds the image extent"):
        ssim_ops.ssim_uniform(torch.zeros(1, 3, 40, 40), torch.zeros(1, 3, 40, 40), win_size=51)


# --- pairing ----------------------------------------------------------------------------------------------

def write(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_pairing_official_names_and_missing_targets(tmp_path):
    rng = np.random.default_rng(4)
    def img():
        return rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)
    for name in ("0001_c1s1_000100_01", "0001_c2s1_000200_01", "0002_c1s1_000300_02"):
        write(tmp_path / "gt" / f"{name}.jpg", img())
    write(tmp_path / "gen" / "0001_c1s1_000100_01_2_0001_c2s1_000200_01_vis.jpg", img())
    write(tmp_path / "gen" / "0001_c2s1_000200_01_2_0001_c1s1_000100_01_vis.png", img())
    write(tmp_path / "gen" / "web" / "ignored_2_x_vis.jpg", img())  # test.py's web/ folder is not read
    matching = match(tmp_path / "gen", tmp_path / "gt")
    assert [(p.source_name, p.target_name) for p in matching.pairs] == [
        ("0001_c1s1_000100_01", "0001_c2s1_000200_01.jpg"), ("0001_c2s1_000200_01", "0001_c1s1_000100_01.jpg")]
    for name in ("0002_c1s1_000300_02_2_0009_c1s1_000900_01_vis.jpg", "0002_c1s1_000300_02_2_0008_c1_vis.jpg"):
        write(tmp_path / "gen" / name, img())
    with pytest.raises(InputError, match=r"2 of 4 generated images have no ground truth.*0008_c1\.jpg"):
        match(tmp_path / "gen", tmp_path / "gt")
    allowed = match(tmp_path / "gen", tmp_path / "gt", allow_missing=True)
    assert len(allowed.pairs) == 2 and len(allowed.skipped()["unmatched"]) == 2
    write(tmp_path / "gen" / "stray.jpg", img())
    with pytest.raises(InputError, match=r"not named <from>_2_<to>_vis\.jpg.*stray\.jpg"):
        match(tmp_path / "gen", tmp_path / "gt", allow_missing=False)


def test_pairing_against_a_pair_file(tmp_path):
    rng = np.random.default_rng(5)
    for name in ("a_1", "b_1"):
        write(tmp_path / "gt" / f"{name}.jpg", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    write(tmp_path / "gen" / "a_1_2_b_1_vis.jpg", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    matching = match(tmp_path / "gen", tmp_path / "gt", pairs=[("a_1.jpg", "b_1.jpg")])
    assert len(matching.pairs) == 1
    with pytest.raises(InputError, match=r"1 rows of the pair file have no generated image; first: b_1\.jpg -> a_1"):
        match(tmp_path / "gen", tmp_path / "gt", pairs=[("a_1.jpg", "b_1.jpg"), ("b_1.jpg", "a_1.jpg")])


@pytest.mark.parametrize("layout", ["patn5", "hpt3"])
def test_panel_layouts_take_the_right_tiles(tmp_path, layout):
    spec = LAYOUTS[layout]
    rng = np.random.default_rng(6)
    tiles = [rng.integers(0, 256, (16, 8, 3), dtype=np.uint8) for _ in range(spec.tiles)]
    name = "0001_c1s1_000100_01.jpg___0001_c2s1_000200_01.jpg_vis.png"  # lossless, to compare pixels
    write(tmp_path / "gen" / name, np.concatenate(tiles, axis=1))
    matching = match(tmp_path / "gen", None, layout)
    assert matching.pairs[0].target_name == "0001_c2s1_000200_01.jpg"
    scores = score_pairs(matching.pairs, matching.layout, None, {"l1", "psnr"}, Networks(), False,
                         torch.device("cpu"), 4, 0)
    gen, tgt = tiles[spec.generated_tile] / 255.0, tiles[spec.target_tile] / 255.0
    assert scores.values["l1"][0] == pytest.approx(np.abs(gen - tgt).mean(), abs=1e-12)
    assert scores.values["psnr"][0] == pytest.approx(peak_signal_noise_ratio(tgt, gen, data_range=1), abs=1e-9)


# --- mask-SSIM --------------------------------------------------------------------------------------------

def test_mask_ssim_equals_masked_scikit_image(tmp_path, standing_pose):
    rng = np.random.default_rng(7)
    keypoints = {}
    for i in range(3):
        write(tmp_path / "gt" / f"000{i}_c1s1_000000_01.jpg", synthetic_images(rng, 1, (128, 64))[0])
        pose = standing_pose("market", shift=2 * i)
        if i == 2:
            pose[9:] = -1  # legs and face missing: a smaller mask
        keypoints[f"000{i}_c1s1_000000_01.jpg"] = pose
    for i in range(3):
        name = f"000{(i + 1) % 3}_c1s1_000000_01_2_000{i}_c1s1_000000_01_vis.png"
        write(tmp_path / "gen" / name, rng.integers(0, 256, (128, 64, 3), dtype=np.uint8))
    matching = match(tmp_path / "gen", tmp_path / "gt")
    scores = score_pairs(matching.pairs, matching.layout, keypoints, {"mask_ssim"}, Networks(), False,
                         torch.device("cpu"), 2, 2)  # two loader workers: the CPU kernels run in them
    for pair, ours in zip(matching.pairs, scores.values["mask_ssim"]):
        mask = evaluation_mask(keypoints[pair.target_name], 128, 64)[..., None]
        gen = np.asarray(Image.open(pair.generated).convert("RGB")) * mask
        tgt = np.asarray(Image.open(pair.target).convert("RGB")) * mask
        want = structural_similarity(tgt, gen, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     channel_axis=-1, data_range=float(gen.max()) - float(gen.min()))
        assert 0.0 < mask.mean() < 0.6 and abs(ours - want) < TOL


# --- FID --------------------------------------------------------------------------------------------------

def test_frechet_distance_equals_scipy_reference():
    rng = np.random.default_rng(8)
    for n, dims in ((400, 32), (300, 128)):
        a = rng.normal(size=(n, dims)) @ rng.normal(size=(dims, dims)) * 0.3
        b = rng.normal(size=(n, dims)) * 1.2 + 0.4
        mu1, s1 = statistics(a)
        mu2, s2 = statistics(b)
        ours, reference = frechet_distance(mu1, s1, mu2, s2), frechet_distance_scipy(mu1, s1, mu2, s2)
        assert ours == pytest.approx(reference, rel=1e-6)
        assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9 * np.trace(s1)
    few = rng.normal(size=(20, 64))  # fewer images than dimensions: singular covariances, still real and ~0
    mu, sigma = statistics(few)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_statistics_are_float64_mean_and_sample_covariance():
    features = np.random.default_rng(9).normal(size=(50, 6)).astype(np.float32)
    mu, sigma = statistics(features)
    assert mu.dtype == sigma.dtype == np.float64
    assert np.allclose(sigma, np.cov(features.astype(np.float64), rowvar=False), rtol=0, atol=1e-15)


def test_legacy_subset_drops_the_partial_batch():
    assert legacy_subset(list(range(12000)), 64, "x") == list(range(11968))
    assert len(legacy_subset(list(range(8570)), 64, "x")) == 8512
    with pytest.raises(InputError, match="whole batches of 64 images only, and the real set has 10"):
        legacy_subset(list(range(10)), 64, "the real set")


class MeanColourNet:
    """A stand-in feature network (uint8 images -> per-channel mean and std), counting its calls."""

    kind = "clean-fid"

    def __init__(self, sha="abc"):
        from metrics.inception import WeightsRecord
        self.weights = WeightsRecord("stand-in", "none", sha)
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        x = images.float()
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


class SilentBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def silent_progress(total, desc):
    return SilentBar()


def test_statistics_cache_hits_misses_and_stays_out_of_the_image_folder(tmp_path):
    rng = np.random.default_rng(10)
    real = tmp_path / "real"
    for i in range(6):
        write(real / f"{i}.png", rng.integers(0, 256, (16, 8, 3), dtype=np.uint8))
    cache = StatisticsCache(tmp_path / "cache")
    net = MeanColourNet()
    def run(network=net, unit=None, store=cache):
        return real_statistics(str(real), network, unit, store, torch.device("cpu"), 4, 0, silent_progress)

    first = run()
    assert first.info["cache"] == "miss" and net.calls == 2
    assert sorted(p.name for p in real.iterdir()) == [f"{i}.png" for i in range(6)]  # nothing written there
    assert len(list((tmp_path / "cache").glob("fid_stats_*.npz"))) == 1
    second = run()
    assert second.info["cache"] == "hit" and net.calls == 2
    assert np.array_equal(first.mu, second.mu) and np.array_equal(first.sigma, second.sigma)
    stat = (real / "3.png").stat()
    os.utime(real / "3.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: never stale
    assert run().info["cache"] == "miss"
    assert run().info["cache"] == "hit"
    write(real / "6.png", rng.integers(0, 256, (16, 8, 3), dtype=np.uint8))  # a new image
    assert run().info["cache"] == "miss" and run().info["images_used"] == 7
    assert run(network=MeanColourNet(sha="other weights")).info["cache"] == "miss"
    assert run(unit=4).info["cache"] == "miss"  # legacy settings: 4 of 7 images, another key
    assert run(store=StatisticsCache(None)).info["cache"] == "off"


def test_fid_of_a_set_with_itself_is_zero(tmp_path):
    rng = np.random.default_rng(11)
    for i in range(8):
        write(tmp_path / "set" / f"{i}.png", rng.integers(0, 256, (16, 8, 3), dtype=np.uint8))
    real = real_statistics(str(tmp_path / "set"), MeanColourNet(), None, StatisticsCache(None),
                           torch.device("cpu"), 3, 0, silent_progress)
    assert abs(frechet_distance(real.mu, real.sigma, real.mu, real.sigma)) < 1e-9


# --- IS ---------------------------------------------------------------------------------------------------

def test_inception_score_matches_the_improved_gan_formula():
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(55, 1008)) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    mean, _, splits = inception_score(probabilities, 10)
    reference = []
    for i in range(10):
        part = probabilities[i * 55 // 10:(i + 1) * 55 // 10]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        reference.append(np.exp(np.mean(np.sum(kl, 1))))
    assert np.allclose(splits, reference, rtol=1e-12) and mean == pytest.approx(np.mean(reference))
    one_hot = np.eye(1008)[np.arange(40) % 4]  # 4 equally likely, certain classes per split
    assert inception_score(one_hot, 10)[0] == pytest.approx(4.0)
    with pytest.raises(InputError, match="at least 10 images"):
        inception_score(probabilities[:9], 10)


# --- Inception inputs ----------------------------------------------------------------------------------------

def test_legacy_quirk_is_torchvision_transform_input_on_unit_range():
    images = torch.tensor([0, 255], dtype=torch.uint8).reshape(2, 1, 1, 1).expand(2, 3, 5, 5)
    x = preprocess(images, "legacy-fid")
    low, high = x[0, :, 0, 0], x[1, :, 0, 0]
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    assert torch.allclose(low, (mean - 0.5) / 0.5) and torch.allclose(high, std / 0.5 + (mean - 0.5) / 0.5)
    assert torch.allclose(low, torch.tensor([-0.03, -0.088, -0.188]), atol=1e-6)  # DPTN `metrics/inception.py`
    assert x.shape == (2, 3, 299, 299)
    clean = preprocess(images, "clean-fid")
    assert clean.min().item() == pytest.approx(-1) and clean.max().item() == pytest.approx(1)


def test_tf1_resize_is_the_legacy_bilinear():
    rng = np.random.default_rng(13)
    image = rng.random((1, 1, 5, 7)).astype(np.float32)
    out = tf1_resize_bilinear(torch.from_numpy(image), 9).numpy()[0, 0]
    expected = np.zeros((9, 9), dtype=np.float64)
    for r in range(9):
        for c in range(9):
            y, x = r * 5 / 9, c * 7 / 9  # no half-pixel offset
            y0, x0 = int(y), int(x)
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
            dy, dx = y - y0, x - x0
            top = image[0, 0, y0, x0] * (1 - dx) + image[0, 0, y0, x1] * dx
            bottom = image[0, 0, y1, x0] * (1 - dx) + image[0, 0, y1, x1] * dx
            expected[r, c] = top * (1 - dy) + bottom * dy
    assert np.allclose(out, expected, atol=1e-5)
    square = torch.from_numpy(image[..., :5])
    assert torch.equal(tf1_resize_bilinear(square, 5), square)  # same size: the identity


def test_summarise_ignores_nothing_finite():
    summary = summarise(np.array([1.0, 2.0, 3.0]), ["a", "b", "c"])
    assert summary["value"] == 2.0 and summary["n"] == 3 and "excluded" not in summary
    assert summary["std"] == pytest.approx(np.std([1, 2, 3]))


def test_uniform_moments_match_scipy_uniform_filter():
    x = torch.rand(1, 1, 30, 40, dtype=torch.float64)
    ours = ssim_ops.uniform_moments(x, 7)[0, 0].numpy()
    theirs = ndimage.uniform_filter(x[0, 0].numpy(), size=7)[3:-3, 3:-3]
    assert np.allclose(ours, theirs, rtol=0, atol=1e-14)
