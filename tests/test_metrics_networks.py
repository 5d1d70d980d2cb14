"""metrics/ networks: LPIPS equals the lpips package; both Inceptions load local files and equal their reference
implementations (torchvision's forward, pytorch-fid's InceptionV3); missing or wrong weights fail clearly.
Weights here are random, saved to temporary files under the libraries' own file names; nothing is downloaded."""
from __future__ import annotations

import lpips
import pytest
import torch
import torchvision

from metrics.inception import LAYERS, LEGACY_FILES, TF_FILE, legacy_inception, tf_inception
from metrics.lpips_metric import ALEXNET_FILE, LPIPSMetric
from util.io import InputError


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path):
    """An empty torch hub cache, one torch thread (Inception on a shared 2-core CPU), no download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args[:1]}")
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    yield
    torch.set_num_threads(threads)


def images(seed: int, count: int = 2, size=(64, 48)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, *size), generator=generator, dtype=torch.uint8)


def reference_lpips() -> lpips.LPIPS:
    return lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)


def test_lpips_random_switch_equals_the_package(capsys):
    ours = LPIPSMetric(random_weights=True)
    assert "RANDOM weights" in capsys.readouterr().out
    theirs = reference_lpips()
    theirs.load_state_dict(ours.model.state_dict())  # the same random trunk; the heads are the package's
    gen, tgt = images(0), images(1)
    with torch.no_grad():
        direct = theirs(gen.float() / 127.5 - 1, tgt.float() / 127.5 - 1).flatten()
        assert torch.equal(ours(gen, tgt), direct)
        mask = torch.zeros(2, 1, 64, 48)
        mask[:, :, 10:50, 8:40] = 1
        masked = theirs((gen.float() / 127.5 - 1) * mask, (tgt.float() / 127.5 - 1) * mask).flatten()
        assert torch.equal(ours(gen, tgt, mask), masked)
    heads = torch.load(ours.weights["heads"].file, map_location="cpu", weights_only=True)
    assert torch.equal(ours.model.lin0.model[1].weight, heads["lin0.model.1.weight"])


def test_lpips_loads_the_alexnet_trunk_from_a_local_file(tmp_path):
    alexnet = torchvision.models.alexnet(weights=None)
    torch.save(alexnet.state_dict(), tmp_path / ALEXNET_FILE)
    ours = LPIPSMetric(weights_dir=tmp_path)
    assert ours.weights["trunk"].file == str(tmp_path / ALEXNET_FILE) and len(ours.weights["trunk"].sha256) == 12
    theirs = reference_lpips()
    for number, start, stop in ((1, 0, 2), (2, 2, 5), (3, 5, 8), (4, 8, 10), (5, 10, 12)):
        for index in range(start, stop):
            layer = getattr(getattr(theirs.net, f"slice{number}"), str(index))
            layer.load_state_dict(alexnet.features[index].state_dict())
    gen, tgt = images(2), images(3)
    with torch.no_grad():
        assert torch.equal(ours(gen, tgt), theirs(gen.float() / 127.5 - 1, tgt.float() / 127.5 - 1).flatten())


def test_missing_weights_name_the_file_and_the_hub_cache(tmp_path):
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    with pytest.raises(InputError, match=rf"(?s){hub / ALEXNET_FILE} not found; URL https://download\.pytorch\.org"
                                         r".*--weights_dir"):
        LPIPSMetric()
    with pytest.raises(InputError, match=rf"{LEGACY_FILES[0]}: .*also accepted: {LEGACY_FILES[1]}"):
        legacy_inception()
    with pytest.raises(InputError, match=rf"{hub / TF_FILE} not found"):
        tf_inception()
    with pytest.raises(InputError, match=rf"{tmp_path / 'elsewhere' / TF_FILE} not found"):  # --weights_dir
        tf_inception(weights_dir=tmp_path / "elsewhere")


def test_wrong_or_broken_weight_files_are_named(tmp_path):
    (tmp_path / TF_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=rf"{TF_FILE} is unreadable"):
        tf_inception(weights_dir=tmp_path)
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / LEGACY_FILES[1])
    with pytest.raises(InputError, match=r"does not hold the torchvision Inception-v3"):
        legacy_inception(weights_dir=tmp_path)


def test_legacy_inception_equals_torchvision_with_transform_input_on_unit_range(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                                transform_input=True).eval()
    torch.save(reference.state_dict(), tmp_path / LEGACY_FILES[1])  # the older torchvision file is accepted
    ours = legacy_inception(weights_dir=tmp_path)
    assert ours.weights.file == str(tmp_path / LEGACY_FILES[1])
    pooled = {}
    reference.avgpool.register_forward_hook(lambda module, inputs, output: pooled.update(out=output))
    batch = images(4, count=1)
    with torch.no_grad():
        # what GFLA/DPTN do: [0,1] input, bilinear 299, then torchvision's transform_input formula
        unit = torch.nn.functional.interpolate(batch.float() / 255, size=(299, 299), mode="bilinear",
                                               align_corners=False)
        reference(unit)
        assert torch.allclose(ours(batch), pooled["out"].flatten(1), rtol=1e-5, atol=1e-6)


def test_tf_inception_equals_pytorch_fid(tmp_path, monkeypatch):
    from pytorch_fid import inception as fid

    ours = tf_inception("clean-fid", random_weights=True)
    # pytorch-fid would download its file: hand it our (random) weights instead, then compare forwards
    trunk_state = {f"{name}.{key}": value for name, layer in zip(LAYERS, ours.layers)
                   for key, value in layer.state_dict().items()}
    trunk_state["fc.weight"], trunk_state["fc.bias"] = ours.fc.weight, ours.fc.bias
    torch.save(trunk_state, tmp_path / TF_FILE)
    monkeypatch.setattr(fid, "load_state_dict_from_url", lambda *a, **k: torch.load(tmp_path / TF_FILE))
    reference = fid.InceptionV3([3]).eval()
    loaded = tf_inception("clean-fid", weights_dir=tmp_path)  # our own loading path, from the same file
    batch = images(5, count=1)
    with torch.no_grad():
        want = reference(batch.float() / 255)[0].flatten(1)
        pool = loaded(batch)
        assert torch.allclose(pool, want, rtol=1e-5, atol=1e-7)
        logits = loaded.class_logits(pool)
        assert logits.shape == (1, 1008)
        assert torch.allclose(logits, want @ trunk_state["fc.weight"].t(), rtol=1e-5, atol=1e-7)  # no bias


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pixel_metrics_on_gpu_equal_cpu():
    from metrics.ssim import reconstruction_uint8

    gen, tgt = images(6, 4, (128, 64)), images(7, 4, (128, 64))
    cpu = reconstruction_uint8(gen, tgt)
    gpu = reconstruction_uint8(gen.cuda(), tgt.cuda())
    assert all(torch.allclose(cpu[m], gpu[m].cpu(), rtol=0, atol=1e-10) for m in cpu)
