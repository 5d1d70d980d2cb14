"""`--model reid_bagtricks`: train fast-reid's BoT ("bagtricks") R50-IBN re-id network in the project's loop.

Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019, with the
settings of fast-reid (https://github.com/JDAI-CV/fast-reid, `configs/Base-bagtricks.yml`,
`configs/Market1501/bagtricks_R50-ibn.yml`): ImageNet-initialised ResNet-50 IBN-a backbone, BNNeck,
label-smoothed cross-entropy on the BNNeck logits plus the batch-hard triplet loss (margin 0.3) on the pooled
features, Adam (lr 3.5e-4, weight decay 5e-4 on every trainable parameter), 120 epochs of P x K = 16 x 4
batches, warm-up over 2,000 iterations then MultiStep [40, 90] per epoch (models/networks/reid_schedule.py),
evaluation every 30 epochs. The network lives in metrics/reid_net.py, which scores re-id for the evaluation
(`python -m metrics.reid`), so the weights written here (`<tag>_net_reid.pth`) are a fast-reid state dict.
Data: `--dataset_mode market_reid` (data/market_reid_dataset.py). Docs: docs/models/reid_bagtricks.md.
"""
from __future__ import annotations

import argparse
import json
from collections import OrderedDict
from pathlib import Path

import torch

from metrics.reid_net import IMAGENET_WEIGHTS, BagtricksReID, export_fastreid, load_imagenet_backbone
from models.base_model import BaseModel, LossTerms, MicroBatch
from models.networks.reid_losses import hard_triplet_loss, smoothed_cross_entropy
from models.networks.reid_schedule import BagtricksSchedule, format_lr_table
from util.checkpoint import rng_state, set_rng_state, unwrap
from util.distributed import print0
from util.io import InputError, atomic_write_text
from util.run_options import mark_run_shaping
from util.weights import local_weights

ARCHS = {"r50_ibn": True, "r50": False}  # --reid_arch -> with_ibn
UNUSED_SHARED = ("lr_policy", "lr_decay_iters", "init_type", "init_gain")  # replaced by this model's own recipe
EVAL_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP", "metric")


