"""LGAN: the latent GAN of RL-GAN-Net, trained on PG2's global feature vectors (GFVs).

Paper: Sarmad, Lee, Kim, "RL-GAN-Net: A Reinforcement Learning Agent Controlled GAN Network for Real-Time Point
Cloud Shape Completion", CVPR 2019 (arXiv 1904.12304); official code iSarmad/RL-GAN-Net (`GAN/`). The PG2 version:
kevinleewy/Human-Pose-Transfer branch RL-GAN-NET, `implementations/LGAN/`. Options: models/lgan_options.py;
networks: models/networks/lgan_generator.py, lgan_discriminator.py, sagan_attention.py; losses:
models/networks/lgan_losses.py; data: data/gfv_dataset.py; docs/models/lgan.md.

G maps z ~ N(0, I) to a GFV in (-1, 1); D is a WGAN critic. One iteration, in KLW's order, --d_iters times: a D
step on -mean D(x) + mean D(G(z)), then a separate D step on lambda_gp * mean((||grad D(x̂)|| - 1)^2) with
x̂ = a x + (1 - a) G(z) (the same G(z), a ~ U(0, 1) per sample); then a G step on -mean D(G(z')), fresh z'.
test.py writes one generated GFV per row of the --gfv_dir store into a new store (util/gfv_store.py), which
PG2's --decode_gfv_dir turns into images.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from models import lgan_options
from models.base_model import BaseModel, LossTerms, MicroBatch, unwrap
from models.networks.lgan_discriminator import LGANDiscriminator
from models.networks.lgan_generator import LGANGenerator, check_gfv_shape
from models.networks.lgan_losses import LOSS_NAMES, critic_terms, generator_term, gradient_penalty
from util.checkpoint import read_checkpoint, strip_wrapper_prefixes
from util.distributed import print0
from util.gfv_store import GFVStore, GFVStoreWriter
from util.io import InputError
from util.weights import file_sha256

EPS = 1e-8  # smallest scale a normalisation divides by (a constant channel)


class GFVScale(nn.Module):
    """Per-channel affine map between stored GFVs and G's range: normalize(x) = (x - offset) / scale.

    Built from the training store's statistics (--gfv_normalize) and saved with the weights as net_S, so that
    test.py de-normalises G's output with exactly the numbers training normalised with. `none` is the identity.
    """

    MODES = lgan_options.NORMALIZE

    def __init__(self, channels: int, mode: str = "none", stats: dict | None = None) -> None:
        super().__init__()
        offset, scale = torch.zeros(channels), torch.ones(channels)
        if mode != "none":
            low, high = self.channel_stats(stats, channels, ("min", "max") if mode == "minmax" else ("mean", "std"))
            offset, scale = ((high + low) / 2, (high - low) / 2) if mode == "minmax" else (low, high)
            scale = scale.clamp_min(EPS)
        self.register_buffer("offset", offset.reshape(channels, 1, 1))
        self.register_buffer("scale", scale.reshape(channels, 1, 1))
        self.register_buffer("mode_index", torch.tensor(self.MODES.index(mode)))

    @staticmethod
    def channel_stats(stats: dict | None, channels: int, keys: tuple[str, str]) -> tuple[torch.Tensor, ...]:
        values = []
        for key in keys:
            column = (stats or {}).get(key)
            if not isinstance(column, list) or len(column) != channels:
                raise InputError(f"gfv_meta.json stats.{key} must list {channels} per-channel values for "
                                 f"--gfv_normalize; got {column!r:.60}")
            values.append(torch.tensor(column, dtype=torch.float64).float())
        return tuple(values)

    @property
    def mode(self) -> str:
        return self.MODES[int(self.mode_index)]

    def normalize(self, gfv: torch.Tensor) -> torch.Tensor:
        return (gfv - self.offset) / self.scale

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        return values * self.scale + self.offset


def mean_map(gfv: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (H, W): the channel mean, what the HTML page shows of a GFV."""
    return gfv.detach().float().mean(dim=0)


