"""The re-id training baseline (`--model reid_bagtricks --dataset_mode market_reid`): fast-reid's losses and
schedule against hand computations, the P x K sampler, the dataset's labels and transform, training on
colour-pattern identities, exported weights, and train.py end to end with evaluation and an exact resume."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import train as train_script
from data import create_dataloader, create_dataset
from data.identity_sampler import NaiveIdentitySampler
from data.synthetic_build import make_synthetic_dataset
from metrics.reid_net import load_fastreid_checkpoint
from models import create_model
from models.networks.reid_losses import hard_triplet_loss, smoothed_cross_entropy
from models.networks.reid_schedule import BagtricksSchedule, epoch_start_rates, format_lr_table, iteration_rate
from options.train_options import TrainOptions
from util.distributed import build_context
from util.io import InputError

TINY = ("--model", "reid_bagtricks", "--dataset_mode", "market_reid", "--random_init_backbone",
        "--reid_size", "64", "32", "--batchSize", "16", "--gpu_ids", "-1", "--num_threads", "0")


def write_colour_identities(root: Path, ids: int = 4, per_id: int = 4, seed: int = 0) -> Path:
    """<root>/train/ (and query/, test/): each identity a fixed pair of shirt/trouser colours on noise."""
    rng = np.random.default_rng(seed)
    for folder, cams, count in (("train", (1, 2, 3), per_id), ("test", (2, 3), 2), ("query", (1,), 1)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for person in range(ids):
            pid = 10 + 7 * person
            colours = np.random.default_rng([seed, pid]).integers(0, 256, (2, 3))
            for j in range(count):
                image = rng.integers(0, 60, (128, 64, 3)).astype(np.int64)
                shift = int(rng.integers(-6, 7))
                image[20 + shift:64 + shift, 12:52] += colours[0]
                image[64 + shift:120 + shift, 16:48] += colours[1]
                name = f"{pid:04d}_c{cams[j % len(cams)]}s1_{1000 * person + j:06d}_01.jpg"
                Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / folder / name, quality=95)
    return root


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory) -> Path:
    return write_colour_identities(tmp_path_factory.mktemp("colour_reid"))


@pytest.fixture(scope="module")
def synthetic_market(tmp_path_factory) -> Path:
    """The project's synthetic Market (train/, test/, query/): 6 train identities x 6 images."""
    out = tmp_path_factory.mktemp("syn") / "market"
    make_synthetic_dataset(out, "market", people=8, seed=3, images_per_person=6)
    return out


def parse(root: Path, tmp_path: Path, *extra: str):
    return TrainOptions().parse([*TINY, "--dataroot", str(root), "--checkpoints_dir", str(tmp_path),
                                 "--name", "run", *extra], echo=False)


# --- losses ------------------------------------------------------------------------------------------------

def test_cross_entropy_is_fastreids_smoothing_not_pytorchs():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 751) * 3, torch.randint(0, 751, (8,))
    ours = smoothed_cross_entropy(logits, labels, eps=0.1)
    log_p = torch.log_softmax(logits.double(), dim=1)
    by_hand = 0.0
    for i in range(8):  # target 1 - eps on the label, eps / (C - 1) on each of the other 750 classes
        others = log_p[i].sum() - log_p[i, labels[i]]
        by_hand += -(0.9 * log_p[i, labels[i]] + 0.1 / 750 * others)
    assert float(ours) == pytest.approx(float(by_hand) / 8, rel=1e-6)
    pytorch = F.cross_entropy(logits, labels, label_smoothing=0.1)  # eps / C on every class
    assert abs(float(ours) - float(pytorch)) > 1e-5


def test_cross_entropy_divides_by_the_non_zero_per_sample_losses():
    logits = torch.zeros(4, 5)
    logits[0, 2] = 1000.0  # sample 0: log-probability 0 at its label -> its loss is exactly 0 with eps 0
    labels = torch.tensor([2, 0, 1, 3])
    expected = -torch.log_softmax(logits, 1)[torch.arange(4), labels][1:].sum() / 3
    assert float(smoothed_cross_entropy(logits, labels, eps=0.0)) == pytest.approx(float(expected))


