"""DPIG stage II's real batches (models/dpig_critic_reals.py): a fresh, reproducible draw per critic step, and the
cache giving the same embeddings as loading and encoding the draw."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data import find_dataset_class
from models.dpig_critic_reals import CriticRealDraws
from test_dpig_train import stage_runs, train_model  # noqa: F401  (stage_runs is a fixture)


@pytest.fixture
def market(tiny_market_root, dataset_opt):
    opt = dataset_opt("market", dataroot=str(tiny_market_root), mask_recipe="dpig", pose_encoding="tf_disc",
                      keypoints_outside="missing", flip_prob=0.5, is_train=True)
    return find_dataset_class("market")(opt)


def image_statistics(batch: dict) -> dict[str, torch.Tensor]:
    """A stand-in encoder: per-image colour means and the keypoint rows (mirroring changes both)."""
    image = batch["source_image"].float()
    return {"fg": torch.cat([image.mean((2, 3)), image[:, :, :, :32].mean((2, 3))], 1),
            "pose": batch["source_keypoints"].float().flatten(1)}


def test_draws_are_fresh_per_step_and_reproducible(market):
    draws = CriticRealDraws(market, image_statistics, 4, seed=3, rank=0, cache=False)
    steps = [draws.draw_indices(iteration, factor, step) for iteration in (0, 1) for factor in (0, 1)
             for step in range(3)]
    distinct = {tuple(indices) + tuple(flips) for indices, flips in steps}
    assert len(distinct) == len(steps)  # every critic step of every factor and iteration gets its own batch
    again = CriticRealDraws(market, image_statistics, 4, seed=3, rank=0, cache=False)
    for (i1, f1), (i2, f2) in zip(steps, [again.draw_indices(it, fa, st) for it in (0, 1) for fa in (0, 1)
                                           for st in range(3)]):
        assert np.array_equal(i1, i2) and np.array_equal(f1, f2)
    other_rank = CriticRealDraws(market, image_statistics, 4, seed=3, rank=1, cache=False)
    assert not np.array_equal(other_rank.draw_indices(0, 0, 0)[0], steps[0][0])
    flips = np.concatenate([draws.draw_indices(9, 0, s)[1] for s in range(50)])
    assert 0.3 < flips.mean() < 0.7  # --flip_prob 0.5 reaches the critics' batches too
    indices, mirrored = draws.draw_indices(0, 0, 0)
    expected = torch.stack([market.item(int(i), bool(f))["source_keypoints"].float().flatten()
                            for i, f in zip(indices, mirrored)])
    assert torch.equal(draws.draw(0, 0, 0)["pose"], expected)


def test_cache_equals_loading_and_encoding_the_same_draw(market):
    fresh = CriticRealDraws(market, image_statistics, 5, seed=1, rank=0, cache=False)
    cached = CriticRealDraws(market, image_statistics, 5, seed=1, rank=0, cache=True, show_progress=False)
    sources = {source for source, _ in market.pairs}
    assert cached.cache["fg"].shape == (2, len(sources), 6)  # every distinct source, both mirror states
    assert len(sources) < len(market)  # sources repeat across pairs and are encoded once
    for step in range(4):
        a, b = fresh.draw(2, 1, step), cached.draw(2, 1, step)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_stage_2a_critic_steps_see_different_real_batches(tiny_market_root, stage_runs):  # noqa: F811
    model, batch = train_model(tiny_market_root, stage_runs, "2a", "reals", "--stage1a_name", "run1a",
                               "--critic_iters", "3")
    assert model.opt.critic_reals == "fresh"
    seen: list[tuple[int, int, int, torch.Tensor]] = []
    draw = model.critic_draws.draw

    def spy(iteration, factor, step):
        out = draw(iteration, factor, step)
        seen.append((iteration, factor, step, out["fg"]))
        return out

    model.critic_draws.draw = spy
    for _ in range(2):
        model.set_input(batch)
        model.optimize_parameters()
    assert [s[:3] for s in seen] == [(i, f, s) for i in (0, 1) for f in (0, 1) for s in range(3)]
    reals = [s[3] for s in seen if s[1] == 0]
    assert all(not torch.equal(a, b) for k, a in enumerate(reals) for b in reals[k + 1:])


def test_stage_2a_loader_mode_reuses_the_loader_batch(tiny_market_root, stage_runs):  # noqa: F811
    model, batch = train_model(tiny_market_root, stage_runs, "2a", "loader", "--stage1a_name", "run1a",
                               "--critic_iters", "2", "--critic_reals", "loader")
    assert model.critic_draws is None
    model.set_input(batch)
    model.optimize_parameters()
    expected = model.split_appearance(model.appearance(batch["source_image"], batch["source_keypoints"],
                                                       batch["source_mask"]))["fg"]
    assert torch.allclose(model.critic_reals(0, 1)["fg"], expected, atol=1e-6)