class LGANModel(BaseModel):
    """KLW's SAGAN-style WGAN-GP on GFVs: G (z -> GFV) and, for training, the critic D."""

    modify_commandline_options = staticmethod(lgan_options.add_options)
    derive_options = staticmethod(lgan_options.derive_options)

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        if self.is_train and ctx.distributed:
            raise InputError("--model LGAN trains in one process: under torchrun the penalty step's double backward "
                             "gives D's last bias no gradient, which DistributedDataParallel cannot reduce")
        self.store = GFVStore(opt.gfv_dir)
        self.gfv_shape = tuple(self.store.shape)
        check_gfv_shape(self.gfv_shape)
        self.gfv = self.z = self.fake = self.test_z = None
        self.netG = self.prepare(LGANGenerator(self.gfv_shape, opt.lgan_z_dim), trained=self.is_train)
        mode = opt.gfv_normalize if self.is_train else "none"  # at test time net_S comes from the checkpoint
        self.netS = GFVScale(self.gfv_shape[0], mode, self.store.meta.get("stats")).to(self.device)
        self.model_names = ["G", "S"]
        self.visual_names = ["real_gfv_mean", "fake_gfv_mean"]
        if not self.is_train:
            return
        self.netD = self.prepare(LGANDiscriminator(self.gfv_shape), trained=True)
        self.model_names = ["G", "D", "S"]
        self.loss_names = list(LOSS_NAMES)
        betas = (opt.beta1, opt.beta2)
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=betas)
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=opt.lr, betas=betas)
        self.optimizers = [self.optimizer_G, self.optimizer_D]
        if mode != "none":
            print0(f"LGAN: real GFVs are normalised ({mode}) with the statistics of {self.store.folder}")

    # --- the loop's interface --------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """Training: the real GFVs (B, C, H, W), normalised by net_S. Testing: z of each row from `test_z`."""
        if self.is_train:
            self.keep_batch(batch, ("gfv",))
            self.batch["gfv"] = self.netS.normalize(self.batch["gfv"].float())
            self.use_part(slice(None))
        else:
            self.image_paths = list(zip(batch["source_name"], batch["target_name"]))
            if self.test_z is None:
                raise RuntimeError("LGAN test: call test_writer(dataset) before set_input (it draws the z's)")
            self.z = self.test_z[batch["index"].to(self.test_z.device)]

    def sample_z(self, count: int) -> torch.Tensor:
        """z ~ N(0, I), (count, z_dim), from the global (seeded, checkpointed) generator."""
        return torch.randn(count, self.opt.lgan_z_dim, device=self.device)

    def forward(self) -> None:
        """G(z): (B, C, H, W) in (-1, 1), the normalised GFV scale."""
        self.fake = self.netG(self.z)

    def generated_images(self) -> torch.Tensor:
        raise InputError("--model LGAN generates GFVs, not images: decode them with test.py --model PG2 "
                         "--decode_gfv_dir <the LGAN's output store> (docs/models/lgan.md)")

    def generated_gfvs(self) -> torch.Tensor:
        """The last G(z) on the stored GFV scale (de-normalised by net_S), float32."""
        return self.netS.denormalize(self.fake.float())

    def training_iteration(self) -> None:
        """--d_iters x (Wasserstein D step, penalty D step), then the G step: KLW's order."""
        for _ in range(self.opt.d_iters):
            fake = self.optimize_critic()
            self.optimize_penalty(fake)
        self.optimize_generator()

    def optimize_critic(self) -> torch.Tensor:
        """D step on -mean D(x) + mean D(G(z)); returns this G(z) (detached) for the penalty step."""
        made: list[torch.Tensor] = []

        def compute(micro: MicroBatch) -> LossTerms:
            with torch.no_grad():  # G gets no gradient from D's loss (KLW zeroes it before G's step)
                self.z = self.sample_z(self.gfv.shape[0])
                made.append(self.netG(self.z))
            terms = critic_terms(self.netD(self.gfv), self.netD(made[-1]))
            return terms["D_real"] + terms["D_fake"], terms

        self.train_step(self.optimizer_D, compute)
        return made[-1]

    def optimize_penalty(self, fake: torch.Tensor) -> None:
        """The separate D step on the gradient penalty at x̂ = a x + (1 - a) G(z), a ~ U(0, 1) per sample."""
        critic = unwrap(self.netD)  # double backward: not through torch.compile (nor DDP, refused in __init__)

        def compute(micro: MicroBatch) -> LossTerms:
            alpha = torch.rand(self.gfv.shape[0], 1, 1, 1, device=self.device)
            penalty = self.opt.lambda_gp * gradient_penalty(critic, self.gfv, fake, alpha)
            return penalty, {"D_gp": penalty}

        self.train_step(self.optimizer_D, compute)

    def optimize_generator(self) -> None:
        """G step on -mean D(G(z')) with fresh z'; D is frozen (the bare module: no DDP sync, no gradients)."""
        net_d = unwrap(self.netD)

        def compute(micro: MicroBatch) -> LossTerms:
            self.z = self.sample_z(self.gfv.shape[0])
            self.forward()
            loss = generator_term(net_d(self.fake))
            return loss, {"G": loss}

        with self.frozen(net_d):
            self.train_step(self.optimizer_G, compute)

    # --- reporting -------------------------------------------------------------------------------------

    def get_current_visuals(self) -> "OrderedDict[str, torch.Tensor]":
        """The channel means of the first real and generated GFV (normalised scale) as grey (1, 3, H, W) images
        in [-1, 1], both mapped with one range (the pair's joint min and max) so they compare."""
        if self.gfv is None or self.fake is None:
            return OrderedDict()
        real, fake = mean_map(self.gfv[0]), mean_map(self.fake[0])
        low, high = torch.minimum(real.min(), fake.min()), torch.maximum(real.max(), fake.max())
        span = (high - low).clamp_min(EPS)
        grey = [((m - low) / span * 2 - 1).expand(1, 3, *m.shape) for m in (real, fake)]
        return OrderedDict(zip(self.visual_names, grey))

    # --- weights ---------------------------------------------------------------------------------------

    def load_networks(self, tag: str | int, names: list[str] | None = None) -> None:
        """Load strictly; a G built for another z size or GFV shape names both and the flag or store at fault."""
        path = self.weight_path(str(tag), "G")
        if path.is_file():
            saved = strip_wrapper_prefixes(read_checkpoint(path))
            built = unwrap(self.netG).state_dict()
            wrong = [k for k in built if k in saved and tuple(saved[k].shape) != tuple(built[k].shape)]
            if wrong:
                first = saved.get("l1.0.parametrizations.weight.original")
                last = saved.get("last.0.weight")
                trained = (f"z_dim {first.shape[0] if first is not None else '?'}, "
                           f"{last.shape[1] if last is not None else '?'} channels, last kernel "
                           f"{tuple(last.shape[2:]) if last is not None else '?'}")
                raise InputError(f"{path}: its G was trained with {trained}; --lgan_z_dim {self.opt.lgan_z_dim} and "
                                 f"the GFV shape {self.gfv_shape} of {self.store.folder} build another "
                                 f"(mismatched: {', '.join(wrong[:3])})")
        super().load_networks(tag, names)
        if not self.is_train and self.netS.mode != "none":
            print0(f"LGAN: generated GFVs are de-normalised with the trained {self.netS.mode} statistics (net_S)")

    # --- test.py's output ------------------------------------------------------------------------------

    def test_writer(self, dataset) -> "LGANWriter":
        """A GFV store of one G(z) per row of the --gfv_dir store; z of row i = row i of N(0, I) draws (N rows,
        z_dim columns) from a torch.Generator seeded with --seed."""
        generator = torch.Generator().manual_seed(self.opt.seed)
        self.test_z = torch.randn(len(dataset), self.opt.lgan_z_dim, generator=generator).to(self.device)
        return LGANWriter(self, dataset)


