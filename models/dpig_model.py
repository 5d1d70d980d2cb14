"""DPIG: disentangled person image generation, the four training runs and the transfer test.

Paper: Ma, Sun, Georgoulis, Van Gool, Schiele, Fritz, "Disentangled Person Image Generation", CVPR 2018. Official
TF code: charliememory/Disentangled-Person-Image-Generation (`trainer.py` Market, `trainer_256.py` DeepFashion,
`tester.py`). Options: models/dpig_options.py; networks: models/networks/dpig_*.py; docs/models/dpig.md.

One run per `--dpig_stage` (TF `train()` loops):
- 1a: e = E(x, boxes, vis[, M]); Ĝ = G(tile(e), P(x)); L_G = BCE(D(Ĝ), 1) + lambda_l1 mean|Ĝ - x|;
  L_D = ½ [BCE(D(Ĝ), 0) + BCE(D(x), 1)]. Per iteration one E+G step, then one D step (iteration 0: the D step
  only, as TF). The D step judges the fakes of the G step of the same iteration (detached: one batch per
  iteration, as PG2 here); at iteration 0 they are made under no_grad.
- 1b: L = lambda_pose mse(PoseD(PoseE(k)), k) on the pose vector k; iteration 0 takes no step (TF `if step>0`),
  its loss is only logged.
- 2a / 2b: the frozen 1a encoder E / 1b pose encoder (eval, no grad, loaded by run name) gives the real embeddings;
  per factor (Market 2a: fg, then bg) one mapping step L = -mean D_k(Φ_k(z)) (skipped at iteration 0), then
  --critic_iters critic steps L = mean D_k(Φ_k(z)) - mean D_k(e_k), each followed by clipping to ±--clip_value.
  Real batches (--critic_reals): every critic step draws a fresh batch of training images, as TF pulls one from
  its queue per critic step (fresh: loaded and encoded; cache: encoded once at the start, models/dpig_critic_reals.py);
  loader: every critic step of an iteration reuses the loader batch (cheapest, not TF's rule).
Every rate is halved after each --lr_update_step iterations (`schedulers.iteration_halving_scheduler`, stepped
after every iteration; the counter is the iteration index and resumes with the training state).

Test (`--dpig_task transfer`): Ĝ = render(appearance(from image, from keypoints, from mask), to keypoints);
test.py saves `<from>_2_<to>_vis.jpg`. `--dpig_task sample | interpolate`: models/dpig_tasks.py.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import dpig_options
from models.base_model import BaseModel, LossTerms, MicroBatch, unwrap
from models.dpig_critic_reals import CriticRealDraws
from models.dpig_tasks import DPIGTasksMixin
from models.networks.dpig_critic import DPIGCritic
from models.networks.dpig_discriminator import DPIGDiscriminator
from models.networks.dpig_encoder import DPIGEncoder, tile_embedding
from models.networks.dpig_mapping import FACTORS as FACTOR_SIZES
from models.networks.dpig_mapping import NOISE_STD, DPIGMapping
from models.networks.dpig_parts import decoded_pose_to_keypoints, disc_pose_map, part_boxes, pose_vector
from models.networks.dpig_pose_autoencoder import DPIGPoseDecoder, DPIGPoseEncoder
from models.networks.pg2_generator_stage1 import PG2GeneratorStage1
from models.networks.schedulers import iteration_halving_scheduler, step_iteration_schedulers
from models.networks.tf_rmsprop import make_rmsprop
from util.checkpoint import load_weights, save_weights
from util.distributed import print0
from util.io import InputError
from util.pose_drawing import draw_skeleton

G_DEPTH, G_Z_DIM = 5, 64  # PG2's G1 layout with R = 5 on both datasets, bottleneck 64
PART_DIMS, BG_DIM = 7 * 32, 128


def stage_networks(stage: str, data_format: str) -> tuple[str, ...]:
    """The networks a stage's run saves and a later run reads from it (test time, or frozen in stage II)."""
    if stage == "1a":
        return ("E", "G")
    if stage == "1b":
        return ("PoseE", "PoseD")
    if stage == "2a":
        return tuple(f"Phi_{f}" for f in dpig_options.FACTORS[data_format])
    return ("Phi_pose",)