def test_triplet_loss_matches_a_brute_force_batch_hard_computation():
    torch.manual_seed(1)
    feats, labels = torch.randn(12, 5), torch.arange(3).repeat_interleave(4)
    total = 0.0
    for a in range(12):
        dists = [max(float(((feats[a] - feats[b]) ** 2).sum()), 1e-12) ** 0.5 for b in range(12)]
        positive = max(d for d, b in zip(dists, range(12)) if labels[b] == labels[a])  # the anchor counts too
        negative = min(d for d, b in zip(dists, range(12)) if labels[b] != labels[a])
        total += max(0.0, positive - negative + 0.3)
    assert float(hard_triplet_loss(feats, labels, 0.3)) == pytest.approx(total / 12, rel=1e-5)


# --- schedule -----------------------------------------------------------------------------------------------

def test_lr_table_at_202_iterations_per_epoch():
    schedule = BagtricksSchedule()
    assert [iteration_rate(schedule, i, 202) for i in (0, 1000, 2000)] == pytest.approx([3.5e-5, 1.925e-4, 3.5e-4])
    rates = epoch_start_rates(schedule, 202, 120)  # 0-based epochs
    assert [rates[e] for e in (48, 49, 98, 99)] == pytest.approx([3.5e-4, 3.5e-5, 3.5e-5, 3.5e-6])
    table = format_lr_table(schedule, 202, 120)
    assert "     50     9898-10099      3.5000e-05" in table and "    100    19998-20199      3.5000e-06" in table


@pytest.mark.parametrize("ipe", [50, 100, 200, 333, 1000, 2500])
def test_lr_drops_come_at_40_plus_d_and_90_plus_d(ipe):
    rates = epoch_start_rates(BagtricksSchedule(), ipe, 140)
    drops = [e for e in range(1, 140) if rates[e] < 0.5 * rates[e - 1]]
    d = math.ceil(2000 / ipe) - 1
    assert drops == [40 + d, 90 + d]


def test_fp16_scale_changes_hold_the_warm_up_back():
    schedule = BagtricksSchedule()
    for i in range(3000):
        schedule.after_iteration(scale_changed=i in (0, 1, 1999))  # overflow at the start, growth at 2,000
    assert schedule.warmup_steps == 1997
    assert schedule.lr() == pytest.approx(3.5e-4 * (0.1 * 3 / 2000 + 1997 / 2000))  # fast-reid stays short


# --- sampler ------------------------------------------------------------------------------------------------

def pk_ok(batch_labels: list[int], p: int, k: int) -> bool:
    counts = {label: batch_labels.count(label) for label in batch_labels}
    return len(counts) == p and set(counts.values()) == {k}


def test_identity_sampler_batches_are_p_by_k_reproducible_and_resume_mid_epoch():
    labels = [i % 9 for i in range(60)] + [9, 9, 10]  # ids 9 and 10 have fewer than K images
    sampler = NaiveIdentitySampler(labels, batch_size=16, num_instances=4, seed=7)
    assert sampler.iterations == 63 // 16 == len(sampler) // 16
    for epoch in range(5):
        sampler.set_epoch(epoch)
        order = sampler.rank_indices()
        assert all(pk_ok([labels[i] for i in order[b:b + 16]], 4, 4) for b in range(0, len(order), 16))
    sampler.set_epoch(3)
    full = list(sampler)
    assert full == list(sampler) and full != (sampler.set_epoch(4) or list(sampler))
    sampler.set_epoch(3, skip=16)
    assert list(sampler) == full[16:] and len(sampler) == len(full) - 16
    assert len({slot for _, _, slot in full}) == len(full)  # repeated indices still get their own draws