class LGANWriter:
    """Writes G's GFVs through GFVStoreWriter into --results_dir (default results/<name>/gfv_lgan_<phase>/), with
    the input store's (from, to) rows, dtype and pack."""

    def __init__(self, model: LGANModel, dataset) -> None:
        opt, store = model.opt, model.store
        self.total = int(min(opt.how_many, len(dataset)))
        checkpoints = {}
        for name in ("G", "S"):
            path = model.weight_path(str(opt.which_epoch), name)
            checkpoints[name] = {"path": str(path.resolve()), "sha256": file_sha256(path, prefix=64)}
        meta = {
            "source": "lgan",
            "gfv_source": store.meta.get("gfv_source", store.source),
            "phase": store.phase,
            "provenance": {
                "lgan_checkpoint": checkpoints,
                "lgan_z": {"z_dim": opt.lgan_z_dim, "seed": opt.seed,
                           "rule": "row i: row i of torch.randn(N, z_dim) from torch.Generator().manual_seed(seed)"},
                "gfv_normalize": model.netS.mode,
                "input_store": {"folder": str(store.folder.resolve()), "source": store.source,
                                "count": len(store), "provenance": store.meta.get("provenance")},
            },
        }
        self.writer = GFVStoreWriter(opt.results_dir, model.gfv_shape, store.meta["dtype"], self.total, store.pack,
                                     meta, overwrite=opt.overwrite)

    @property
    def count(self) -> int:
        return self.writer.count

    def write(self, batch: dict, model: LGANModel) -> None:
        gfvs = model.generated_gfvs().cpu().numpy()  # (B, C, H, W), the stored scale
        for source, target, gfv in zip(batch["source_name"], batch["target_name"], gfvs):
            self.writer.add(source, target, np.ascontiguousarray(gfv))

    def close(self) -> str:
        folder = self.writer.close()
        return f"wrote {self.count} generated GFVs to {folder} (decode: test.py --model PG2 --decode_gfv_dir {folder})"