def build_network(opt, name: str) -> nn.Module:
    """A freshly initialised DPIG network by its model name, for the options' dataset and frame."""
    (h, w), n, market = dpig_options.frame_size(opt), opt.ngf, opt.data_format == "market"
    if name == "E":
        if market:
            return DPIGEncoder.market(h, w, n)
        if getattr(opt, "tf_df_stage2_roi48", False):  # TF trainer_256.py's II-a encoder: 48x48 ROIs (the same
            return DPIGEncoder(h, w, split_background=False, roi_size=48, roi_blocks=7, ngf=n)  # weights either way)
        return DPIGEncoder.fashion(h, w, n)
    if name == "G":
        return PG2GeneratorStage1(h, w, G_DEPTH, n, G_Z_DIM, image_channels=PART_DIMS + (BG_DIM if market else 0))
    if name == "D":
        tf_head = not market and opt.fashion_frame == "pad256"
        return DPIGDiscriminator(h, w, tf_reshape=tf_head, ndf=opt.ndf)
    if name == "PoseE":
        return DPIGPoseEncoder()
    if name == "PoseD":
        return DPIGPoseDecoder()
    if name.startswith("Phi_"):
        return DPIGMapping.for_factor(name[4:])
    if name.startswith("D_"):
        return DPIGCritic(FACTOR_SIZES[name[2:]][0])
    raise ValueError(f"unknown DPIG network {name!r}")


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Sigmoid cross-entropy on logits, averaged over every logit (DeepFashion: the 8 of each image)."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), target))


