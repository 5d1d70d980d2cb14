"""The model layer every model builds on: BaseModel.train_step (micro-batches, logging by declared name), the
template model and dataset (a model and a data format as small files), and epochs of random pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train as train_script
from data.annotations import write_annotations, write_pairs
from data.sampler import ResumableSampler
from models import create_model, model_names
from models.base_model import UndeclaredLossError
from models.template_model import TemplateModel
from options.train_options import TrainOptions
from scripts.bench_train import random_batch
from test_dptn_train import test_script
from util.checkpoint import load_training_state
from util.distributed import RunContext

CPU = RunContext(device=torch.device("cpu"))


def template(tmp_path: Path, *extra: str) -> TemplateModel:
    opt = TrainOptions().parse(["--model", "template", "--dataset_mode", "market", "--gpu_ids", "-1",
                                "--checkpoints_dir", str(tmp_path), *extra], echo=False)
    torch.manual_seed(0)
    model = create_model(opt, CPU)
    model.setup()
    model.train()
    return model


def step_gradients(model) -> list[torch.Tensor]:
    grads = []
    model.optimizers[0].register_step_pre_hook(lambda o, a, k: grads.extend(
        p.grad.clone() for p in o.param_groups[0]["params"]))
    model.optimize_parameters()
    return grads


@pytest.mark.parametrize("batch,accum", [(4, 2), (3, 2), (3, 3)])
def test_micro_batches_of_any_split_give_the_whole_batch_gradient(tmp_path, batch, accum):
    whole, split = template(tmp_path), template(tmp_path, "--accum_steps", str(accum), "--batchSize", "6")
    assert [(s.start, s.stop) for s in split.micro_batches(batch)] == \
        {(4, 2): [(0, 2), (2, 4)], (3, 2): [(0, 2), (2, 3)], (3, 3): [(0, 1), (1, 2), (2, 3)]}[(batch, accum)]
    data = random_batch(batch, 128, 64, seed=3)
    whole.set_input(data)
    split.set_input(data)
    for a, b in zip(step_gradients(whole), step_gradients(split), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
    assert split.get_current_losses()["G_L1"] == pytest.approx(whole.get_current_losses()["G_L1"], rel=1e-6)


def test_a_loss_name_that_is_not_declared_raises(tmp_path):
    model = template(tmp_path)
    model.set_input(random_batch(2, 128, 64))

    def mistyped(micro):
        model.forward()
        loss = (model.fake_image - model.target_image).abs().mean()
        return loss, {"G_l1": loss}

    before = [p.detach().clone() for p in model.netG.parameters()]
    with pytest.raises(UndeclaredLossError, match="'G_l1'.*loss_names \\(G_L1\\)"):
        model.train_step(model.optimizer_G, mistyped)
    assert model.get_current_losses() == {}  # nothing logged, nothing stepped
    assert all(torch.equal(a, p) for a, p in zip(before, model.netG.parameters()))
    model.optimize_parameters()
    assert list(model.get_current_losses()) == ["G_L1"]
    assert any(not torch.equal(a, p) for a, p in zip(before, model.netG.parameters()))


def test_every_model_is_registered_from_its_file_alone():
    assert model_names() == ["dpig", "dptn", "lgan", "patn", "pg2", "pngan", "reid_bagtricks", "template"]


def write_template_data(root: Path, size=(96, 48), people: int = 2, views: int = 3) -> Path:
    """A dataset of another size under other file names: what the template mode reads."""
    rng = np.random.default_rng(0)
    for phase in ("train", "test"):
        (root / phase).mkdir(parents=True)
        annotations, pairs = {}, []
        for person in range(people):
            names = []
            for view in range(views):
                name = f"p{person}_{phase}_{view}.png"
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / phase / name)
                kps = np.full((18, 2), -1, dtype=np.int64)
                kps[:14, 0] = rng.integers(5, size[0] - 5, 14)
                kps[:14, 1] = rng.integers(5, size[1] - 5, 14)
                annotations[name] = kps
                names.append(name)
            pairs += [(a, b) for a in names for b in names if a != b]
        write_annotations(root / f"keypoints_{phase}.csv", annotations)
        write_pairs(root / f"pairs_{phase}.csv", pairs)
    return root


def test_template_model_and_dataset_train_and_test(tmp_path):
    root = write_template_data(tmp_path / "data")
    common = ["--model", "template", "--dataset_mode", "template", "--dataroot", str(root), "--image_size", "96",
              "48", "--annotation_file", "keypoints_{phase}.csv", "--pairs_file", "pairs_{phase}.csv",
              "--gpu_ids", "-1", "--checkpoints_dir", str(tmp_path / "ckpt"), "--name", "t", "--num_threads", "0"]
    # an epoch of 5 random pairs in batches of 2, the last one kept: 3 iterations per epoch, 2 epochs
    assert train_script.main(common + ["--pairs_per_epoch", "5", "--last_batch", "keep", "--batchSize", "2",
                                       "--niter", "2", "--niter_decay", "0", "--lr", "0.01"]) == 0
    state = load_training_state(tmp_path / "ckpt" / "t" / "latest_train_state.pth")
    assert state["progress"]["total_iters"] == 6 and state["progress"]["epoch"] == 3
    assert (tmp_path / "ckpt" / "t" / "latest_net_G.pth").is_file()
    assert test_script.main(common + ["--results_dir", str(tmp_path / "out")]) == 0
    written = sorted((tmp_path / "out").glob("*_vis.jpg"))
    assert len(written) == 12 and Image.open(written[0]).size == (48, 96)


def epoch_of(epoch: int, skip: int = 0, replicas: int = 1, rank: int = 0, seed: int = 3) -> list[int]:
    sampler = ResumableSampler(10, shuffle=True, seed=seed, num_replicas=replicas, rank=rank, draws=7)
    sampler.set_epoch(epoch, skip)
    return [index for index, _ in sampler]


def test_random_pair_epochs_are_reproducible_resumable_and_split_over_ranks():
    second = epoch_of(2)
    assert len(second) == 7 and all(0 <= i < 10 for i in second)
    assert epoch_of(2) == second and epoch_of(2, skip=4) == second[4:] and epoch_of(3) != second
    assert any(len(set(epoch_of(e))) < 7 for e in range(20))  # drawn with replacement
    halves = [epoch_of(2, replicas=2, rank=r) for r in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == 4
    assert sorted(halves[0] + halves[1]) == sorted(second + second[:1])  # padded to a multiple of the ranks
    counts = np.bincount([i for e in range(200) for i in epoch_of(e, seed=0)], minlength=10)
    assert counts.min() > 0.6 * counts.mean()  # uniform over the pairs