class ReidBagtricksModel(BaseModel):
    """BagtricksReID trained with CE + triplet; `end_of_epoch` evaluates with metrics.reid.evaluate_standard."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        g = parser.add_argument_group("reid_bagtricks model", "fast-reid BoT(R50-ibn) recipe (Base-bagtricks.yml)")
        g.add_argument("--reid_arch", type=str, default="r50_ibn", choices=sorted(ARCHS),
                       help="backbone: ResNet-50 with IBN-a in layer1-3 (bagtricks_R50-ibn) or plain ResNet-50")
        mark_run_shaping(g, "reid_arch")  # test.py takes it from the run
        if is_train:
            g.add_argument("--pretrained_backbone", type=str, default=None,
                           help="ImageNet weights of the backbone: resnet50_ibn_a-d9d0bb7b.pth (IBN-Net release "
                                "v1.0) for r50_ibn, resnet50-19c8e357.pth (torchvision) for r50; default: the "
                                "torch hub cache, fetched there when missing (--no_download: never)")
            g.add_argument("--random_init_backbone", action="store_true",
                           help="tests only: start the backbone from fast-reid's random init instead")
            g.add_argument("--ce_eps", type=float, default=0.1, help="label smoothing of the cross-entropy")
            g.add_argument("--triplet_margin", type=float, default=0.3, help="margin of the batch-hard triplet loss")
            g.add_argument("--weight_decay", type=float, default=5e-4,
                           help="Adam weight decay on every trainable parameter (norm layers and biases too)")
            g.add_argument("--warmup_iters", type=int, default=2000, help="linear warm-up length, in iterations")
            g.add_argument("--warmup_factor", type=float, default=0.1, help="warm-up's starting fraction of --lr")
            g.add_argument("--lr_milestones", type=int, nargs="+", default=[40, 90],
                           help="MultiStep milestones, counted in epochs after warm-up ends")
            g.add_argument("--lr_gamma", type=float, default=0.1, help="MultiStep factor")
            g.add_argument("--eval_epoch_freq", type=int, default=30,
                           help="evaluate (query/ vs test/) every this many epochs and after the last; 0: never")
            g.add_argument("--eval_dataroot", type=str, default=None,
                           help="prepared Market folder to evaluate on (default: --dataroot); skipped with a "
                                "note when it has no query/")
            g.add_argument("--eval_batch_size", type=int, default=128, help="batch size of the evaluation")
            g.add_argument("--export_fastreid_dict", action="store_true",
                           help="also write <tag>_net_reid_fastreid.pth as {'model': state_dict}, the dict "
                                "fast-reid's --eval-only MODEL.WEIGHTS reads")
        parser.set_defaults(batch_size=64, niter=120, niter_decay=0, lr=3.5e-4, beta1=0.9, save_epoch_freq=30,
                            **{name: None for name in UNUSED_SHARED})
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        if not opt.is_train:
            raise InputError("--model reid_bagtricks has no test.py: score its weights with python -m metrics.reid "
                             "--reid_weights <checkpoints_dir>/<name>/latest_net_reid.pth")
        if getattr(opt, "reid_num_classes", None) is None:
            raise InputError(f"--model reid_bagtricks reads identity-labelled crops: use --dataset_mode market_reid "
                             f"(not {opt.dataset_mode})")
        for name in UNUSED_SHARED:
            if getattr(opt, name, None) is not None:
                raise InputError(f"--{name} does not apply to --model reid_bagtricks (its schedule is fast-reid's "
                                 "warm-up + MultiStep: --warmup_iters, --lr_milestones; its init is fast-reid's)")
        if opt.niter_decay != 0:
            raise InputError("--niter_decay does not apply to --model reid_bagtricks (no linear decay: the rate "
                             "follows --lr_milestones); set the number of epochs with --niter")
        if opt.accum_steps != 1:
            raise InputError("--accum_steps must be 1 for --model reid_bagtricks: the batch-hard triplet loss and "
                             "BatchNorm need the whole P x K batch")
        if opt.eval_epoch_freq < 0 or opt.eval_batch_size < 1 or opt.warmup_iters < 0:
            raise InputError("--eval_epoch_freq and --warmup_iters must be >= 0, --eval_batch_size >= 1")
        if opt.random_init_backbone and opt.pretrained_backbone:
            raise InputError("give either --pretrained_backbone or --random_init_backbone, not both")
        if opt.pretrained_backbone and not Path(opt.pretrained_backbone).is_file():
            spec = IMAGENET_WEIGHTS[ARCHS[opt.reid_arch]]
            raise InputError(f"--pretrained_backbone {opt.pretrained_backbone} not found: fetch {spec.filename} "
                             f"from {spec.url}, or leave the flag out to use the torch hub cache (fetched there "
                             "when missing)")

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.image = self.pid = self.outputs = None
        net = BagtricksReID(num_classes=opt.reid_num_classes, with_ibn=ARCHS[opt.reid_arch], stem_pool="ceil")
        if opt.random_init_backbone:
            print0("note: --random_init_backbone: the re-id backbone starts from random weights, not ImageNet")
        else:  # the given file, else the hub cache (downloaded there when missing, unless --no_download)
            spec = IMAGENET_WEIGHTS[ARCHS[opt.reid_arch]]
            path = local_weights(spec, opt.pretrained_backbone, download=not opt.no_download)
            load_imagenet_backbone(net, path)
        self.netreid = self.prepare(net, trained=True)
        self.model_names = ["reid"]  # <tag>_net_reid.pth: fast-reid's state dict, key for key
        self.loss_names = ["reid_ce", "reid_triplet"]
        self.visual_names = ["input_image"]
        trainable = [p for p in net.parameters() if p.requires_grad]  # the BNNeck bias stays frozen at 0
        self.optimizer = torch.optim.Adam(trainable, lr=opt.lr, betas=(opt.beta1, 0.999),
                                          weight_decay=opt.weight_decay)
        self.optimizers = [self.optimizer]
        self.schedule = BagtricksSchedule(base_lr=opt.lr, warmup_iters=opt.warmup_iters,
                                          warmup_factor=opt.warmup_factor, milestones=tuple(opt.lr_milestones),
                                          gamma=opt.lr_gamma)
        self.iters_per_epoch = 0
        self.apply_lr()

    # --- schedule: set per iteration, the MultiStep part per epoch ----------------------------------------

    def setup(self) -> None:
        """No --lr_policy scheduler: the rate comes from `self.schedule` before every iteration."""
        self.schedulers = []
        if self.opt.verbose:
            self.print_networks()

    def apply_lr(self) -> float:
        lr = self.schedule.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def start_of_training(self, iterations_per_epoch: int, dataset) -> None:
        self.iters_per_epoch = iterations_per_epoch
        fresh = BagtricksSchedule(**{**self.schedule.state_dict(), "iteration": 0, "warmup_steps": 0,
                                     "decay_steps": 0})
        print0(format_lr_table(fresh, iterations_per_epoch, self.opt.niter + self.opt.niter_decay))

    def update_learning_rate(self, metric: float | None = None) -> float:
        self.schedule.after_epoch()
        return self.apply_lr()

    def optimize_parameters(self) -> None:
        """One iteration at the schedule's rate; an fp16 loss-scale change holds the warm-up back (fast-reid)."""
        self.apply_lr()
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        super().optimize_parameters()
        changed = scale is not None and self.scaler.get_scale() != scale
        self.schedule.after_iteration(scale_changed=changed)

    def extra_state(self) -> dict:
        return {"schedule": self.schedule.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.schedule.load_state_dict(state["schedule"])
        self.apply_lr()

    # --- the iteration --------------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """Images (B, 3, H, W) float 0..255 and identity labels (B,) from --dataset_mode market_reid."""
        self.batch = {"image": self.to_device(batch["image"]), "pid": batch["pid"].to(self.device)}
        self.use_part(slice(None))
        self.image_paths = [(name, name) for name in batch["name"]]

    def forward(self) -> None:
        self.outputs = self.netreid(self.image)

    def training_iteration(self) -> None:
        self.train_step(self.optimizer, self.reid_terms)

    def reid_terms(self, micro: MicroBatch) -> LossTerms:
        """CE on the BNNeck logits + triplet on the pre-BNNeck features, weights 1 and 1, in float32."""
        self.forward()
        ce = smoothed_cross_entropy(self.outputs["cls_outputs"].float(), self.pid, self.opt.ce_eps)
        triplet = hard_triplet_loss(self.outputs["features"].float(), self.pid, self.opt.triplet_margin)
        return ce + triplet, {"reid_ce": ce, "reid_triplet": triplet}

    def get_current_visuals(self) -> "OrderedDict[str, torch.Tensor]":
        """A few input crops (after augmentation), mapped to [-1, 1] for the page."""
        if self.image is None:
            return OrderedDict()
        return OrderedDict(input_image=self.image[:4].detach().float() / 127.5 - 1.0)

    # --- weights and evaluation -----------------------------------------------------------------------

    def save_networks(self, tag: str | int) -> None:
        super().save_networks(tag)
        if self.opt.export_fastreid_dict:
            export_fastreid(unwrap(self.netreid), self.save_dir / f"{tag}_net_reid_fastreid.pth", wrap=True)

    def end_of_epoch(self, epoch: int) -> None:
        """Every --eval_epoch_freq epochs and after the last: query/ vs test/ of --eval_dataroot (rank 0)."""
        freq, last = self.opt.eval_epoch_freq, self.opt.niter + self.opt.niter_decay
        if not freq or (epoch % freq and epoch != last) or not self.ctx.is_main:
            return
        root = Path(self.opt.eval_dataroot or self.opt.dataroot)
        if not (root / "query").is_dir():
            print0(f"note: epoch {epoch}: no re-id evaluation, {root} has no query/ folder")
            return
        from metrics.reid import evaluate_standard  # only when evaluating

        saved = rng_state()  # evaluating must not change what training draws next (exact resume)
        net = unwrap(self.netreid)
        net.eval()
        try:
            result = evaluate_standard(net, root, size=tuple(self.opt.reid_size),
                                       batch_size=self.opt.eval_batch_size, device=self.device)
        except InputError as exc:  # a broken evaluation folder costs the evaluation, not the training run
            print0(f"warning: epoch {epoch}: re-id evaluation on {root} failed ({exc}); training goes on")
            return
        finally:
            net.train()
            set_rng_state(saved)
        record = {"epoch": epoch, "iteration": self.schedule.iteration, "eval_dataroot": str(root),
                  **{k: (v.item() if hasattr(v, "item") else v) for k, v in result.items()}}
        self.record_evaluation(record)

    def record_evaluation(self, record: dict) -> None:
        """Append to <save_dir>/reid_eval.json (a list) and reid_eval.txt (one line each), both atomically."""
        json_path, text_path = self.save_dir / "reid_eval.json", self.save_dir / "reid_eval.txt"
        records = json.loads(json_path.read_text()) if json_path.is_file() else []
        records.append(record)
        atomic_write_text(json_path, json.dumps(records, indent=1) + "\n")
        lines = [f"epoch {r['epoch']} (iteration {r['iteration']}): "
                 + ", ".join(f"{k} {r[k]:.2f}" for k in EVAL_KEYS if isinstance(r.get(k), (int, float)))
                 for r in records]
        atomic_write_text(text_path, "\n".join(lines) + "\n")
        print0("re-id evaluation: " + lines[-1])
