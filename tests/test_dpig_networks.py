"""DPIG (Ma et al., "Disentangled Person Image Generation", CVPR 2018) networks: parameter counts and layout at
the paper's width (built on the meta device: no memory, no arithmetic), forward shapes, and values at a reduced
width (which is not the paper's network): ROI crops against an independent bilinear sampler, the visibility
zeroing, the straight-through round, FCRes, the discriminator heads and the initialisations.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.networks.blocks import FCRes, FCResBlock, ResBlock
from models.networks.dpig_critic import DPIGCritic
from models.networks.dpig_discriminator import DPIGDiscriminator
from models.networks.dpig_encoder import DPIGEncoder, DPIGStack, crop_and_resize, tile_embedding
from models.networks.dpig_mapping import FACTORS, NOISE_STD, DPIGMapping
from models.networks.dpig_pose_autoencoder import DPIGPoseDecoder, DPIGPoseEncoder, round_ste
from models.networks.pg2_generator_stage1 import PG2GeneratorStage1
from util.io import InputError


def count(net: torch.nn.Module, prefix: str = "") -> int:
    return sum(p.numel() for name, p in net.named_parameters() if name.startswith(prefix))


# geometry -> (frame, fashion?, D with TF's reshape head?)
GEOMETRIES = {"market": ((128, 64), False, False), "pad256": ((256, 256), True, True),
              "native": ((256, 176), True, False)}


def build(geometry: str, ngf: int = 128) -> dict[str, torch.nn.Module]:
    """Every DPIG network of a geometry, at width ngf (the paper's 128 by default)."""
    (h, w), fashion, tf_reshape = GEOMETRIES[geometry]
    enc = DPIGEncoder.fashion(h, w, ngf) if fashion else DPIGEncoder.market(h, w, ngf)
    factors = ["app", "pose"] if fashion else ["fg", "bg", "pose"]
    nets = {"enc": enc, "G": PG2GeneratorStage1(h, w, 5, ngf, 64, image_channels=enc.embedding_dim),
            "D": DPIGDiscriminator(h, w, tf_reshape=tf_reshape), "pose_enc": DPIGPoseEncoder(),
            "pose_dec": DPIGPoseDecoder()}
    nets.update({f"map_{k}": DPIGMapping.for_factor(k) for k in factors})
    nets.update({f"critic_{k}": DPIGCritic(FACTORS[k][0]) for k in factors})
    return nets


def build_meta(geometry: str) -> dict[str, torch.nn.Module]:
    with torch.device("meta"):
        return build(geometry)


# --- parameter counts (4.2-4.8, 8) -----------------------------------------------------------------------------

COUNTS = {
    "market": dict(enc=47_352_736, G=71_197_123, D=4_324_737, pose_enc=2_145_824, pose_dec=2_145_846,
                   map_fg=2_331_360, map_bg=592_256, map_pose=2_134_560,
                   critic_fg=903_681, critic_bg=854_529, critic_pose=805_377),
    "pad256": dict(enc=58_140_832, G=82_088_387, D=4_324_737, pose_enc=2_145_824, pose_dec=2_145_846,
                   map_app=2_331_360, map_pose=2_134_560, critic_app=903_681, critic_pose=805_377),
    "native": dict(enc=58_140_832, G=78_145_987, D=4_398_465, pose_enc=2_145_824, pose_dec=2_145_846,
                   map_app=2_331_360, map_pose=2_134_560, critic_app=903_681, critic_pose=805_377),
}
# (stage I-a trained = encoder + G + D, everything trained, needed at test = encoder + G + pose AE + mappings)
TOTALS = {"market": (122_874_596, 134_788_029, 127_899_705), "pad256": (144_553_956, 155_020_604, 148_986_809),
          "native": (140_685_284, 151_151_932, 145_044_409)}


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_parameter_counts_and_totals(geometry):
    counts = {name: count(net) for name, net in build_meta(geometry).items()}
    assert counts == COUNTS[geometry]
    stage1a = counts["enc"] + counts["G"] + counts["D"]
    at_test = sum(n for name, n in counts.items() if name in ("enc", "G", "pose_enc", "pose_dec")
                  or name.startswith("map_"))
    assert (stage1a, sum(counts.values()), at_test) == TOTALS[geometry]


def test_market_encoder_per_stage_counts():
    enc = build_meta("market")["enc"]
    assert count(enc, "conv0") + count(enc, "res0") == 298_752
    assert count(enc, "roi_stack") == count(enc, "bg_stack") == 22_124_032
    assert count(enc, "roi_fc") == 184_352 and enc.roi_fc.in_features == 5_760  # 640@3x3
    assert count(enc, "bg_fc") == 2_621_568 and enc.bg_fc.in_features == 20_480  # 640@8x4
    res = [count(enc, f"roi_stack.res.{i}.") for i in range(5)]
    down = [count(enc, f"roi_stack.down.{i}.") for i in range(4)]
    assert res == [295_168, 1_180_160, 2_654_976, 4_719_616, 7_374_080]
    assert down == [295_168, 885_120, 1_769_984, 2_949_760]
    assert (enc.fg_dim, enc.bg_dim, enc.embedding_dim) == (224, 128, 352)


@pytest.mark.parametrize("geometry", ["pad256", "native"])
def test_fashion_encoder_per_stage_counts(geometry):
    enc = build_meta(geometry)["enc"]
    assert count(enc, "conv0") + count(enc, "res0") == 298_752
    assert count(enc, "roi_stack") == 57_813_376
    assert count(enc, "roi_fc") == 28_704 and enc.roi_fc.in_features == 896  # 896@1x1
    # beyond Market's 5 blocks: down 640->768, Res(768), down 768->896, Res(896)
    extra = [count(enc, "roi_stack.down.4."), count(enc, "roi_stack.res.5."), count(enc, "roi_stack.down.5."),
             count(enc, "roi_stack.res.6.")]
    assert extra == [4_424_448, 10_618_368, 6_194_048, 14_452_480]
    assert not hasattr(enc, "bg_stack") and enc.embedding_dim == 224


@pytest.mark.parametrize("geometry,start,bottleneck,down_fc,up_fc", [
    ("market", 426_368, (640, 8, 4), None, None),
    ("pad256", 278_912, (640, 16, 16), 10_485_824, 2_129_920),
    ("native", 278_912, (640, 16, 11), 7_209_024, 1_464_320)])
def test_generator_stages(geometry, start, bottleneck, down_fc, up_fc):
    g = build_meta(geometry)["G"]
    assert count(g, "start_conv") == start
    assert g.down_fc.in_features == math.prod(bottleneck) and g.bottleneck_shape == (128, *bottleneck[1:])
    if down_fc is not None:
        assert (count(g, "down_fc"), count(g, "up_fc")) == (down_fc, up_fc)


def test_state_dict_layout():
    nets = build_meta("market")
    assert [len(nets[k].state_dict()) for k in ("enc", "G", "D")] == [66, 64, 25]
    enc_top = {key.split(".")[0] for key in nets["enc"].state_dict()}
    assert enc_top == {"conv0", "res0", "roi_stack", "roi_fc", "bg_stack", "bg_fc"}
    assert "roi_stack.res.4.main.2.weight" in nets["enc"].state_dict()
    assert "roi_stack.down.3.0.weight" in nets["enc"].state_dict()
    assert list(nets["pose_enc"].state_dict())[:4] == ["inp.weight", "inp.bias", "blocks.0.0.weight",
                                                       "blocks.0.0.bias"]
    assert {key.split(".")[0] for key in nets["pose_dec"].state_dict()} == {"inp", "blocks", "coord", "vis"}
    assert "blocks.3.1.weight" in nets["pose_dec"].state_dict() and "out.weight" in nets["map_bg"].state_dict()
    assert {key.split(".")[0] for key in nets["critic_fg"].state_dict()} == {"inp", "hidden", "out"}
    assert len(nets["critic_fg"].hidden) == 3
    fashion = build_meta("pad256")["enc"].state_dict()
    assert len(fashion) == 2 + 4 + 7 * 4 + 6 * 2 + 2 and not any(k.startswith("bg_") for k in fashion)


# --- forward shapes at full width (4.10), on meta --------------------------------------------------------------

@pytest.mark.parametrize("geometry,emb,d_out", [("market", 352, 1), ("pad256", 224, 8), ("native", 224, 1)])
def test_forward_shapes_full_width(geometry, emb, d_out):
    (h, w), fashion, _ = GEOMETRIES[geometry]
    nets = build_meta(geometry)
    with torch.device("meta"):
        image, pose = torch.empty(2, 3, h, w), torch.empty(2, 18, h, w)
        boxes, vis = torch.empty(2, 7, 4), torch.empty(2, 7)
        e = nets["enc"](image, boxes, vis, None if fashion else torch.empty(2, 1, h, w))
        assert e.shape == (2, emb)
        fake = nets["G"](tile_embedding(e, h, w), pose)
        assert fake.shape == (2, 3, h, w)
        logits = nets["D"](image)
        assert logits.shape == (2, d_out) and logits.flatten().shape == (2 * d_out,)  # TF: (2,) and (16,)
        z = nets["pose_enc"](torch.empty(2, 54))
        assert z.shape == (2, 32) and nets["pose_dec"](z).shape == (2, 54)
        for name, net in nets.items():
            if name.startswith("map_"):
                fake_e = net.sample(3)
                assert fake_e.shape == (3, net.dim)
                assert nets["critic_" + name[4:]](fake_e).shape == (3,)


# --- ROI crop (4.4) against an independent bilinear sampler ----------------------------------------------------

def tf_crop_and_resize(image: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """TF's crop_and_resize kernel for one (C, H, W) image and one normalised box, in float64 (bilinear,
    corner-aligned, 0 for rows/columns outside the image)."""
    c, h, w = image.shape
    y1, x1, y2, x2 = box
    out = np.zeros((c, size, size))
    for i in range(size):
        in_y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (size - 1)
        if in_y < 0 or in_y > h - 1:
            continue
        top, bottom = math.floor(in_y), math.ceil(in_y)
        y_lerp = in_y - top
        for j in range(size):
            in_x = x1 * (w - 1) + j * (x2 - x1) * (w - 1) / (size - 1)
            if in_x < 0 or in_x > w - 1:
                continue
            left, right = math.floor(in_x), math.ceil(in_x)
            x_lerp = in_x - left
            upper = image[:, top, left] + (image[:, top, right] - image[:, top, left]) * x_lerp
            lower = image[:, bottom, left] + (image[:, bottom, right] - image[:, bottom, left]) * x_lerp
            out[:, i, j] = upper + (lower - upper) * y_lerp
    return out


def test_crop_and_resize_matches_tf_sampling():
    torch.manual_seed(0)
    h, w, size = 128, 64, 6
    features = torch.randn(2, 3, h, w)
    # pixel boxes: a Market part box, one touching the last row and column, a missing part's [0,0,1,1], and
    # one partly outside the map (TF's extrapolation value 0 there)
    boxes = torch.tensor([[[4, 14, 31, 52], [54, 8, 127, 63], [0, 0, 1, 1]],
                          [[55, 23, 118, 40], [-30, -5, 20, 70], [100, 30, 127, 63]]], dtype=torch.int64)
    crops = crop_and_resize(features, boxes, size)
    assert crops.shape == (2, 3, 3, size, size) and crops.dtype == features.dtype
    for b in range(2):
        for k in range(3):
            y1, x1, y2, x2 = boxes[b, k].tolist()
            want = tf_crop_and_resize(features[b].double().numpy(), (y1 / h, x1 / w, y2 / h, x2 / w), size)
            # float32 sample positions (TF's too) are off by ~1e-5 pixels
            np.testing.assert_allclose(crops[b, k].numpy(), want, atol=1e-4, rtol=0)
    assert (crops[1, 1, :, 0] == 0).all()  # the first rows of the partly outside box are above the map


def test_crop_of_last_row_reaches_h_minus_2_plus_1_over_h():
    """Boxes are normalised by H, not H-1: a box ending on row H-1 samples up to (H-1)²/H, short of H-1."""
    h, w = 128, 64
    rows = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1).expand(1, 1, h, w)  # value = row index
    crop = crop_and_resize(rows, torch.tensor([[[54, 8, 127, 49]]]), 48)[0, 0, 0]  # bilinear is exact on it
    assert crop[-1, 0].item() == pytest.approx((h - 1) ** 2 / h, abs=1e-9)  # 126.0078125
    assert crop[0, 0].item() == pytest.approx(54 * (h - 1) / h, abs=1e-9)
    assert crop.max().item() < h - 1


# --- encoder values (reduced width) -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_market_encoder():
    torch.manual_seed(1)
    enc = DPIGEncoder(128, 64, split_background=True, roi_size=12, roi_blocks=3, bg_blocks=3, ngf=4)
    torch.nn.init.uniform_(enc.roi_fc.bias, 0.5, 1.0)  # a non-zero bias, to see the zeroing come after it
    return enc


def market_inputs(batch: int = 2):
    torch.manual_seed(2)
    image = torch.rand(batch, 3, 128, 64) * 2 - 1
    boxes = torch.tensor([[4, 14, 31, 52], [18, 8, 67, 63], [54, 8, 118, 49], [18, 40, 62, 63], [0, 0, 1, 1],
                          [54, 8, 107, 49], [0, 0, 1, 1]]).expand(batch, 7, 4)
    vis = torch.tensor([1, 1, 1, 1, 0, 1, 0]).expand(batch, 7)
    mask = (torch.rand(batch, 1, 128, 64) > 0.5).float()
    return image, boxes, vis, mask


def test_encoder_matches_its_parts_and_zeroes_invisible_parts(small_market_encoder):
    enc = small_market_encoder
    image, boxes, vis, mask = market_inputs()
    with torch.no_grad():
        e = enc(image, boxes, vis, mask)
        assert e.shape == (2, 7 * 32 + 128)
        fg, bg = enc.split(e)
        parts = fg.view(2, 7, 32)
        assert (parts[:, [4, 6]] == 0).all() and (parts[:, [0, 1, 2, 3, 5]] != 0).all()
        features = enc.features(image)
        assert torch.equal(features, enc.res0(F.relu(enc.conv0[0](image))))
        # part k of image b, computed alone: crop of F·M -> shared stack -> fc (no vis)
        crops = crop_and_resize(features * mask, boxes, 12)
        for b, k in [(0, 0), (1, 2), (1, 5)]:
            want = enc.roi_fc(enc.roi_stack(crops[b, k][None]).flatten(1))[0]
            torch.testing.assert_close(parts[b, k], want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bg, enc.bg_fc(enc.bg_stack(features * (1 - mask)).flatten(1)))
        # images do not mix: image 1 alone gives the same embedding
        torch.testing.assert_close(enc(image[1:], boxes[1:], vis[1:], mask[1:])[0], e[1], rtol=1e-5, atol=1e-6)
        # an empty mask leaves the parts only their bias path; a full mask gives the background code of zeros
        empty = enc(image, boxes, vis, torch.zeros_like(mask))
        zero_part = enc.roi_fc(enc.roi_stack(torch.zeros(1, 4, 12, 12)).flatten(1))[0]
        torch.testing.assert_close(empty[0, :32], zero_part)
        full = enc(image, boxes, vis, torch.ones_like(mask))
        torch.testing.assert_close(full[0, 224:], enc.bg_fc(enc.bg_stack(torch.zeros(1, 4, 128, 64)).flatten(1))[0])


def test_encoder_gradient_reaches_the_stem(small_market_encoder):
    enc = small_market_encoder
    image, boxes, vis, mask = market_inputs()
    enc.zero_grad()
    enc(image, boxes, vis, mask).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    enc.zero_grad()


def test_fashion_encoder_crops_unmasked_features():
    torch.manual_seed(3)
    enc = DPIGEncoder(64, 48, split_background=False, roi_size=8, roi_blocks=4, ngf=4)
    image = torch.rand(2, 3, 64, 48) * 2 - 1
    boxes = torch.tensor([[4, 10, 30, 40]] * 7).expand(2, 7, 4)
    vis = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        e = enc(image, boxes, vis)
        assert e.shape == (2, 224) and enc.split(e)[1] is None
        crop = crop_and_resize(enc.features(image), boxes, 8)[0, 0]
        torch.testing.assert_close(e[0, :32], enc.roi_fc(enc.roi_stack(crop[None]).flatten(1))[0])
        assert (e[1, 32:64] == 0).all()
    assert enc.roi_fc.in_features == 4 * 4 * 1 * 1  # 8 -> 4 -> 2 -> 1


def test_encoder_input_errors(small_market_encoder):
    image, boxes, vis, mask = market_inputs()
    with pytest.raises(ValueError, match="foreground mask"):
        small_market_encoder(image, boxes, vis)
    with pytest.raises(ValueError, match="foreground mask"):
        small_market_encoder(image, boxes, vis, mask[:, 0])
    with pytest.raises(ValueError, match="3@128x64"):
        small_market_encoder(image[:, :, :64], boxes, vis, mask)
    with pytest.raises(ValueError, match="boxes"):
        small_market_encoder(image, boxes[:, :6], vis, mask)
    fashion = DPIGEncoder(64, 48, split_background=False, roi_size=8, roi_blocks=2, ngf=2)
    with pytest.raises(ValueError, match="pass no mask"):
        fashion(torch.zeros(1, 3, 64, 48), boxes[:1], vis[:1], torch.zeros(1, 1, 64, 48))
    with pytest.raises(ValueError, match="size >= 2"):
        crop_and_resize(image, boxes, 1)


def test_stack_structure():
    stack = DPIGStack(4, 3)
    assert [r.main[0].in_channels for r in stack.res] == [4, 8, 12]
    assert [(d[0].in_channels, d[0].out_channels, d[0].stride) for d in stack.down] == [(4, 8, (2, 2)),
                                                                                        (8, 12, (2, 2))]
    x = torch.randn(1, 4, 12, 12)
    want = stack.res[2](stack.down[1](stack.res[1](stack.down[0](stack.res[0](x)))))
    torch.testing.assert_close(stack(x), want)
    assert isinstance(stack.res[0], ResBlock)


# --- generator reuse: embedding channels first ------------------------------------------------------------------

def test_generator_takes_the_embedding_first():
    torch.manual_seed(4)
    g = PG2GeneratorStage1(32, 16, depth=3, ngf=4, z_dim=8, image_channels=10, pose_channels=18)
    e, pose = torch.randn(2, 10), torch.randn(2, 18, 32, 16)
    tiled = tile_embedding(e, 32, 16)
    assert tiled.shape == (2, 10, 32, 16) and torch.equal(tiled[1, :, 5, 7], e[1])
    with torch.no_grad():
        g.start_conv[0].weight[:, :10] = 0  # the first 10 input channels are the embedding's
        out = g(tiled, pose)
        torch.testing.assert_close(g(tile_embedding(torch.randn(2, 10), 32, 16), pose), out)
        assert not torch.allclose(g(tiled, pose.flip(0)), out)


# --- pose auto-encoder, FCRes, mappings ----------------------------------------------------------------------------

def test_round_ste_forward_is_exact_and_gradient_identity():
    x = torch.tensor([0.0, 0.2, 0.4999, 0.5, 0.5001, 0.77, 1.0], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # half to even, as tf.round
    (y * torch.arange(7.0)).sum().backward()
    assert x.grad.tolist() == list(range(7))


def test_pose_decoder_heads():
    torch.manual_seed(5)
    dec = DPIGPoseDecoder()
    z = torch.randn(64, 32) * 3
    out = dec(z).view(64, 18, 3)
    trunk = dec.blocks(dec.inp(z))  # the decoder's first Linear has no activation
    torch.testing.assert_close(out[..., :2], dec.coord(trunk).view(64, 18, 2))
    vis = out[..., 2]
    assert set(vis.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(vis, torch.round(torch.sigmoid(dec.vis(trunk))))
    # straight-through: the gradient of the rounded vis is that of the sigmoid
    dec.zero_grad()
    out[..., 2].sum().backward()
    rounded = dec.vis.weight.grad.clone()
    dec.zero_grad()
    torch.sigmoid(dec.vis(dec.blocks(dec.inp(z)))).sum().backward()
    torch.testing.assert_close(rounded, dec.vis.weight.grad)
    assert dec.coord.weight.grad is None or not dec.coord.weight.grad.any()


def test_pose_autoencoder_round_trip_layout():
    torch.manual_seed(6)
    enc, dec = DPIGPoseEncoder(), DPIGPoseDecoder()
    k = torch.rand(4, 54) * 2 - 1
    assert enc(k).shape == (4, 32) and dec(enc(k)).shape == (4, 54)
    assert enc.first_act and not dec.first_act and dec.out is None


def test_fcres_structure():
    torch.manual_seed(7)
    net = FCRes(6, 5, 3, first_act=True, num_blocks=2)
    assert len(net.blocks) == 2 and all(isinstance(b, FCResBlock) and len(b) == 2 for b in net.blocks)
    x = torch.randn(4, 6)

    def lrelu(t):
        return torch.where(t > 0, t, 0.2 * t)

    h = lrelu(net.inp(x))
    for block in net.blocks:
        h = h + lrelu(block[1](lrelu(block[0](h))))
    torch.testing.assert_close(net(x), net.out(h))
    plain = FCRes(6, 5, 3, first_act=False, num_blocks=2)
    plain.load_state_dict(net.state_dict())
    h = plain.inp(x)
    for block in plain.blocks:
        h = h + lrelu(block[1](lrelu(block[0](h))))
    torch.testing.assert_close(plain(x), plain.out(h))
    assert FCRes(6, 5, None).out is None and FCRes(6, 5, None)(x).shape == (4, 5)


def test_mapping_noise_and_factors():
    mapping = DPIGMapping.for_factor("bg")
    assert (mapping.dim, mapping.inp.out_features) == (128, 256)
    z = mapping.sample_noise(4096, torch.Generator().manual_seed(0))
    assert z.shape == (4096, 128) and z.std().item() == pytest.approx(NOISE_STD, rel=0.01)
    assert abs(z.mean().item()) < 0.005
    z2 = mapping.sample_noise(4096, torch.Generator().manual_seed(0))
    assert torch.equal(z, z2)
    with pytest.raises(ValueError, match="available: fg, bg, app, pose"):
        DPIGMapping.for_factor("face")


def test_xavier_init_of_encoder_pose_ae_and_mapping():
    torch.manual_seed(11)
    small = DPIGEncoder(32, 16, roi_size=8, roi_blocks=2, bg_blocks=2, ngf=16)
    for layer in [DPIGPoseEncoder().inp, DPIGPoseDecoder().vis, DPIGMapping(224).out, small.bg_fc]:
        bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
        assert not layer.bias.any()
    conv = small.roi_stack.down[0][0]  # 16 -> 32
    bound = math.sqrt(6.0 / (16 * 9 + 32 * 9))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound and not conv.bias.any()


# --- critics --------------------------------------------------------------------------------------------------

def test_critic_init_bounds_and_clipping():
    torch.manual_seed(8)
    critic = DPIGCritic(224)
    bounds = [(critic.inp, math.sqrt(6 / 224))] + [(layer, math.sqrt(6 / 512)) for layer in critic.hidden]
    bounds.append((critic.out, math.sqrt(6 / 513)))
    for layer, bound in bounds:
        top = layer.weight.abs().max().item()
        assert bound * 0.95 < top <= bound
        assert not layer.bias.any()
    x = torch.randn(5, 224)
    h = x
    for layer in [critic.inp, *critic.hidden]:
        h = F.leaky_relu(layer(h), 0.2)
    torch.testing.assert_close(critic(x), critic.out(h)[:, 0])
    critic.clip_(0.01)
    assert all(p.abs().max() <= 0.01 for p in critic.parameters())
    assert critic.inp.weight.abs().max().item() == pytest.approx(0.01)


# --- image discriminator (4.6) -------------------------------------------------------------------------------

def test_discriminator_tf_reshape_head_gives_8_logits_per_image():
    torch.manual_seed(9)
    d = DPIGDiscriminator(256, 256, tf_reshape=True, ndf=8)  # rows of 8*4*8*8 = 2048 of 64@16x16
    assert d.logits_per_image == 8 and d.fc.in_features == 2048
    x = torch.randn(2, 3, 256, 256)
    logits = d(x)
    assert logits.shape == (2, 8)
    with torch.no_grad():
        flat = d.main(x).flatten(1)  # (C, H, W) order: row j = channels 8j..8j+7
        want = torch.stack([d.fc(flat[b, j * 2048:(j + 1) * 2048]) for b in range(2) for j in range(8)])
    torch.testing.assert_close(logits.flatten(), want.flatten())  # image-major, TF's reshape order
    native = DPIGDiscriminator(256, 176, ndf=8)
    assert native.logits_per_image == 1 and native(torch.randn(2, 3, 256, 176)).shape == (2, 1)
    assert native.fc.in_features == 64 * 16 * 11
    with pytest.raises(InputError, match="rows of 2048"):
        DPIGDiscriminator(256, 176, tf_reshape=True, ndf=8)


def test_discriminator_always_uses_batch_statistics_and_tf_init():
    torch.manual_seed(10)
    d = DPIGDiscriminator(32, 16, ndf=8)
    bns = [m for m in d.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 3 and all(torch.equal(bn.weight, torch.ones_like(bn.weight)) for bn in bns)
    assert all(m.bias is not None for m in d.main if isinstance(m, torch.nn.Conv2d))
    bound = 0.02 * math.sqrt(3)
    assert d.main[0].weight.abs().max() <= bound and not d.main[0].bias.any()
    x = torch.randn(4, 3, 32, 16)
    with torch.no_grad():
        train_out = d(x)
        d.eval()
        assert not d.training and all(bn.training for bn in bns)
        torch.testing.assert_close(d(x), train_out)
        a, b = d(x[:2], x[2:])  # separate passes, separate BN batches
        torch.testing.assert_close(a, d(x[:2]))
        assert not torch.allclose(torch.cat([a, b]), train_out)