def test_identity_sampler_splits_whole_identities_over_ranks():
    labels = [i % 12 for i in range(96)]
    ranks = [NaiveIdentitySampler(labels, 8, 4, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    single = NaiveIdentitySampler(labels, 16, 4, seed=1)
    for s in ranks:
        s.set_epoch(2)
    single.set_epoch(2)
    assert ranks[0].iterations == 6 and len(ranks[0]) == 48
    parts = [s.rank_indices() for s in ranks]
    for b in range(0, 48, 8):
        assert pk_ok([labels[i] for i in parts[0][b:b + 8]], 2, 4) and pk_ok([labels[i] for i in parts[1][b:b + 8]], 2, 4)
        assert sorted(parts[0][b:b + 8] + parts[1][b:b + 8]) == sorted(single.global_batches()[b // 8])


def test_too_few_identities_for_a_batch_is_an_input_error():
    with pytest.raises(InputError, match="3 training identities are fewer than the 4"):
        NaiveIdentitySampler([0, 1, 2] * 4, 16, 4, seed=0)


# --- dataset ------------------------------------------------------------------------------------------------

def test_dataset_labels_transform_and_batches(colour_root, tmp_path):
    junk = colour_root / "train" / "-1_c1s1_000099_01.jpg"
    Image.new("RGB", (64, 128)).save(junk)
    try:
        opt = parse(colour_root, tmp_path)
        dataset = create_dataset(opt)
    finally:
        junk.unlink()
    assert opt.reid_num_classes == 4 and len(dataset) == 16  # pid -1 dropped
    assert dataset.classes == [10, 17, 24, 31] and sorted(set(dataset.labels)) == [0, 1, 2, 3]
    item = dataset[(5, 2, 11)]
    assert item["image"].shape == (3, 64, 32) and item["image"].dtype == torch.float32
    assert 0 <= float(item["image"].min()) and float(item["image"].max()) <= 255 and float(item["image"].max()) > 1
    assert torch.equal(item["image"], dataset[(5, 2, 11)]["image"])  # fixed by (seed, epoch, slot)
    assert any(not torch.equal(item["image"], dataset[(5, 2, s)]["image"]) for s in range(12, 16))
    assert item["pid"] == dataset.labels[5] and item["name"].startswith(f"{dataset.classes[item['pid']]:04d}_")
    loader = create_dataloader(opt, build_context([]), dataset)
    loader.sampler.set_epoch(1)
    batches = list(loader)
    assert len(batches) == 1 and pk_ok(batches[0]["pid"].tolist(), 4, 4)


def test_generated_images_real_fraction_and_pngan_branch(colour_root, tmp_path):
    names = sorted(p.name for p in (colour_root / "train").iterdir())
    extra = tmp_path / "generated"
    extra.mkdir()
    pairs = tmp_path / "pairs.csv"
    rows = [(names[0], names[5]), (names[6], names[1])]
    pairs.write_text("from,to\n" + "".join(f"{a},{b}\n" for a, b in rows))
    for a, b in rows:
        Image.new("RGB", (64, 128), (200, 10, 10)).save(extra / f"{a[:-4]}_2_{b[:-4]}_vis.jpg")
    opt = parse(colour_root, tmp_path, "--extra_train_dir", str(extra), "--extra_pairs", str(pairs),
                "--real_fraction", "0.5")
    dataset = create_dataset(opt)
    generated = [(item.name, dataset.classes[label]) for item, label in zip(dataset.items, dataset.labels)
                 if "_2_" in item.name]
    assert generated == [(f"{a[:-4]}_2_{b[:-4]}_vis.jpg", int(a[:4])) for a, b in rows]  # the SOURCE identity
    assert len(dataset) == 4 * 2 + 2  # half of each identity's 4 real images
    assert [i.name for i in dataset.items] == [i.name for i in create_dataset(opt).items]  # deterministic
    (extra / f"{rows[1][0][:-4]}_2_{rows[1][1][:-4]}_vis.jpg").unlink()
    with pytest.raises(InputError, match=f"{rows[1][0][:-4]}_2_{rows[1][1][:-4]}_vis.jpg \\(pairs.csv row 2\\)"):
        parse(colour_root, tmp_path, "--extra_train_dir", str(extra), "--extra_pairs", str(pairs))
    canon = tmp_path / "canon"
    canon.mkdir()
    for name in names[::2]:
        for k in (1, 2):
            Image.new("RGB", (64, 128)).save(canon / f"{name[:-4]}_2_canon{k}_vis.jpg")
    dataset = create_dataset(parse(colour_root, tmp_path, "--pngan_branch", "--extra_train_dir", str(canon)))
    assert len(dataset) == 16 and all("_2_canon" in item.name for item in dataset.items)


def test_bad_options_are_refused_with_one_clear_error(colour_root, tmp_path, capsys):
    base = [a for a in TINY if a != "--random_init_backbone"]
    argv = [*base, "--dataroot", str(colour_root), "--checkpoints_dir", str(tmp_path), "--name", "x"]
    run = tmp_path / "x"
    assert train_script.main([*argv, "--no_download"]) == 2  # the hub cache lacks it and downloads are off
    message = capsys.readouterr().err
    assert "resnet50_ibn_a-d9d0bb7b.pth" in message and "github.com/XingangPan/IBN-Net" in message
    assert "--pretrained_backbone" in message and not run.exists()
    with pytest.raises(InputError, match="nowhere.pth not found: fetch resnet50_ibn_a-d9d0bb7b.pth"):
        TrainOptions().parse([*argv, "--pretrained_backbone", str(tmp_path / "nowhere.pth")], echo=False)
    for extra, message in ((["--lr_policy", "step"], "--lr_policy does not apply"),
                           (["--accum_steps", "2"], "--accum_steps must be 1"),
                           (["--niter_decay", "5"], "--niter_decay does not apply"),
                           (["--num_instances", "3"], "multiple of --num_instances 3"),
                           (["--pairs_per_epoch", "9"], "--pairs_per_epoch does not apply")):
        with pytest.raises(InputError, match=message):
            parse(colour_root, tmp_path, *extra)
    with pytest.raises(InputError, match="use --dataset_mode market_reid"):
        TrainOptions().parse(["--model", "reid_bagtricks", "--dataset_mode", "market", "--dataroot",
                              str(colour_root), "--random_init_backbone"], echo=False)


# --- training -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_fifty_iterations_lower_the_loss_on_colour_identities(colour_root, tmp_path):
    torch.manual_seed(0)
    # the full ResNet-50 at 64x32 (at 32x16, padding 10 and the crop leave too little to learn from in 50 steps)
    opt = parse(colour_root, tmp_path, "--warmup_iters", "0", "--lr_milestones", "100", "--eval_epoch_freq", "0")
    ctx = build_context([])
    dataset = create_dataset(opt)
    loader = create_dataloader(opt, ctx, dataset)
    model = create_model(opt, ctx)
    model.setup()
    model.train()
    totals = []
    for epoch in range(50):  # one 4 x 4 batch per epoch
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            assert pk_ok(batch["pid"].tolist(), 4, 4)
            model.set_input(batch)
            model.optimize_parameters()
            totals.append(sum(model.get_current_losses().values()))
        model.update_learning_rate()
    assert model.schedule.iteration == 50 and model.optimizer.param_groups[0]["lr"] == pytest.approx(3.5e-4)
    assert np.mean(totals[-10:]) < 0.8 * np.mean(totals[:10]), totals  # 0.59 here (CE + triplet 3.0 -> 1.8)
    assert model.get_current_visuals()["input_image"].shape == (4, 3, 64, 32)


class HalvingScaler:
    """A stand-in for fp16's GradScaler whose scale halves at the first update (an overflow)."""

    def __init__(self) -> None:
        self.value, self.updates = 65536.0, 0

    def is_enabled(self) -> bool:
        return True

    def get_scale(self) -> float:
        return self.value

    def scale(self, loss):
        return loss

    def step(self, optimizer) -> None:
        optimizer.step()

    def update(self) -> None:
        self.updates += 1
        self.value = self.value / 2 if self.updates == 1 else self.value


@pytest.mark.slow
def test_the_model_holds_the_warm_up_back_when_the_loss_scale_changes(colour_root, tmp_path):
    opt = parse(colour_root, tmp_path, "--warmup_iters", "10", "--reid_size", "32", "16")
    ctx = build_context([])
    loader = create_dataloader(opt, ctx, create_dataset(opt))
    model = create_model(opt, ctx)
    model.setup()
    model.train()
    model.scaler = HalvingScaler()
    loader.sampler.set_epoch(1)
    batch = next(iter(loader))
    rates = []
    for _ in range(3):
        model.set_input(batch)
        model.optimize_parameters()
        rates.append(model.optimizer.param_groups[0]["lr"])
    state = model.extra_state()["schedule"]
    assert (state["iteration"], state["warmup_steps"]) == (3, 2)  # the first iteration's scale change: no step
    assert rates == pytest.approx([3.5e-5, 3.5e-5, 3.5e-4 * (0.1 + 0.9 * 1 / 10)])


def run_train(root: Path, ckpt: Path, name: str, *extra: str) -> int:
    return train_script.main([*TINY, "--dataroot", str(root), "--checkpoints_dir", str(ckpt), "--name", name,
                              "--seed", "2", "--niter", "2", "--warmup_iters", "3", "--print_freq", "1000",
                              "--display_freq", "100000", *extra])


@pytest.mark.slow
def test_train_py_evaluates_exports_and_resumes_exactly(synthetic_market, tmp_path):
    # 36 images / batch 16: 2 iterations per epoch; the straight run evaluates after epochs 1 and 2
    assert run_train(synthetic_market, tmp_path, "straight", "--eval_epoch_freq", "1", "--export_fastreid_dict") == 0
    folder = tmp_path / "straight"
    records = json.loads((folder / "reid_eval.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2] and records[0]["iteration"] == 2
    assert records[0]["valid_queries"] > 0 and 0 <= records[0]["mAP"] <= 100
    assert (folder / "reid_eval.txt").read_text().splitlines()[1].startswith("epoch 2 (iteration 4): rank1 ")
    model, info = load_fastreid_checkpoint(folder / "latest_net_reid.pth")  # strict
    saved = torch.load(folder / "latest_net_reid.pth", weights_only=True)
    assert info["num_classes"] == 6 and info["with_ibn"] and len(saved) == 350
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    wrapped = torch.load(folder / "latest_net_reid_fastreid.pth", weights_only=True)
    assert set(wrapped) == {"model"} and all(torch.equal(saved[k], wrapped["model"][k]) for k in saved)
    # stop after 3 iterations (mid epoch 2), resume, finish: the same weights as the straight run
    assert run_train(synthetic_market, tmp_path, "resumed", "--eval_epoch_freq", "1", "--max_steps", "3") == 0
    assert run_train(synthetic_market, tmp_path, "resumed", "--eval_epoch_freq", "1", "--continue_train") == 0
    resumed = torch.load(tmp_path / "resumed" / "latest_net_reid.pth", weights_only=True)
    assert all(torch.equal(saved[k], resumed[k]) for k in saved)
    state = torch.load(tmp_path / "resumed" / "latest_train_state.pth", weights_only=False)
    assert state["model"]["extra"]["schedule"]["iteration"] == 4


def test_test_py_is_refused_with_a_pointer_to_the_evaluator(colour_root, tmp_path):
    from options.test_options import TestOptions

    with pytest.raises(InputError, match="python -m metrics.reid"):
        TestOptions().parse(["--model", "reid_bagtricks", "--dataset_mode", "market_reid", "--dataroot",
                             str(colour_root), "--checkpoints_dir", str(tmp_path)], echo=False)
