"""DPIG's sample and interpolate writers (models/dpig_tasks.py) against a tiny fake model with the DPIGModel API,
on the synthetic Market test pairs (9 sources, each the `from` of 2 pairs)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image, ImageSequence
from torch import nn

from data import find_dataset_class
from models.dpig_tasks import DPIGTasksMixin, interpolation_weights, lerp
from util.io import InputError

FG, BG, POSE = 4, 3, 36


class FakeDPIG(DPIGTasksMixin):
    """The DPIGModel API with tiny modules; records what reaches render and decode_pose."""

    def __init__(self, opt, size=(128, 64)) -> None:
        torch.manual_seed(0)
        self.opt, self.device, self.size = opt, torch.device("cpu"), size
        self.enc = nn.Linear(4, FG + BG)
        self.maps = {"fg": nn.Linear(FG, FG), "bg": nn.Linear(BG, BG), "pose": nn.Linear(POSE, POSE)}
        self.head = nn.Linear(FG + BG, 3)
        self.rendered: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.decoded: list[torch.Tensor] = []

    def appearance(self, image, keypoints, mask):
        assert mask is not None and mask.shape[1] == 1  # Market passes the source mask
        return self.enc(torch.cat([image.mean((2, 3)), mask.mean((2, 3))], 1)) * 3

    def split_appearance(self, e):
        return {"fg": e[:, :FG], "bg": e[:, FG:]}

    def join_appearance(self, parts):
        return torch.cat([parts["fg"], parts["bg"]], 1)

    def scale(self, keypoints):
        return keypoints.new_tensor(self.size).float()

    def encode_pose(self, keypoints):
        return (2 * keypoints.float() / self.scale(keypoints) - 1).flatten(1)

    def decode_pose(self, e_pose):
        self.decoded.append(e_pose.clone())
        kp = ((e_pose.view(-1, 18, 2) + 1) / 2 * self.scale(e_pose)).long()
        return torch.minimum(kp.clamp(min=0), (self.scale(e_pose) - 1).long())

    def sample_factor(self, name, count, generator=None):
        z = torch.randn(count, self.maps[name].in_features, generator=generator) * 0.2
        return self.maps[name](z)

    def render(self, e, pose_keypoints):
        self.rendered.append((e.clone(), pose_keypoints.clone()))
        colour = torch.tanh(self.head(e))[:, :, None, None]
        rows = torch.linspace(-1, 1, self.size[0])[None, None, :, None]
        height = pose_keypoints[:, :, 0].float().mean(1)[:, None, None, None] / self.size[0]
        return (colour + rows * height).clamp(-1, 1).expand(-1, 3, *self.size)


def make_opt(results_dir, task, **flags):
    base = dict(name="run", model="DPIG", which_epoch="latest", dpig_task=task, data_format="market",
                sample_fg=False, sample_bg=False, sample_app=False, sample_pose=False, num_samples=None,
                num_inner=None, interp_factor=None, tf_pose_sample_bug=False, seed=0, results_dir=str(results_dir),
                overwrite=False, how_many=float("inf"), image_format="jpg", num_panels=200, only_generated=False)
    base.update(flags)
    if task == "sample" and base["num_samples"] is None:
        base["num_samples"] = 1
    if task == "interpolate":
        base["num_inner"] = 6 if base["num_inner"] is None else base["num_inner"]
        base["interp_factor"] = base["interp_factor"] or "pose"
    return SimpleNamespace(**base)


@pytest.fixture
def market(tiny_market_root, dataset_opt):
    opt = dataset_opt("market", dataroot=str(tiny_market_root), mask_recipe="dpig", pose_encoding="tf_disc",
                            keypoints_outside="missing")
    return find_dataset_class("market")(opt)


def run(model, dataset, batch_size=4):
    """test.py's loop (truncation to the writer's count included), without model.test()."""
    writer = model.test_writer(dataset)
    total = int(min(model.opt.how_many, len(dataset)))
    for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False):
        keep = min(len(batch["source_name"]), total - writer.count)
        batch = {k: v[:keep] for k, v in batch.items()}
        writer.write(batch, model)
        if writer.count >= total:
            break
    return writer, writer.close()


def digest(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


def sources_in_order(dataset):
    seen = []
    for source, _ in dataset.pairs:
        if source not in seen:
            seen.append(source)
    return seen


def test_transfer_keeps_test_py_writer(tmp_path):
    assert FakeDPIG(make_opt(tmp_path, "transfer")).test_writer(None) is None


def test_sample_files_page_and_determinism(market, tmp_path):
    opt = make_opt(tmp_path / "a", "sample", sample_fg=True, sample_pose=True, num_samples=3, seed=5)
    writer, line = run(FakeDPIG(opt), market)
    sources = sources_in_order(market)
    assert len(sources) == 9 and len(market) == 18  # every source is the `from` of two pairs
    expected = {f"{Path(s).stem}_sample_{k}.jpg" for s in sources for k in range(3)}
    assert {p.name for p in (tmp_path / "a").glob("*_sample_*.jpg")} == expected
    assert writer.count == 18 and "9 sources x 3 samples" in line and "27 images" in line
    assert Image.open(tmp_path / "a" / sorted(expected)[0]).size == (64, 128)  # dataset resolution (W, H)
    page = (tmp_path / "a" / "web" / "index.html").read_text()
    assert page.count("_sample_") >= 27 and len(list((tmp_path / "a" / "web" / "panels").glob("*.jpg"))) == 27
    # same seed, other batch size: identical bytes; other seed: different samples
    run(FakeDPIG(make_opt(tmp_path / "b", "sample", sample_fg=True, sample_pose=True, num_samples=3, seed=5)),
        market, batch_size=3)
    assert digest(tmp_path / "a", "*_sample_*.jpg") == digest(tmp_path / "b", "*_sample_*.jpg")
    run(FakeDPIG(make_opt(tmp_path / "c", "sample", sample_fg=True, sample_pose=True, num_samples=3, seed=6)),
        market)
    assert digest(tmp_path / "a", "*_sample_*.jpg") != digest(tmp_path / "c", "*_sample_*.jpg")


def test_sample_how_many_counts_pairs(market, tmp_path):
    """test.py trims the batches to --how_many pairs; the sources are those of these pairs."""
    opt = make_opt(tmp_path, "sample", sample_bg=True, num_samples=2, how_many=5, only_generated=True)
    writer, line = run(FakeDPIG(opt), market, batch_size=4)
    stems = [Path(s).stem for s in sources_in_order(market)[:3]]  # pairs 0-1, 2-3, 4: three sources
    assert writer.count == 5 and len(writer.seen) == 3 and "3 sources x 2 samples" in line
    assert {p.name for p in tmp_path.glob("*.jpg")} == {f"{s}_sample_{k}.jpg" for s in stems for k in range(2)}
    assert not (tmp_path / "web").exists()


def test_unsampled_factors_and_pose_come_from_the_source(market, tmp_path):
    model = FakeDPIG(make_opt(tmp_path, "sample", sample_fg=True, num_samples=2))
    batch = next(iter(torch.utils.data.DataLoader(market, batch_size=4, shuffle=False)))
    writer = model.test_writer(market)
    writer.write(batch, model)
    rows = [0, 2]  # pairs 0, 1 share their source; 2 is the next source
    real = model.appearance(batch["source_image"][rows], batch["source_keypoints"][rows], batch["source_mask"][rows])
    assert len(model.rendered) == 2 and not model.decoded  # one render per k; no pose decoded
    for e, pose in model.rendered:
        assert torch.equal(e[:, FG:], real[:, FG:])  # bg: the source's
        assert not torch.allclose(e[:, :FG], real[:, :FG])  # fg: sampled
        assert torch.equal(pose, batch["source_keypoints"][rows])
    assert not torch.allclose(model.rendered[0][0][:, :FG], model.rendered[1][0][:, :FG])  # k differ


def test_sampled_pose_and_the_tf_bug(market, tmp_path):
    batch = next(iter(torch.utils.data.DataLoader(market, batch_size=2, shuffle=False)))  # one source
    model = FakeDPIG(make_opt(tmp_path / "a", "sample", sample_pose=True))
    model.test_writer(market).write(batch, model)
    gen = torch.Generator().manual_seed(0 + 3)  # the pose stream: --seed + 3
    assert torch.allclose(model.decoded[0], model.sample_factor("pose", 1, gen))
    assert not torch.equal(model.rendered[0][1], batch["source_keypoints"][:1])
    real_e = model.appearance(batch["source_image"][:1], batch["source_keypoints"][:1], batch["source_mask"][:1])
    assert torch.equal(model.rendered[0][0], real_e)  # appearance not sampled
    bug = FakeDPIG(make_opt(tmp_path / "b", "sample", sample_pose=True, tf_pose_sample_bug=True))
    bug.test_writer(market).write(batch, bug)
    assert torch.equal(bug.decoded[0], bug.encode_pose(batch["source_keypoints"][:1]))
    assert torch.equal(bug.rendered[0][1], bug.decode_pose(bug.encode_pose(batch["source_keypoints"][:1])))


def test_interpolation_weights_and_lerp():
    assert interpolation_weights(0) == [0.0, 1.0]
    assert interpolation_weights(3) == [0.0, 0.25, 0.5, 0.75, 1.0]
    a, b = torch.randn(2, 5), torch.randn(2, 5)
    assert torch.equal(lerp(a, b, 0.0), a) and torch.equal(lerp(a, b, 1.0), b)
    assert torch.allclose(lerp(a, b, 0.25), 0.75 * a + 0.25 * b)


def test_interpolate_pose_files_gif_and_endpoints(market, tmp_path):
    model = FakeDPIG(make_opt(tmp_path, "interpolate", num_inner=2))
    writer, line = run(model, market)
    pairs = [f"{Path(a).stem}_2_{Path(b).stem}" for a, b in market.pairs]
    assert len(set(pairs)) == 18
    assert {p.name for p in tmp_path.glob("*_interpolate_*.jpg")} == {f"{p}_interpolate_{k}.jpg" for p in pairs
                                                                       for k in range(4)}
    assert {p.name for p in tmp_path.glob("*.gif")} == {f"{p}_interpolate.gif" for p in pairs}
    with Image.open(tmp_path / f"{pairs[0]}_interpolate.gif") as gif:
        assert sum(1 for _ in ImageSequence.Iterator(gif)) == 4
    assert writer.count == 18 and "18 GIFs" in line
    # first batch of 4 pairs: decode_pose saw e_from at t = 0 and e_to at t = 1; render the appearance of from
    batch = next(iter(torch.utils.data.DataLoader(market, batch_size=4, shuffle=False)))
    assert torch.equal(model.decoded[0], model.encode_pose(batch["source_keypoints"]))
    assert torch.equal(model.decoded[3], model.encode_pose(batch["target_keypoints"]))
    assert torch.allclose(model.decoded[1], (2 * model.decoded[0] + model.decoded[3]) / 3)
    real = model.appearance(batch["source_image"], batch["source_keypoints"], batch["source_mask"])
    assert all(torch.equal(e, real) for e, _ in model.rendered[:4])


def test_interpolate_an_appearance_factor(market, tmp_path):
    model = FakeDPIG(make_opt(tmp_path, "interpolate", num_inner=1, interp_factor="bg", how_many=2,
                              only_generated=True))
    run(model, market)
    batch = next(iter(torch.utils.data.DataLoader(market, batch_size=2, shuffle=False)))
    e_a = model.appearance(batch["source_image"], batch["source_keypoints"], batch["source_mask"])
    e_b = model.appearance(batch["target_image"], batch["target_keypoints"], batch["target_mask"])
    (e0, p0), (e1, _), (e2, _) = model.rendered
    assert not model.decoded and torch.equal(p0, batch["source_keypoints"])  # pose of from, not decoded
    assert torch.equal(e0, e_a) and torch.equal(e2[:, FG:], e_b[:, FG:]) and torch.equal(e2[:, :FG], e_a[:, :FG])
    assert torch.allclose(e1[:, FG:], (e_a[:, FG:] + e_b[:, FG:]) / 2) and torch.equal(e1[:, :FG], e_a[:, :FG])
    assert len(list(tmp_path.glob("*.jpg"))) == 6 and len(list(tmp_path.glob("*.gif"))) == 2


def test_results_folder_guard(market, tmp_path):
    sample = make_opt(tmp_path, "sample", sample_fg=True, how_many=1)
    run(FakeDPIG(sample), market)
    before = digest(tmp_path, "*.jpg")
    run(FakeDPIG(sample), market)  # the same run again: allowed
    with pytest.raises(InputError, match="--overwrite"):
        FakeDPIG(make_opt(tmp_path, "interpolate", how_many=1)).test_writer(market)
    with pytest.raises(InputError, match="--overwrite"):
        FakeDPIG(make_opt(tmp_path, "sample", sample_fg=True, how_many=1, seed=1)).test_writer(market)
    assert digest(tmp_path, "*.jpg") == before  # nothing written by the refused runs
    run(FakeDPIG(make_opt(tmp_path, "interpolate", how_many=1, num_inner=0, overwrite=True)), market)
    assert len(list(tmp_path.glob("*_interpolate_*.jpg"))) == 2
    transfer = tmp_path / "transfer"
    transfer.mkdir()
    (transfer / "a_2_b_vis.jpg").write_bytes(b"x")  # another run's transfer results, no marker
    with pytest.raises(InputError, match="unknown"):
        FakeDPIG(make_opt(transfer, "sample", sample_fg=True)).test_writer(market)


class FakeFashionDPIG(FakeDPIG):
    """DeepFashion: one appearance factor `app`, no mask, the pad256 network frame 256x256."""

    def __init__(self, opt) -> None:
        super().__init__(opt, size=(256, 256))
        self.maps["app"] = nn.Linear(FG + BG, FG + BG)

    def appearance(self, image, keypoints, mask):
        assert mask is None
        return self.enc(torch.cat([image.mean((2, 3)), image.std((2, 3))[:, :1]], 1)) * 3

    def split_appearance(self, e):
        return {"app": e}

    def join_appearance(self, parts):
        return parts["app"]


def test_fashion_sample_and_interpolate_at_dataset_resolution(tiny_fashion_root, dataset_opt, tmp_path):
    dataset = find_dataset_class("fashion")(dataset_opt("fashion", dataroot=str(tiny_fashion_root),
                                                        fashion_frame="pad256", pose_encoding="tf_disc",
                                                        keypoints_outside="missing"))
    model = FakeFashionDPIG(make_opt(tmp_path / "s", "sample", data_format="fashion", sample_app=True,
                                     num_samples=2, how_many=2))
    run(model, dataset)
    files = sorted((tmp_path / "s").glob("*_sample_*.jpg"))
    assert len(files) == 2 and Image.open(files[0]).size == (176, 256)  # pad256 cropped back to 256x176
    assert Image.open(next((tmp_path / "s" / "web" / "panels").glob("*.jpg"))).size == (3 * 176, 256)
    model = FakeFashionDPIG(make_opt(tmp_path / "i", "interpolate", data_format="fashion", interp_factor="app",
                                     num_inner=1, how_many=1))
    run(model, dataset)
    with Image.open(next((tmp_path / "i").glob("*.gif"))) as gif:
        assert gif.size == (176, 256) and sum(1 for _ in ImageSequence.Iterator(gif)) == 3


@pytest.mark.parametrize("mode", ["market", "fashion"])
def test_end_to_end_through_test_py(mode, tiny_market_root, tiny_fashion_root, tmp_path):
    """--model DPIG at --ngf 8 with freshly initialised nets of every stage, saved as run `r`: test.py's transfer,
    sample and interpolate tasks write their files on synthetic Market and DeepFashion (pad256 cropped back to the
    dataset's 256x176)."""
    import importlib.util

    from models import create_model
    from options.test_options import TestOptions
    from util.checkpoint import save_weights
    from util.distributed import build_context

    spec = importlib.util.spec_from_file_location("dpig_tasks_test_script", Path(__file__).parents[1] / "test.py")
    test_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_script)
    root = tiny_market_root if mode == "market" else tiny_fashion_root
    size = (64, 128) if mode == "market" else (176, 256)
    ckpt = tmp_path / "ckpt"
    common = ["--model", "DPIG", "--dataset_mode", mode, "--dataroot", str(root), "--checkpoints_dir",
              str(ckpt), "--name", "r", "--gpu_ids", "-1", "--num_threads", "0", "--ngf", "8", "--batch_size", "4"]
    appearance = ["--sample_fg", "--sample_bg"] if mode == "market" else ["--sample_app"]
    every = ["--dpig_task", "sample", *appearance, "--sample_pose"]
    opt = TestOptions().parse(common + every + ["--results_dir", str(tmp_path / "unused")], echo=False)
    torch.manual_seed(0)
    model = create_model(opt, build_context(opt.gpu_ids))
    for name in model.model_names:
        save_weights(getattr(model, "net" + name), ckpt / "r" / f"latest_net_{name}.pth")
    factors = {"fg", "bg"} if mode == "market" else {"app"}
    assert set(model.model_names) >= {"E", "G", "PoseE", "PoseD", "Phi_pose"} | {f"Phi_{f}" for f in factors}
    dataset = find_dataset_class(mode)(opt)
    out = tmp_path / "transfer"
    assert test_script.main(common + ["--results_dir", str(out)]) == 0
    expected = {f"{Path(a).stem}_2_{Path(b).stem}_vis.jpg" for a, b in dataset.pairs}
    assert {p.name for p in out.glob("*_vis.jpg")} == expected and len(expected) == len(dataset)
    assert all(Image.open(p).size == size for p in out.glob("*_vis.jpg"))
    out = tmp_path / "sample"
    assert test_script.main(common + every + ["--num_samples", "2", "--how_many", "4", "--results_dir",
                                              str(out)]) == 0
    stems = [Path(s).stem for s in sources_in_order(dataset)[:2]]
    assert {p.name for p in out.glob("*.jpg")} == {f"{s}_sample_{k}.jpg" for s in stems for k in range(2)}
    assert all(Image.open(p).size == size for p in out.glob("*.jpg"))
    out = tmp_path / "interp"
    assert test_script.main(common + ["--dpig_task", "interpolate", "--num_inner", "1", "--how_many", "2",
                                      "--results_dir", str(out)]) == 0
    assert len(list(out.glob("*_interpolate_*.jpg"))) == 6 and len(list(out.glob("*.gif"))) == 2
    for gif_path in out.glob("*.gif"):
        with Image.open(gif_path) as gif:
            assert gif.size == size and sum(1 for _ in ImageSequence.Iterator(gif)) == 3  # 2 ends + 1 inner
    assert not list(out.glob("*_vis.*")) and (out / "web" / "index.html").is_file()
