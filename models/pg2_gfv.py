"""PG2's global feature vectors (GFVs): export to a GFV store, decode from one (docs/gfv.md).

The GFV of the RL-GAN-Net fork of PG2 (kevinleewy/Human-Pose-Transfer, branch RL-GAN-NET, `generateGFV.py` and
`Generator2.getGFV` / `intercept_gfv`; after RL-GAN-Net, Sarmad et al., CVPR 2019, iSarmad/RL-GAN-Net) is the
output e_R of the stage-2 generator's encoder, one per (source, target) pair: 384@32x16 on Market. It is not
G1's 64-d fc bottleneck z, which `--gfv_source g1_z` exports instead.

test.py modes (flags added at test time by PG2's option hook):
- `--export_gfv`: one GFV per pair, in pair-file order, into a store (util/gfv_store.py);
- `--decode_gfv_dir DIR`: each pair's GFV from a store replaces the encoder output, and the decoded images are
  written as a normal test writes its results.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import torch

from util.checkpoint import unwrap
from util.gfv_store import DTYPES, PACKS, GFVStore, GFVStoreWriter, bytes_per_file, format_size
from util.io import InputError
from util.weights import file_sha256

SOURCES = ("g2_enc", "g1_z")
SKIP_MODES = ("keep", "replace")
MARKET_GFV_SHAPE = (384, 32, 16)  # G2 encoder output e_R on Market at the paper width n = 128 (n*R = 128*3)
MARKET_PAIRS = 263_632 + 12_000  # train + test pairs of the Market pair files
EXPORT_ONLY = ("gfv_source", "gfv_dtype", "gfv_pack", "gfv_dir")


def _market_sizes() -> str:
    f32, f16 = bytes_per_file(MARKET_GFV_SHAPE, "float32"), bytes_per_file(MARKET_GFV_SHAPE, "float16")
    return (f"one .npy per pair: Market 384x32x16 = {f32:,} B float32 ({f16:,} B float16); all "
            f"{MARKET_PAIRS:,} Market train+test pairs = {format_size(MARKET_PAIRS * f32)} float32")


def add_gfv_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """test.py flags of the GFV modes (--export_gfv, --decode_gfv_dir, ...)."""
    g = parser.add_argument_group(
        "PG2 global feature vectors (GFVs, docs/gfv.md)",
        "The GFV is G2's encoder output e_R (the RL-GAN-Net fork of PG2, kevinleewy/Human-Pose-Transfer branch "
        f"RL-GAN-NET), one per pair. Size before you export: {_market_sizes()}. The estimate is printed, and "
        "checked against the free disk space, before anything is written.")
    g.add_argument("--export_gfv", action="store_true",
                   help="write the GFV of every pair of --phase (pair-file order, no pair dropped, flip off) into "
                        f"a GFV store instead of images; {_market_sizes()}")
    g.add_argument("--gfv_source", type=str, default=None, choices=SOURCES,
                   help="with --export_gfv: g2_enc (default): G2's encoder output e_R, KLW's GFV (needs --stage "
                        "2); g1_z: G1's 64-d fc bottleneck z (384 B per float32 file; works with a stage-1 run)")
    g.add_argument("--gfv_dtype", type=str, default=None, choices=DTYPES,
                   help="with --export_gfv: stored dtype (default float32; float16 halves the size)")
    g.add_argument("--gfv_pack", type=str, default=None, choices=PACKS,
                   help="with --export_gfv: files (default): one .npy per pair; memmap: one (N, C, H, W) gfv.npy")
    g.add_argument("--gfv_legacy_names", action="store_true",
                   help="with --export_gfv --gfv_pack files: name files as KLW, <from>___<to>_vis.npy, instead "
                        "of <from stem>_2_<to stem>_gfv.npy")
    g.add_argument("--gfv_dir", type=str, default=None,
                   help="with --export_gfv: the store folder; default ./results/<name>/gfv_<source>_<phase>. "
                        "An existing export is replaced only with --overwrite (and only once the new one is "
                        "complete)")
    g.add_argument("--decode_gfv_dir", type=str, default=None,
                   help="decode mode: take each pair's GFV from this store (its gfv_meta.json says the source) "
                        "and write the decoded images as a normal test; default --results_dir "
                        "./results/<name>/decoded_<store folder name>_<skip mode>")
    g.add_argument("--gfv_skip_mode", type=str, default=None, choices=SKIP_MODES,
                   help="with --decode_gfv_dir (g2_enc stores): keep (default, KLW): the GFV replaces only the "
                        "input of G2's first decoder block, whose skip still carries the true e_R on Market; "
                        "replace: the GFV replaces e_R in that skip too")
    return parser


def derive_gfv_options(opt) -> None:
    """Check the GFV flags against each other and fill their defaults (test time; called by PG2's derive)."""
    export, decode = getattr(opt, "export_gfv", False), getattr(opt, "decode_gfv_dir", None)
    if not export and decode is None:
        needs = [f"--{k} needs --export_gfv" for k in EXPORT_ONLY if getattr(opt, k, None) is not None]
        needs += ["--gfv_legacy_names needs --export_gfv"] if getattr(opt, "gfv_legacy_names", False) else []
        needs += ["--gfv_skip_mode needs --decode_gfv_dir"] if getattr(opt, "gfv_skip_mode", None) else []
        if needs:
            raise InputError("; ".join(needs) + " (the GFV modes are off, so the flag would be ignored)")
        return
    if export and decode is not None:
        raise InputError("--export_gfv writes a GFV store and --decode_gfv_dir reads one: use one at a time")
    if getattr(opt, "canonical_poses", None) is not None:
        raise InputError("the GFV modes work on pairs; they contradict --canonical_poses")
    if export:
        if opt.gfv_skip_mode is not None:
            raise InputError("--gfv_skip_mode belongs to --decode_gfv_dir, not to --export_gfv")
        writes_images = {"--results_dir": opt.results_dir is not None, "--only_generated": opt.only_generated,
                         "--result_layout": opt.result_layout != "single", "--image_format": opt.image_format != "jpg",
                         "--num_panels": opt.num_panels != 200}
        given = [flag for flag, on in writes_images.items() if on]
        if given:
            raise InputError(f"--export_gfv writes no images, so {', '.join(given)} would be ignored; drop it "
                             "(the store folder is --gfv_dir)")
        opt.gfv_source = opt.gfv_source or "g2_enc"
        opt.gfv_dtype = opt.gfv_dtype or "float32"
        opt.gfv_pack = opt.gfv_pack or "files"
        if opt.gfv_legacy_names and opt.gfv_pack != "files":
            raise InputError("--gfv_legacy_names names one file per pair; it contradicts --gfv_pack memmap")
        if opt.gfv_source == "g2_enc" and opt.stage != 2:
            raise InputError("--gfv_source g2_enc is G2's encoder output: it needs --stage 2 (a stage-2 run); "
                             "a stage-1 run can export --gfv_source g1_z")
        if opt.gfv_dir is None:
            opt.gfv_dir = f"./results/{opt.name}/gfv_{opt.gfv_source}_{opt.phase}"
        return
    given = [f"--{k}" for k in EXPORT_ONLY if getattr(opt, k) is not None]
    given += ["--gfv_legacy_names"] if opt.gfv_legacy_names else []
    if given:
        raise InputError(f"{', '.join(given)} belong(s) to --export_gfv; --decode_gfv_dir takes the source, dtype "
                         "and layout from the store's gfv_meta.json")
    opt.gfv_skip_mode = opt.gfv_skip_mode or "keep"
    if opt.results_dir is None:
        # not the normal test folder: decoded images would mix with (and replace) the normal results
        opt.results_dir = f"./results/{opt.name}/decoded_{Path(decode).name}_{opt.gfv_skip_mode}"


def pairs_sha256(pairs) -> str:
    """SHA-256 of the pair list as used ("from,to" lines), which identifies it after --max_dataset_size too."""
    text = "".join(f"{a},{b}\n" for a, b in pairs)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pair_file_of(dataset, phase: str) -> Path | None:
    """The pair CSV a pair dataset read, where its class can say (market / fashion readers); else None."""
    path = getattr(dataset, "pairs_path", None)
    locate = getattr(type(dataset), "locate", None)
    if path is None and locate is not None and getattr(dataset, "root", None) is not None:
        path = locate(Path(dataset.root), phase)[1]
    return Path(path) if path is not None and Path(path).is_file() else None


class GFVExportWriter:
    """test.py's writer under --export_gfv: the model's GFV of each tested batch goes into a GFV store."""

    def __init__(self, model, dataset) -> None:
        opt = model.opt
        self.model = model
        self.count_expected = int(min(opt.how_many, len(dataset)))
        shape = model.gfv_shape(model.gfv_source)
        self.store = GFVStoreWriter(opt.gfv_dir, shape, opt.gfv_dtype, self.count_expected, opt.gfv_pack,
                                    model.gfv_provenance(dataset), overwrite=opt.overwrite,
                                    legacy_names=opt.gfv_legacy_names)

    @property
    def count(self) -> int:
        return self.store.count

    def write(self, batch: dict, model) -> None:
        gfvs = model.gfv.detach().float().cpu().numpy()  # (B, C, H, W) or (B, 64)
        for name_a, name_b, gfv in zip(batch["source_name"], batch["target_name"], gfvs):
            self.store.add(name_a, name_b, gfv)

    def close(self) -> str:
        folder = self.store.close()
        shape = "x".join(map(str, self.store.shape))
        return (f"wrote {self.store.count} GFVs ({self.model.gfv_source}, {shape} {self.store.dtype}, pack "
                f"{self.store.pack}) to {folder}")


class PG2GFVMixin:
    """encode_gfv / decode_gfv and the test-time GFV modes of PG2Model (it comes before BaseModel in the MRO)."""

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.gfv = None
        self.gfv_store: GFVStore | None = None
        self.export_gfv: bool = bool(getattr(opt, "export_gfv", False))
        self.gfv_source: str = getattr(opt, "gfv_source", None) or "g2_enc"
        self.gfv_skip_mode: str = getattr(opt, "gfv_skip_mode", None) or "keep"
        decode_dir = getattr(opt, "decode_gfv_dir", None)
        if self.export_gfv and ctx.distributed:
            raise InputError("--export_gfv runs in one process (the store is written in pair order); drop torchrun")
        if decode_dir is not None:
            self.gfv_store = GFVStore(decode_dir)
            # the space the GFVs live in: a latent GAN's output store names it as gfv_source (source "lgan")
            space = self.gfv_store.meta.get("gfv_source", self.gfv_store.source)
            self.gfv_source = "g1_z" if space == "g1_z" else "g2_enc"
            if self.gfv_source == "g2_enc" and opt.stage != 2:
                raise InputError(f"{decode_dir} holds G2-encoder GFVs (source {self.gfv_store.source}): decoding "
                                 "them needs --stage 2")
            if self.gfv_source == "g1_z" and self.gfv_skip_mode != "keep":
                raise InputError("--gfv_skip_mode replace concerns G2's e_R skip; a g1_z store has no such skip "
                                 f"({decode_dir})")
            if self.gfv_store.phase in ("train", "test") and self.gfv_store.phase != opt.phase:
                raise InputError(f"{decode_dir} holds {self.gfv_store.phase}-phase GFVs; pass --phase "
                                 f"{self.gfv_store.phase} to decode them")

    @property
    def decode_mode(self) -> bool:
        return self.gfv_store is not None

    # --- the model API ---------------------------------------------------------------------------------

    def encode_gfv(self, image: torch.Tensor, pose: torch.Tensor, source: str | None = None
                   ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """I_A (B, 3, H, W), P_B (B, 18, H, W) -> (GFV, skips, Ĝ1).

        source g2_enc: GFV = e_R of G2.encode(I_A, Ĝ1) (B, n*R, h, w), skips = G2's encoder outputs e_1..e_R;
        g1_z: GFV = G1's z (B, 64), skips = G1's encoder skips. Ĝ1 = G1(I_A, P_B) either way.
        """
        source = source or self.gfv_source
        g1 = unwrap(self.netG1)
        z, g1_skips = g1.encode(image, pose)
        coarse = g1.decode(z, g1_skips)  # Ĝ1
        if source == "g1_z":
            return z, g1_skips, coarse
        if source != "g2_enc":
            raise ValueError(f"GFV source must be one of {', '.join(SOURCES)}, got {source!r}")
        self.require_g2(source)
        gfv, features = unwrap(self.netG2).encode(image, coarse)
        return gfv, features, coarse

    def decode_gfv(self, gfv: torch.Tensor, image: torch.Tensor, pose: torch.Tensor, skip_mode: str = "keep",
                   source: str | None = None) -> torch.Tensor:
        """Ĝ2 (the final output; Ĝ1 for a stage-1 model) with `gfv` in place of the encoder output of the pair
        (I_A, P_B); the rest (Ĝ1, skips) is recomputed from I_A and P_B. See `decode_both`."""
        return self.decode_both(gfv, image, pose, skip_mode, source)[1]

    def decode_both(self, gfv: torch.Tensor, image: torch.Tensor, pose: torch.Tensor, skip_mode: str = "keep",
                    source: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(Ĝ1, final output) decoded from `gfv`.

        g2_enc: Ĝ2 = Ĝ1 + G2.decode(gfv, G2's encoder outputs, skip_mode); keep: only Dec1's input is replaced
        (KLW), replace: e_R in Dec1's skip too. g1_z: Ĝ1 = G1.decode(gfv, G1's own skips), then (stage 2)
        Ĝ2 = Ĝ1 + G2(I_A, Ĝ1); skip_mode must be keep.
        """
        source = source or self.gfv_source
        if skip_mode not in SKIP_MODES:
            raise ValueError(f"skip_mode must be one of {', '.join(SKIP_MODES)}, got {skip_mode!r}")
        true_gfv, skips, coarse = self.encode_gfv(image, pose, source)
        if gfv.shape != true_gfv.shape:
            raise InputError(f"GFV shape {tuple(gfv.shape[1:])} (batch {gfv.shape[0]}) does not match this "
                             f"model's {source} shape {tuple(true_gfv.shape[1:])} (batch {true_gfv.shape[0]})")
        gfv = gfv.to(device=true_gfv.device, dtype=true_gfv.dtype)
        if source == "g1_z":
            if skip_mode != "keep":
                raise ValueError("skip_mode replace concerns G2's e_R skip; G1's z has no such skip")
            coarse = unwrap(self.netG1).decode(gfv, skips)
            if self.stage == 1:
                return coarse, coarse
            return coarse, coarse + self.netG2(image, coarse)
        return coarse, coarse + unwrap(self.netG2).decode(gfv, skips, skip_mode)

    def require_g2(self, source: str) -> None:
        if getattr(self, "netG2", None) is None:
            raise InputError(f"GFV source {source} is G2's encoder output; this model has no G2 (--stage 1): use "
                             "a stage-2 run, or g1_z")

    def gfv_shape(self, source: str) -> tuple[int, ...]:
        """The per-pair GFV shape of `source` for this model's nets (from one probe pass)."""
        net = unwrap(self.netG1)
        param = next(net.parameters())
        geo = self.geometry
        image = param.new_zeros(1, 3, geo.height, geo.width)
        pose = param.new_zeros(1, 18, geo.height, geo.width)
        with torch.no_grad():
            gfv = self.encode_gfv(image, pose, source)[0]
        return tuple(gfv.shape[1:])

    def gfv_provenance(self, dataset) -> dict:
        """What gfv_meta.json records about the nets, the weights and the pairs of an export."""
        opt = self.opt
        checkpoints = {}
        for name in self.model_names:
            path = self.weight_path(str(opt.which_epoch), name)
            checkpoints[name] = {"path": str(path), "sha256": file_sha256(path, prefix=64) if path.is_file() else None,
                                 "class": type(unwrap(getattr(self, "net" + name))).__name__,
                                 "arch": getattr(unwrap(getattr(self, "net" + name)), "arch", "standard")}
        pair_file = pair_file_of(dataset, opt.phase)
        return {
            "source": self.gfv_source, "phase": opt.phase, "name": opt.name, "which_epoch": str(opt.which_epoch),
            "stage": self.stage, "ngf": opt.ngf, "checkpoints": checkpoints,
            "g1_arch": checkpoints["G1"]["arch"], "g2_arch": checkpoints.get("G2", {}).get("arch"),
            "dataset_mode": opt.dataset_mode, "data_format": opt.data_format, "dataroot": str(opt.dataroot),
            "pair_file": str(pair_file) if pair_file is not None else None,
            "pair_file_sha256": file_sha256(pair_file, prefix=64) if pair_file is not None else None,
            "pairs_sha256": pairs_sha256(dataset.pairs[:int(min(opt.how_many, len(dataset)))]),
            "flip": False, "amp": getattr(opt, "amp", "none"), "torch": torch.__version__,
            "device": self.device.type,
        }

    # --- test-time modes ---------------------------------------------------------------------------------

    def test_writer(self, dataset):
        """--export_gfv: a GFVExportWriter (it prints the disk estimate and guards its folder); else None."""
        return GFVExportWriter(self, dataset) if self.export_gfv else None

    def setup(self) -> None:
        super().setup()
        if self.decode_mode:  # a store made by other nets fails here, before any image is written
            expected = self.gfv_shape(self.gfv_source)
            if tuple(self.gfv_store.shape) != expected:
                raise InputError(f"{self.gfv_store.folder}: GFV shape {tuple(self.gfv_store.shape)} does not match "
                                 f"this model's {self.gfv_source} shape {expected}")

    def test(self) -> None:
        """Export: the batch's GFVs into `self.gfv`. Decode: Ĝ1 and Ĝ2 from the store's GFVs. Else: forward."""
        if not (self.export_gfv or self.decode_mode):
            return super().test()
        with torch.no_grad(), self.autocast():
            if self.export_gfv:
                self.gfv, _, self.fake_g1 = self.encode_gfv(self.source_image, self.target_pose)
                return
            gfv = self.stored_gfvs()
            self.fake_g1, final = self.decode_both(gfv, self.source_image, self.target_pose, self.gfv_skip_mode)
            if self.stage == 2:
                self.fake_g2 = final

    def stored_gfvs(self) -> torch.Tensor:
        """The store's GFVs of the current batch's pairs, float32 on the device (B, *shape)."""
        store = self.gfv_store
        rows = []
        for name_a, name_b in self.image_paths:
            try:
                rows.append(store[store.index_of(name_a, name_b)])
            except InputError as exc:
                raise InputError(f"{exc}: export the GFVs of the same --phase ({self.opt.phase}) and pairs "
                                 "(without a smaller --how_many), or decode with the store's --phase / --how_many") \
                    from None
        stacked = np.stack(rows).astype(np.float32, copy=False)
        return torch.from_numpy(stacked).to(self.device)
