"""The fast-reid bagtricks re-id network and its loaders (metrics/reid_net.py): architecture, strict loading of
every fast-reid checkpoint layout, no side effects on the input, the flip average, ImageNet backbone rules.

Figures are fast-reid's own (configs/Market1501/bagtricks_R50-ibn.yml built by its build_model, PRETRAIN False,
751 classes); tests/data/reid_bagtricks_R50-ibn_state_dict.txt is its `checkpoint['model']` listing.
"""
from __future__ import annotations

import ast
import collections
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics.reid_net import (BagtricksReID, export_fastreid, extract_features, load_fastreid_checkpoint,
                              load_imagenet_backbone, sha256_of)
from util.io import InputError

LISTING = Path(__file__).parent / "data" / "reid_bagtricks_R50-ibn_state_dict.txt"
FR_EXTRAS = ("optimizer", "lr_sched", "warmup_sched", "epoch", "metric")


def read_listing() -> list[tuple[str, tuple]]:
    rows = []
    for line in LISTING.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            rows.append((key, ast.literal_eval(shape)))
    return rows


def random_state(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values in every tensor (running variances > 0, counters > 0): nothing can load by accident."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(1, 1000, (), generator=gen, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        elif value.dim() == 4:  # conv weights at a scale that keeps activations finite through 50 layers
            fan_in = value.shape[1] * value.shape[2] * value.shape[3]
            state[key] = torch.randn(value.shape, generator=gen) * (1.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(value.shape, generator=gen) * 0.1 + (1.0 if key.endswith("weight") else 0.0)
    return state


@pytest.fixture(scope="module")
def ibn_model() -> BagtricksReID:
    return BagtricksReID().eval()


@pytest.fixture(scope="module")
def ibn_state(ibn_model) -> dict[str, torch.Tensor]:
    return random_state(ibn_model)


@pytest.fixture(scope="module")
def loaded_model(ibn_model, ibn_state) -> BagtricksReID:
    """An eval model with random, well-scaled weights and running statistics."""
    model = BagtricksReID().eval()
    model.load_state_dict(ibn_state, strict=True)
    return model


def images(n: int, h: int = 64, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255


def fastreid_file(path: Path, state: dict, extras: bool = True) -> Path:
    """A file in fast-reid's model_final.pth layout, numpy 'metric' and MultiStepLR's Counter included."""
    obj = state
    if extras:
        obj = {"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 3.5e-6, "params": [0]}]},
               "lr_sched": {"milestones": collections.Counter({40: 1, 90: 1}), "gamma": 0.1, "last_epoch": 111},
               "warmup_sched": {"last_epoch": 2000}, "epoch": 119, "metric": np.float64(0.9125)}
    torch.save(obj, path)
    return path


# 1. Architecture

def test_parameter_counts(ibn_model):
    params = list(ibn_model.parameters())
    assert sum(p.numel() for p in params) == 25_050_176
    assert sum(p.numel() for p in params if p.requires_grad) == 25_048_128
    assert sum(p.numel() for p in ibn_model.backbone.parameters()) == 23_508_032
    assert sum(p.numel() for p in BagtricksReID(num_classes=0).parameters()) == 23_512_128
    assert not ibn_model.heads.bottleneck[0].bias.requires_grad


def test_state_dict_equals_fastreid_listing(ibn_model):
    state = ibn_model.state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == read_listing()
    assert len(state) == 350 and sum(v.numel() for v in state.values()) == 25_105_206
    assert not any("pixel" in k for k in state)
    assert state["backbone.layer1.0.bn1.BN.num_batches_tracked"].dtype == torch.long


def test_plain_r50_state_dict():
    model = BagtricksReID(with_ibn=False)
    state = model.state_dict()
    assert len(state) == 324 and not any(".IN." in k or ".BN." in k for k in state)
    assert sum(p.numel() for p in model.parameters()) == 25_050_176
    assert sum(v.numel() for v in state.values()) == 25_107_446
    assert tuple(state["backbone.layer3.5.bn1.running_var"].shape) == (256,)
    assert len(BagtricksReID(num_classes=0, with_ibn=False).state_dict()) == 323


def test_features_and_layer4_map_at_256x128(loaded_model):
    seen = []
    hook = loaded_model.backbone.layer4.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    try:
        with torch.no_grad():
            features = loaded_model(images(1, 256, 128))
    finally:
        hook.remove()
    assert seen == [torch.Size([1, 2048, 16, 8])]
    assert features.shape == (1, 2048) and torch.isfinite(features).all()
    assert features.norm() != pytest.approx(1.0)  # not L2-normalised


def test_stem_pools_differ_only_in_padding():
    ceil, pad1 = BagtricksReID(0, stem_pool="ceil").backbone.maxpool, BagtricksReID(0, stem_pool="pad1").backbone.maxpool
    assert (ceil.padding, ceil.ceil_mode, pad1.padding, pad1.ceil_mode) == (0, True, 1, False)
    x = torch.randn(1, 1, 128, 64)
    assert ceil(x).shape == pad1(x).shape == (1, 1, 64, 32)
    with pytest.raises(InputError, match="stem_pool 'same'"):
        BagtricksReID(stem_pool="same")


def test_initialisation(ibn_model):
    conv = ibn_model.backbone.layer4[0].conv2.weight  # 3x3, 512 out: std sqrt(2 / (9 * 512))
    assert conv.std().item() == pytest.approx((2 / (9 * 512)) ** 0.5, rel=0.02)
    assert ibn_model.heads.weight.std().item() == pytest.approx(0.01, rel=0.02)
    neck = ibn_model.heads.bottleneck[0]
    assert torch.equal(neck.weight, torch.ones(2048)) and torch.equal(neck.bias, torch.zeros(2048))
    ibn = ibn_model.backbone.layer2[1].bn1
    assert torch.equal(ibn.IN.weight, torch.ones(64)) and torch.equal(ibn.BN.bias, torch.zeros(64))


def test_ibn_layer_normalises_first_half_per_instance(loaded_model):
    ibn = loaded_model.backbone.layer1[0].bn1
    x = torch.randn(2, 64, 8, 4)
    out = ibn(x)
    expected_in = F.instance_norm(x[:, :32], weight=ibn.IN.weight, bias=ibn.IN.bias, eps=1e-5)
    expected_bn = F.batch_norm(x[:, 32:], ibn.BN.running_mean, ibn.BN.running_var, ibn.BN.weight, ibn.BN.bias,
                               training=False, eps=1e-5)
    torch.testing.assert_close(out, torch.cat((expected_in, expected_bn), 1), rtol=1e-5, atol=1e-5)


def test_train_mode_outputs(ibn_state):
    model = BagtricksReID()
    model.load_state_dict(ibn_state)
    model.train()
    x = images(4)
    out = model(x)
    assert set(out) == {"cls_outputs", "pred_class_logits", "features"}
    with torch.no_grad():
        pooled = model.backbone_features(x).mean((2, 3))
    torch.testing.assert_close(out["features"], pooled, rtol=1e-5, atol=1e-5)  # before the BNNeck
    neck = model.heads.bottleneck[0]
    bn = (pooled - pooled.mean(0)) / (pooled.var(0, unbiased=False) + 1e-5).sqrt() * neck.weight + neck.bias
    torch.testing.assert_close(out["cls_outputs"], bn @ model.heads.weight.T, rtol=1e-4, atol=1e-4)
    assert out["cls_outputs"].shape == (4, 751) and torch.equal(out["cls_outputs"], out["pred_class_logits"])
    no_classifier = BagtricksReID(num_classes=0).train()
    assert set(no_classifier(x)) == {"features"}


def test_input_normalised_once_and_feature_is_the_bnneck_output(loaded_model):
    x = images(2)
    seen = []
    hook = loaded_model.backbone.conv1.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    try:
        with torch.no_grad():
            features = loaded_model(x)
            pooled = loaded_model.backbone(seen[0]).mean((2, 3))
    finally:
        hook.remove()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255  # RGB order, 0..255 scale
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    torch.testing.assert_close(seen[0], (x - mean) / std, rtol=1e-6, atol=1e-6)
    neck = loaded_model.heads.bottleneck[0]
    expected = (pooled - neck.running_mean) / (neck.running_var + 1e-5).sqrt() * neck.weight + neck.bias
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)  # running statistics, no L2 norm


# 3. No side effects; batch size; flip

def test_input_unchanged_and_batch_size_independent(loaded_model):
    x = images(4)
    before = x.clone()
    with torch.no_grad():
        batched = loaded_model(x)
        single = torch.cat([loaded_model(x[i:i + 1]) for i in range(4)])
    assert torch.equal(x, before)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_flip_is_the_correct_average(loaded_model):
    x = images(2, seed=1)
    before = x.clone()
    flipped = extract_features(loaded_model, x, flip=True)
    assert torch.equal(x, before)
    with torch.no_grad():
        expected = (loaded_model(x) + loaded_model(x.flip(-1))) / 2
    torch.testing.assert_close(flipped, expected, rtol=0, atol=0)
    assert not torch.allclose(flipped, extract_features(loaded_model, x))
    with pytest.raises(ValueError, match="eval mode"):
        extract_features(BagtricksReID(0).train(), x)


# 2. Strict loading of every fast-reid layout

def rename(state: dict, old: str, new: str) -> dict:
    return {(new + k[len(old):] if k.startswith(old) else k): v for k, v in state.items()}


LAYOUTS = {  # name -> (state transform, fast-reid extras?, printed mapping, stem pool chosen by auto)
    "fastreid_dict": (lambda s: s, True, None, "ceil"),
    "bare_state_dict": (lambda s: s, False, None, "ceil"),
    "module_prefix": (lambda s: {"module." + k: v for k, v in s.items()}, True,
                      "stripped the 'module.' prefix from all 350 keys", "ceil"),
    "v1.0_classifier": (lambda s: rename(s, "heads.weight", "heads.classifier.weight"), True,
                        "heads.classifier.weight -> heads.weight", "ceil"),
    "v0.1_bnneck": (lambda s: rename(rename(s, "heads.weight", "heads.classifier.weight"),
                                     "heads.bottleneck.0.", "heads.bnneck."), False,
                    "heads.bnneck.running_var -> heads.bottleneck.0.running_var", "pad1"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_fastreid_layout_loads_strictly(layout, ibn_state, tmp_path, capsys):
    transform, extras, mapping, pool = LAYOUTS[layout]
    path = fastreid_file(tmp_path / "model_final.pth", transform(ibn_state), extras)
    model, info = load_fastreid_checkpoint(path)
    printed = capsys.readouterr().out
    assert not model.training and "WARNING" not in printed  # the fast-reid extras load with weights_only
    assert (info["with_ibn"], info["num_classes"], info["stem_pool"]) == (True, 751, pool)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["layout"].startswith("checkpoint dict {'model', 'epoch'" if extras else "bare state dict")
    assert f"stem_pool auto -> {pool}" in printed
    assert info["generation"].startswith({"v1.0_classifier": "fast-reid 2020-09-10", "v0.1_bnneck": "fast-reid up to"}
                                         .get(layout, "fast-reid from 2021-03-23"))
    if mapping:
        assert mapping in info["mappings"] and mapping in printed
    else:
        assert info["mappings"] == []
    loaded = model.state_dict()
    assert list(loaded) == list(ibn_state) and all(torch.equal(loaded[k], ibn_state[k]) for k in ibn_state)
    assert model.backbone.maxpool.padding == (1 if pool == "pad1" else 0)


def test_explicit_stem_pool_wins(ibn_state, tmp_path, capsys):
    state = rename(ibn_state, "heads.bottleneck.0.", "heads.bnneck.")
    model, info = load_fastreid_checkpoint(fastreid_file(tmp_path / "m.pth", state), stem_pool="ceil")
    assert info["stem_pool"] == "ceil" and model.backbone.maxpool.ceil_mode
    assert "stem_pool auto" not in capsys.readouterr().out
    with pytest.raises(InputError, match="stem_pool 'p0'"):
        load_fastreid_checkpoint(tmp_path / "m.pth", stem_pool="p0")


def test_plain_r50_checkpoint_detected(tmp_path):
    state = random_state(BagtricksReID(702, with_ibn=False), seed=3)
    model, info = load_fastreid_checkpoint(fastreid_file(tmp_path / "duke.pth", state))
    assert (info["with_ibn"], info["num_classes"], model.heads.weight.shape) == (False, 702, (702, 2048))


def broken(state: dict, drop: str | None = None, add: dict | None = None) -> dict:
    out = {k: v for k, v in state.items() if k != drop}
    out.update(add or {})
    return out


@pytest.mark.parametrize("case, make, kwargs, names", [
    ("missing key", lambda s: broken(s, drop="backbone.layer2.1.bn2.running_var"), {},
     ["missing keys: backbone.layer2.1.bn2.running_var"]),
    ("extra key", lambda s: broken(s, add={"heads.extra.weight": torch.zeros(3)}), {},
     ["unexpected keys: heads.extra.weight"]),
    ("IBN file into a plain model", lambda s: s, {"with_ibn": False},
     ["missing keys: backbone.layer1.0.bn1.weight", "unexpected keys: backbone.layer1.0.bn1.IN.weight"]),
    ("heads.weight 2047 wide", lambda s: broken(s, add={"heads.weight": torch.zeros(751, 2047)}), {},
     ["heads.weight (751, 2047) in the file, (751, 2048) in the model"]),
    ("classifier required", lambda s: broken(s, drop="heads.weight"), {"require_classifier": True},
     ["missing key heads.weight"]),
    ("old and new classifier names", lambda s: broken(s, add={"heads.classifier.weight": s["heads.weight"]}), {},
     ["both the old and the new name of: heads.classifier.weight and heads.weight"]),
])
def test_strict_loading_refuses(case, make, kwargs, names, ibn_state, tmp_path):
    path = fastreid_file(tmp_path / "bad.pth", make(ibn_state))
    with pytest.raises(InputError) as info:
        load_fastreid_checkpoint(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    for name in names:
        assert name in message


def test_plain_file_into_ibn_model_and_all_problems_in_one_error(tmp_path):
    state = random_state(BagtricksReID(751, with_ibn=False), seed=4)
    state["backbone.conv1.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(InputError) as info:
        load_fastreid_checkpoint(fastreid_file(tmp_path / "plain.pth", state), with_ibn=True)
    message = str(info.value)
    for part in ("missing keys: backbone.layer1.0.bn1.IN.weight", "unexpected keys: backbone.layer1.0.bn1.weight",
                 "backbone.conv1.weight (64, 3, 5, 5) in the file, (64, 3, 7, 7) in the model", "(91 in all)", "(65 in all)"):
        assert part in message


def test_without_classifier_builds_zero_classes(ibn_state, tmp_path, capsys):
    state = broken(ibn_state, drop="heads.weight")
    model, info = load_fastreid_checkpoint(fastreid_file(tmp_path / "eval_only.pth", state))
    assert info["num_classes"] == 0 and model.heads.weight is None and len(model.state_dict()) == 349
    assert "no classifier (heads.weight); built with num_classes 0" in capsys.readouterr().out


def test_unusable_files(tmp_path):
    with pytest.raises(InputError, match="nowhere.pth not found"):
        load_fastreid_checkpoint(tmp_path / "nowhere.pth")
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pth")
    with pytest.raises(InputError, match="odd.pth: expected a fast-reid checkpoint"):
        load_fastreid_checkpoint(tmp_path / "odd.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pth is unreadable"):
        load_fastreid_checkpoint(tmp_path / "junk.pth")


def test_export_round_trip(loaded_model, ibn_state, tmp_path, capsys):
    for wrap in (False, True):
        path = tmp_path / f"latest_net_reid_{wrap}.pth"
        export_fastreid(loaded_model, path, wrap=wrap)
        raw = torch.load(path, weights_only=True)
        assert list(raw) == (["model"] if wrap else list(ibn_state))
        assert all(torch.equal((raw["model"] if wrap else raw)[k], ibn_state[k]) for k in ibn_state)
    model, info = load_fastreid_checkpoint(path)  # the wrapped file, as fast-reid's Checkpointer reads it
    assert info["layout"] == "checkpoint dict {'model'}"
    assert all(torch.equal(model.state_dict()[k], ibn_state[k]) for k in ibn_state)
    assert not list(tmp_path.glob(".*.tmp"))


def test_sha256_of(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 5000)
    assert sha256_of(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# ImageNet backbone (IBN-Net release file or torchvision R50: fc.* ignored, counters optional)

def imagenet_file(path: Path, model: BagtricksReID, drop_counters: bool = True, **changes) -> Path:
    state = {k: v for k, v in random_state(model.backbone, seed=5).items()
             if not (drop_counters and k.endswith("num_batches_tracked"))}
    state.update({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            del state[key]
        else:
            state[key] = value
    torch.save(state, path)
    return path


def test_imagenet_backbone_loads_and_ignores_fc(tmp_path):
    model = BagtricksReID()
    path = imagenet_file(tmp_path / "resnet50_ibn_a-d9d0bb7b.pth", model)
    heads_before = model.heads.weight.clone()
    assert load_imagenet_backbone(model, path) == ["fc.weight", "fc.bias"]
    expected = torch.load(path, weights_only=True)
    assert torch.equal(model.backbone.layer3[2].bn1.IN.weight, expected["layer3.2.bn1.IN.weight"])
    assert torch.equal(model.backbone.conv1.weight, expected["conv1.weight"])
    assert torch.equal(model.heads.weight, heads_before)


@pytest.mark.parametrize("changes, name", [
    ({"layer9__0__conv1__weight": torch.zeros(1)}, "unexpected keys: layer9.0.conv1.weight"),
    ({"layer2__0__conv3__weight": None}, "missing keys: layer2.0.conv3.weight"),
    ({"bn1__weight": torch.zeros(32)}, "bn1.weight (32,) in the file, (64,) in the model"),
])
def test_imagenet_backbone_refuses(changes, name, tmp_path):
    path = imagenet_file(tmp_path / "r50.pth", BagtricksReID(0), **changes)
    with pytest.raises(InputError, match="r50.pth") as info:
        load_imagenet_backbone(BagtricksReID(0), path)
    assert name in str(info.value)


def test_imagenet_ibn_file_into_plain_model_refused(tmp_path):
    path = imagenet_file(tmp_path / "resnet50_ibn_a-d9d0bb7b.pth", BagtricksReID(0))
    with pytest.raises(InputError, match="unexpected keys: layer1.0.bn1.IN.weight"):
        load_imagenet_backbone(BagtricksReID(0, with_ibn=False), path)


def test_imagenet_missing_file_names_the_source(tmp_path):
    with pytest.raises(InputError) as info:
        load_imagenet_backbone(BagtricksReID(0), tmp_path / "nope.pth")
    assert str(tmp_path / "nope.pth") in str(info.value)
    assert ("https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"
            in str(info.value))
    with pytest.raises(InputError, match="https://download.pytorch.org/models/resnet50-19c8e357.pth"):
        load_imagenet_backbone(BagtricksReID(0, with_ibn=False), tmp_path / "nope.pth")


def test_full_unpickle_fallback_is_announced(ibn_state, tmp_path, capsys):
    import argparse  # a Namespace (an old trainer's saved options) is not loadable with weights_only=True

    path = tmp_path / "with_options.pth"
    torch.save({"model": ibn_state, "args": argparse.Namespace(lr=3.5e-4)}, path)
    model, info = load_fastreid_checkpoint(path)
    printed = capsys.readouterr().out
    assert "does not load with weights_only=True" in printed and "source you trust" in printed
    assert info["layout"] == "checkpoint dict {'model', 'args'}" and torch.equal(
        model.state_dict()["heads.weight"], ibn_state["heads.weight"])
