"""Optional oracle: fast-reid's own model (PyPI `fastreid` 1.4.0, https://github.com/JDAI-CV/fast-reid) against
metrics/reid_net.py. Skipped unless fastreid is importable; install it for this test only with
`pip install --no-deps fastreid==1.4.0 yacs termcolor` (its pinned torch 1.13 is not needed: `fastreid.modeling`
imports under torch 2.x). The wheel ships no configs/, so the bagtricks R50-ibn config is set in code from
configs/Base-bagtricks.yml + configs/Market1501/bagtricks_R50-ibn.yml.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("fastreid")
pytest.importorskip("yacs")

from fastreid.config import get_cfg  # noqa: E402
from fastreid.modeling import build_model  # noqa: E402
from fastreid.utils.checkpoint import Checkpointer  # noqa: E402

from metrics.reid_net import BagtricksReID, load_fastreid_checkpoint  # noqa: E402
from test_reid_net import random_state  # noqa: E402


def bagtricks_cfg(with_ibn: bool, num_classes: int = 751):
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "Baseline"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.BACKBONE.DEPTH = "50x"
    cfg.MODEL.BACKBONE.NORM = "BN"
    cfg.MODEL.BACKBONE.LAST_STRIDE = 1
    cfg.MODEL.BACKBONE.FEAT_DIM = 2048
    cfg.MODEL.BACKBONE.WITH_IBN = with_ibn
    cfg.MODEL.BACKBONE.WITH_SE = False
    cfg.MODEL.BACKBONE.WITH_NL = False
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NAME = "EmbeddingHead"
    cfg.MODEL.HEADS.NORM = "BN"
    cfg.MODEL.HEADS.WITH_BNNECK = True
    cfg.MODEL.HEADS.POOL_LAYER = "GlobalAvgPool"
    cfg.MODEL.HEADS.NECK_FEAT = "before"
    cfg.MODEL.HEADS.CLS_LAYER = "Linear"
    cfg.MODEL.HEADS.EMBEDDING_DIM = 0
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    cfg.MODEL.LOSSES.CE.EPSILON = 0.1
    cfg.MODEL.LOSSES.TRI.HARD_MINING = True
    cfg.MODEL.LOSSES.TRI.MARGIN = 0.3
    return cfg


@pytest.fixture(scope="module")
def fr_model():
    torch.manual_seed(0)
    model = build_model(bagtricks_cfg(with_ibn=True))
    model.load_state_dict(random_state(model, seed=11), strict=True)
    return model.eval()


def test_same_keys_order_shapes_and_counts(fr_model):
    ours = BagtricksReID()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in fr_model.state_dict().items()]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in fr_model.parameters())
    assert ([n for n, p in ours.named_parameters() if not p.requires_grad]
            == [n for n, p in fr_model.named_parameters() if not p.requires_grad])
    plain = build_model(bagtricks_cfg(with_ibn=False))
    assert ([(k, v.shape) for k, v in BagtricksReID(with_ibn=False).state_dict().items()]
            == [(k, v.shape) for k, v in plain.state_dict().items()])


@pytest.mark.slow
def test_features_bit_identical_from_a_fastreid_checkpoint(fr_model, tmp_path, capsys):
    optimizer = torch.optim.Adam(fr_model.parameters(), lr=3.5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [40, 90])
    Checkpointer(fr_model, str(tmp_path), optimizer=optimizer, lr_sched=scheduler).save(
        "model_final", epoch=119, metric=np.float64(0.9125))
    ours, info = load_fastreid_checkpoint(tmp_path / "model_final.pth")
    assert (info["with_ibn"], info["num_classes"], info["stem_pool"]) == (True, 751, "ceil")
    assert info["layout"] == "checkpoint dict {'model', 'epoch', 'lr_sched', 'metric', 'optimizer'}"
    assert "WARNING" not in capsys.readouterr().out  # fast-reid's own file loads with weights_only
    x = torch.rand(4, 3, 256, 128, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        theirs = fr_model(x.clone())  # fast-reid normalises its input in place
        mine = ours(x)
    assert mine.shape == (4, 2048)
    assert torch.equal(mine, theirs), (mine - theirs).abs().max().item()


@pytest.mark.slow
def test_train_mode_head_outputs_bit_identical(fr_model):
    theirs_model = copy.deepcopy(fr_model).train()  # training updates running statistics: keep the fixture's
    ours = BagtricksReID()
    ours.load_state_dict(fr_model.state_dict(), strict=True)
    ours.train()
    x = torch.rand(4, 3, 64, 32, generator=torch.Generator().manual_seed(3)) * 255
    theirs = theirs_model.heads(theirs_model.backbone(theirs_model.preprocess_image(x.clone())), torch.zeros(4).long())
    mine = ours(x)
    for key in ("cls_outputs", "pred_class_logits", "features"):
        assert torch.equal(mine[key], theirs[key]), key
    after = ours.state_dict()
    assert all(torch.equal(after[k], v) for k, v in theirs_model.state_dict().items())  # same BN updates