class DPIGModel(DPIGTasksMixin, BaseModel):
    """DPIG, one training stage or a test task; see the module docstring.

    API (also used by models/dpig_tasks.py):
    - networks `netE` (appearance encoder), `netG`, `netD` (training 1a only), `netPoseE`, `netPoseD`,
      `netPhi_fg`, `netPhi_bg` (Market) / `netPhi_app` (DeepFashion), `netPhi_pose`, critics `netD_fg`,
      `netD_bg`, `netD_app`, `netD_pose` (training 2a / 2b only): only those the stage or task uses exist;
      at test time each is loaded from the run of the stage that trained it (`dpig_options.stage_run`);
    - `appearance(image, keypoints, mask) -> e` (B, 352 | 224); `split_appearance(e) -> {factor: tensor}`,
      `join_appearance(parts) -> e`;
    - `render(e, keypoints) -> image` (B, 3, H, W), the disc map of `keypoints` through G;
    - `encode_pose(keypoints) -> (B, 32)`, `decode_pose(e_pose) -> keypoints (B, 18, 2)`;
    - `sample_factor(name, count, generator=None) -> Φ_name(z)`, z ~ N(0, 0.2²) drawn on the CPU.
    """

    modify_commandline_options = staticmethod(dpig_options.add_options)
    derive_options = staticmethod(dpig_options.derive_options)

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.data_format = opt.data_format
        self.height, self.width = dpig_options.frame_size(opt)
        self.stage = opt.dpig_stage if self.is_train else None
        self.factors = dpig_options.FACTORS[self.data_format]
        if opt.ngf not in (None, dpig_options.PAPER_NGF):
            print0(f"note: --ngf {opt.ngf} builds a reduced DPIG, not the paper's network (n = "
                   f"{dpig_options.PAPER_NGF})")
        self.source_image = self.source_keypoints = self.source_mask = self.target_keypoints = None
        self.fake = self.pose_reconstructed = None
        self.roi48 = bool(getattr(opt, "tf_df_stage2_roi48", False))
        self.critic_draws: CriticRealDraws | None = None  # stage II, from start_of_training
        self.visual_names = []
        if self.is_train:
            self.build_training(self.stage)
        else:
            self.build_test()

    # --- construction ----------------------------------------------------------------------------------

    def build(self, name: str) -> nn.Module:
        return build_network(self.opt, name)

    @staticmethod
    def prepare_benchmark(opt) -> None:
        """Stage II reads a frozen stage-I network (2a: E, 2b: PoseE): write a freshly initialised one where
        the run reads it, so scripts/bench_train.py can time the stage."""
        if opt.is_train and opt.dpig_stage in ("2a", "2b"):
            earlier = dpig_options.STAGE_TABLE[opt.dpig_stage].loads
            name = "E" if opt.dpig_stage == "2a" else "PoseE"
            run, epoch = dpig_options.stage_run(opt, earlier)
            save_weights(build_network(opt, name), Path(opt.checkpoints_dir) / run / f"{epoch}_net_{name}.pth")

    def add_network(self, name: str, trained: bool) -> nn.Module:
        net = self.prepare(self.build(name), trained=trained)
        setattr(self, "net" + name, net)
        return net

    def adam(self, *nets: nn.Module) -> torch.optim.Adam:
        params = [p for net in nets for p in net.parameters()]
        return torch.optim.Adam(params, lr=self.opt.lr, betas=(self.opt.beta1, dpig_options.ADAM_BETAS[1]))

    def build_training(self, stage: str) -> None:
        opt = self.opt
        if stage == "1a":
            self.model_names = ["E", "G", "D"]
            for name in self.model_names:
                self.add_network(name, trained=True)
            self.loss_names = ["G_gan", "G_l1", "D_real", "D_fake"]
            self.visual_names = ["source_image", "fake"]
            self.optimizer_G = self.adam(self.netE, self.netG)
            self.optimizer_D = self.adam(self.netD)
            self.optimizers = [self.optimizer_G, self.optimizer_D]
        elif stage == "1b":
            self.model_names = ["PoseE", "PoseD"]
            for name in self.model_names:
                self.add_network(name, trained=True)
            self.loss_names = ["pose_mse"]
            self.visual_names = ["pose_real", "pose_reconstructed"]
            self.optimizer_pose = self.adam(self.netPoseE, self.netPoseD)
            self.optimizers = [self.optimizer_pose]
        else:
            frozen = "E" if stage == "2a" else "PoseE"
            net = self.add_network(frozen, trained=False)
            self.load_stage_network(dpig_options.STAGE_TABLE[stage].loads, frozen, net)
            self.set_requires_grad(net, False)
            net.eval()
            factors = self.factors if stage == "2a" else ("pose",)
            self.stage_factors = factors
            self.model_names, self.loss_names, self.factor_optimizers = [], [], {}
            for f in factors:
                phi, critic = self.add_network(f"Phi_{f}", True), self.add_network(f"D_{f}", True)
                self.model_names += [f"Phi_{f}", f"D_{f}"]
                self.loss_names += [f"Phi_{f}", f"D_{f}"]
                self.factor_optimizers[f] = (make_rmsprop(phi.parameters(), opt.lr, opt.rmsprop),
                                             make_rmsprop(critic.parameters(), opt.lr, opt.rmsprop))
                self.optimizers += list(self.factor_optimizers[f])

    def build_test(self) -> None:
        names = []
        for stage in dpig_options.needed_stages(self.opt):
            names += stage_networks(stage, self.data_format)
        self.model_names = names
        for name in names:
            self.add_network(name, trained=False)
        self.visual_names = ["source_image", "fake"]

    # --- weights -----------------------------------------------------------------------------------------

    def stage_weight_path(self, stage: str, name: str) -> Path:
        run, epoch = dpig_options.stage_run(self.opt, stage)
        return Path(self.opt.checkpoints_dir) / run / f"{epoch}_net_{name}.pth"

    def load_stage_network(self, stage: str, name: str, net: nn.Module) -> None:
        """Load net `name` strictly from the run of `stage`; a missing file is one InputError naming it and the
        flags that point at that run."""
        path = self.stage_weight_path(stage, name)
        if not path.is_file():
            doing = (f"--dpig_stage {self.stage}" if self.is_train else f"--dpig_task {self.opt.dpig_task}")
            raise InputError(f"DPIG {doing} needs net {name} of stage {stage}: {path} does not exist; train it "
                             f"with --dpig_stage {stage} or point --stage{stage}_name / --stage{stage}_epoch at "
                             "the run that holds it")
        load_weights(net, path)
        print0(f"DPIG: net {name} (stage {stage}) loaded from {path}")

    def load_networks(self, tag: str | int, names: list[str] | None = None) -> None:
        """Test time: every network from the run of the stage that trained it (`tag` is that run's
        --stage*_epoch, which defaults to --which_epoch); training: BaseModel's load from this run."""
        if self.is_train:
            super().load_networks(tag, names)
            return
        for stage in dpig_options.needed_stages(self.opt):
            for name in stage_networks(stage, self.data_format):
                if names is None or name in names:
                    self.load_stage_network(stage, name, getattr(self, "net" + name))

    # --- schedule ----------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Training: one per-iteration halving scheduler per optimiser (--lr_update_step); test: load, eval."""
        if self.is_train:
            self.schedulers = [iteration_halving_scheduler(o, self.opt.lr_update_step) for o in self.optimizers]
            if self.opt.verbose:
                self.print_networks()
            return
        super().setup()

    @property
    def iteration(self) -> int:
        """0-based index of the iteration about to run (the schedulers' counter: it resumes with the state)."""
        return self.schedulers[0].last_epoch if self.schedulers else 0

    def optimize_parameters(self) -> None:
        super().optimize_parameters()
        step_iteration_schedulers(self.schedulers)

    def update_learning_rate(self, metric: float | None = None) -> float:
        """Nothing per epoch: the rates halve per iteration (optimize_parameters)."""
        return self.optimizers[0].param_groups[0]["lr"] if self.optimizers else 0.0

    def train(self) -> None:
        super().train()
        for name in ("E", "PoseE"):  # the frozen stage-I encoders of stage II stay in eval mode
            if name not in self.model_names and hasattr(self, "net" + name):
                getattr(self, "net" + name).eval()

    # --- the API -----------------------------------------------------------------------------------------

    def appearance(self, image: torch.Tensor, keypoints: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """e (B, 352 | 224) of images (B, 3, H, W) with their network-frame keypoints (B, 18, 2) and, on Market,
        their foreground masks (B, 1, H, W); boxes and visibility from `part_boxes` (--part_margin)."""
        market = self.data_format == "market"
        boxes, vis = part_boxes(keypoints, self.height, self.width, self.data_format,
                                self.opt.part_margin if market else None)
        if self.roi48:
            vis = torch.ones_like(vis)  # TF trainer_256.py II-a: no visibility mask
        if market and mask is None:
            raise InputError("DPIG on Market needs the foreground mask of the appearance image (the dataset's "
                             "--mask_recipe dpig: batch['source_mask'])")
        return self.netE(image, boxes, vis.to(image.device), mask if market else None)

    def split_appearance(self, e: torch.Tensor) -> dict[str, torch.Tensor]:
        """Market {fg (B, 224), bg (B, 128)}; DeepFashion {app (B, 224)}."""
        if self.data_format == "market":
            return {"fg": e[:, :PART_DIMS], "bg": e[:, PART_DIMS:]}
        return {"app": e}

    def join_appearance(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([parts[f] for f in self.factors], dim=1)

    def render(self, e: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """G(tile(e), disc map of `keypoints`): (B, 3, H, W), not clamped."""
        pose = disc_pose_map(keypoints.to(e.device), self.height, self.width).to(e.dtype)
        return self.netG(tile_embedding(e, self.height, self.width), pose)

    def encode_pose(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, 18, 2) network-frame keypoints -> pose embedding (B, 32)."""
        return self.netPoseE(pose_vector(keypoints, self.height, self.width).to(self.device))

    def decode_pose(self, e_pose: torch.Tensor) -> torch.Tensor:
        """pose embedding (B, 32) -> int64 keypoints (B, 18, 2), -1 where the decoded visibility is 0."""
        decoded = self.netPoseD(e_pose).view(e_pose.shape[0], -1, 3)
        return decoded_pose_to_keypoints(decoded, self.height, self.width)

    def sample_factor(self, name: str, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Φ_name(z), z ~ N(0, 0.2²·I) of shape (count, d), drawn on the CPU (from `generator` if given)."""
        phi = getattr(self, f"netPhi_{name}", None)
        if phi is None:
            raise InputError(f"DPIG has no mapping for factor {name!r} in this run (mappings: "
                             f"{', '.join(n[4:] for n in self.model_names if n.startswith('Phi_')) or 'none'})")
        z = torch.randn(count, unwrap(phi).dim, generator=generator) * NOISE_STD
        return phi(z.to(self.device))

    # --- the loop's interface ----------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """The source side of each pair (stage I trains on single images, TF `image_raw_0`); at test also the
        target keypoints."""
        self.source_mask = self.target_keypoints = None
        keys = ("source_image", "source_keypoints", "source_mask")
        if not self.is_train:
            keys += ("target_keypoints",)
        self.keep_batch(batch, keys)
        frame = tuple(self.source_image.shape[-2:])
        if frame != (self.height, self.width):
            raise InputError(f"DPIG was built for {self.height}x{self.width} frames ({self.data_format}), the batch "
                             f"has {frame[0]}x{frame[1]}")

    def forward(self) -> None:
        """Transfer: Ĝ = render(appearance(from), to keypoints); in stage 1a the target is the source itself."""
        keypoints = self.source_keypoints if self.is_train else self.target_keypoints
        e = self.appearance(self.source_image, self.source_keypoints, self.source_mask)
        self.fake = self.render(e, keypoints)

    def test(self) -> None:
        """Transfer only: the sample and interpolate writers compute their own outputs."""
        if getattr(self.opt, "dpig_task", "transfer") == "transfer":
            super().test()

    def generated_images(self) -> torch.Tensor:
        return self.fake

    def training_iteration(self) -> None:
        if self.stage == "1a":
            fakes = self.optimize_generator() if self.iteration > 0 else []
            self.optimize_discriminator(fakes)
        elif self.stage == "1b":
            self.optimize_pose_autoencoder()
        else:
            self.optimize_mappings()

    # --- stage 1a ----------------------------------------------------------------------------------------

    def d_logits(self, net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(real logits, fake logits): two passes (--d_batching separate) or one over cat([x; Ĝ]) (concat)."""
        if self.opt.d_batching == "concat":
            return net_d(torch.cat([real, fake])).split(real.shape[0])
        return net_d(real, fake)

    def optimize_generator(self) -> list[torch.Tensor]:
        """E + G step on L_G with D frozen; returns the detached Ĝ of each micro-batch for the D step."""
        net_d = unwrap(self.netD)
        fakes: list[torch.Tensor] = []

        def compute(micro: MicroBatch) -> LossTerms:
            self.forward()
            if self.opt.d_batching == "concat":
                fake_logits = self.d_logits(net_d, self.source_image, self.fake)[1]
            else:
                fake_logits = net_d(self.fake)
            fakes.append(self.fake.detach())
            gan, l1 = bce(fake_logits, 1.0), (self.fake.float() - self.source_image.float()).abs().mean()
            return gan + self.opt.lambda_l1 * l1, {"G_gan": gan, "G_l1": l1}

        with self.frozen(net_d):
            self.train_step(self.optimizer_G, compute)
        return fakes

    def optimize_discriminator(self, fakes: list[torch.Tensor]) -> None:
        """D step on ½ [BCE(D(Ĝ), 0) + BCE(D(x), 1)]; iteration 0 (no G step) makes Ĝ under no_grad."""

        def compute(micro: MicroBatch) -> LossTerms:
            if fakes:
                fake = fakes[micro.index]
            else:
                with torch.no_grad():
                    self.forward()
                fake = self.fake
            real_logits, fake_logits = self.d_logits(self.netD, self.source_image, fake)
            real, fake_term = bce(real_logits, 1.0), bce(fake_logits, 0.0)
            return 0.5 * (real + fake_term), {"D_real": real, "D_fake": fake_term}

        self.train_step(self.optimizer_D, compute)

    # --- stage 1b ----------------------------------------------------------------------------------------

    def pose_terms(self, micro: MicroBatch | None = None) -> LossTerms:
        k = pose_vector(self.source_keypoints, self.height, self.width)
        k_hat = self.netPoseD(self.netPoseE(k))
        self.pose_reconstructed = k_hat.detach()
        mse = F.mse_loss(k_hat.float(), k)
        return self.opt.lambda_pose * mse, {"pose_mse": mse}

    def optimize_pose_autoencoder(self) -> None:
        """One step on lambda_pose · mse; at iteration 0 TF takes none (`if step>0`): the loss is only logged."""
        if self.iteration > 0:
            self.train_step(self.optimizer_pose, self.pose_terms)
            return
        with torch.no_grad(), self.autocast():
            _, terms = self.pose_terms()
        self.losses.update({k: v.detach() for k, v in terms.items()})

    # --- stage II ----------------------------------------------------------------------------------------

    def start_of_training(self, iterations_per_epoch: int, dataset) -> None:
        """Stage II with --critic_reals fresh | cache: the critics draw their real batches from `dataset`."""
        if self.stage in ("2a", "2b") and self.opt.critic_reals != "loader":
            self.critic_draws = CriticRealDraws(dataset, self.real_embeddings, self.opt.batch_size, self.opt.seed,
                                                self.ctx.rank, cache=self.opt.critic_reals == "cache",
                                                show_progress=self.ctx.is_main)

    def real_embeddings(self, batch: dict) -> dict[str, torch.Tensor]:
        """The frozen encoder's embeddings of a batch's source images (or poses), per factor (float32, no grad)."""
        keypoints = batch["source_keypoints"].to(self.device)
        with torch.no_grad(), self.autocast():
            if self.stage == "2a":
                mask = batch.get("source_mask")
                parts = self.split_appearance(self.appearance(batch["source_image"].to(self.device), keypoints,
                                                              None if mask is None else mask.to(self.device)))
            else:
                parts = {"pose": self.encode_pose(keypoints)}
        return {f: v.float().detach() for f, v in parts.items()}

    def critic_reals(self, factor_index: int, step: int) -> dict[str, torch.Tensor]:
        """The real embeddings of one critic step: a fresh draw (fresh | cache) or the loader batch (loader)."""
        if self.opt.critic_reals == "loader":
            if self._loader_reals is None:
                self._loader_reals = self.real_embeddings({"source_image": self.source_image,
                                                           "source_keypoints": self.source_keypoints,
                                                           "source_mask": self.source_mask})
            return self._loader_reals
        if self.critic_draws is None:
            raise RuntimeError("DPIG stage II draws its critics' real batches from the training set: call "
                               "start_of_training(iterations_per_epoch, dataset) first (train.py does)")
        return self.critic_draws.draw(self.iteration, factor_index, step)

    def optimize_mappings(self) -> None:
        """Per factor: one Φ step (not at iteration 0), then --critic_iters critic steps, each clipped."""
        self._loader_reals = None
        count = self.source_keypoints.shape[0]
        for factor_index, factor in enumerate(self.stage_factors):
            phi, critic = getattr(self, f"netPhi_{factor}"), getattr(self, f"netD_{factor}")
            opt_phi, opt_critic = self.factor_optimizers[factor]
            dim = unwrap(phi).dim
            if self.iteration > 0:
                bare = unwrap(critic)
                self.batch = {"z": torch.randn(count, dim, device=self.device) * NOISE_STD}
                self.use_part(slice(None))

                def mapping_terms(micro: MicroBatch, phi=phi, bare=bare, factor=factor) -> LossTerms:
                    loss = -bare(phi(self.z)).float().mean()
                    return loss, {f"Phi_{factor}": loss}

                with self.frozen(bare):
                    self.train_step(opt_phi, mapping_terms)
            for step in range(self.opt.critic_iters):
                real = self.critic_reals(factor_index, step)[factor]
                self.batch = {"z": torch.randn(real.shape[0], dim, device=self.device) * NOISE_STD, "real": real}
                self.use_part(slice(None))

                def critic_terms(micro: MicroBatch, phi=phi, critic=critic, factor=factor) -> LossTerms:
                    with torch.no_grad():
                        fake = phi(self.z)
                    loss = critic(fake).float().mean() - critic(self.real).float().mean()
                    return loss, {f"D_{factor}": loss}

                self.train_step(opt_critic, critic_terms)
                unwrap(critic).clip_(self.opt.clip_value)

    # --- reporting ---------------------------------------------------------------------------------------

    def get_current_visuals(self) -> "OrderedDict[str, torch.Tensor]":
        """1a / test: source and output; 1b: the first pose and its reconstruction drawn as skeletons; stage II
        nothing (no images are generated)."""
        if self.stage != "1b":
            return super().get_current_visuals()
        if self.source_keypoints is None or self.pose_reconstructed is None:
            return OrderedDict()
        decoded = self.pose_reconstructed[:1].view(1, -1, 3)
        poses = {"pose_real": self.source_keypoints[:1].cpu(),
                 "pose_reconstructed": decoded_pose_to_keypoints(decoded, self.height, self.width).cpu()}
        return OrderedDict((k, np.ascontiguousarray(draw_skeleton(v[0].numpy(), self.height, self.width)))
                           for k, v in poses.items())
