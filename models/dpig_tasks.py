"""DPIG's test tasks beyond transfer: sample and interpolate (docs/models/dpig.md, "Test tasks").

Ma et al., "Disentangled Person Image Generation", CVPR 2018; the official testers are
charliememory/Disentangled-Person-Image-Generation `tester.py`. DPIGModel inherits the mixin, and test.py hands
every tested batch to the writer `test_writer(dataset)` returns:

- `--dpig_task sample`: for each distinct source image of the test pairs (pair order; --how_many counts pairs, as
  test.py's loop does: the sources are those of the first --how_many pairs),
  --num_samples outputs `<from_stem>_sample_<k>.<ext>`. Each flagged factor is Φ_k(z) (z from a torch.Generator
  seeded by --seed, one stream per factor, drawn source by source, so results do not depend on the batch size);
  the other factors come from the source. A sampled pose is decode_pose(Φ_pose(z)); with --tf_pose_sample_bug the
  source's own pose, encoded and decoded (TF issue #7).
- `--dpig_task interpolate`: for each test pair (from, to), frames k = 0..K+1 at t = k/(K+1) (K = --num_inner),
  `<from_stem>_2_<to_stem>_interpolate_<k>.<ext>` (the target in the name: a source is in several pairs), and a
  GIF `<from_stem>_2_<to_stem>_interpolate.gif` of the K+2 frames. --interp_factor pose: e_t = e_a + t(e_b - e_a)
  in the pose encoder's space, decoded and rendered with the appearance of `from`; fg | bg | app: that appearance
  factor interpolated the same way, with the (real) pose of `from`.

Both write an HTML page in <results_dir>/web/ (panels source | pose | output; at most --num_panels sources or
pairs, none with --only_generated) and refuse a --results_dir holding other results unless --overwrite.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from util.animation import write_gif
from util.html import HTML
from util.image import save_image, uint8_to_tensor
from util.io import InputError
from util.pose_drawing import draw_skeleton
from util.results_dir import claim_results_dir

APPEARANCE_FACTORS = ("fg", "bg", "app")
FACTOR_STREAMS = ("fg", "bg", "app", "pose")  # generator of factor f: torch.Generator seeded --seed + its index
GIF_FPS = 4.0


def interpolation_weights(num_inner: int) -> list[float]:
    """t = i / (K + 1) for i = 0..K+1: K inner points plus both ends (K = 0 gives [0, 1])."""
    return [i / (num_inner + 1) for i in range(num_inner + 2)]


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """e_a + t (e_b - e_a); exactly e_a at t = 0 and (up to rounding) e_b at t = 1."""
    return b.clone() if t == 1.0 else a + t * (b - a)


def task_owner(opt) -> str:
    """What the results marker records: the run, the epoch, the task and every setting its images depend on."""
    lines = [f"name: {opt.name}", f"model: {opt.model}", f"which_epoch: {opt.which_epoch}",
             f"dpig_task: {opt.dpig_task}"]
    if opt.dpig_task == "sample":
        sampled = [f for f in FACTOR_STREAMS if getattr(opt, f"sample_{f}", False)]
        lines += [f"sampled: {' '.join(sampled)}", f"num_samples: {opt.num_samples}", f"seed: {opt.seed}",
                  f"tf_pose_sample_bug: {bool(opt.tf_pose_sample_bug)}"]
    else:
        lines += [f"interp_factor: {opt.interp_factor}", f"num_inner: {opt.num_inner}"]
    for stage in ("1a", "1b", "2a", "2b"):
        name = getattr(opt, f"stage{stage}_name", None)
        if name is not None:
            lines.append(f"stage{stage}: {name} {getattr(opt, f'stage{stage}_epoch', None)}")
    return "\n".join(lines) + "\n"


def claim_task_dir(opt) -> Path:
    """Refuse a --results_dir that holds other results (another run, epoch, task or setting) without --overwrite,
    as test.py does for transfer; then record this run's marker."""
    return claim_results_dir(opt.results_dir, task_owner(opt), opt.overwrite)


def skeleton_tiles(keypoints: torch.Tensor, height: int, width: int, dataset) -> np.ndarray:
    """uint8 (B, H, W, 3) skeletons of (B, 18, 2) network-frame keypoints, brought to the dataset frame."""
    drawn = [uint8_to_tensor(draw_skeleton(k.cpu().numpy(), height, width)) for k in keypoints]
    return dataset.output_to_uint8(torch.stack(drawn))


class TaskWriter:
    """What both tasks share: the folder guard, the HTML page, the device and no-grad context."""

    title = ""

    def __init__(self, model, dataset) -> None:
        self.model, self.dataset, self.opt = model, dataset, model.opt
        self.ext = getattr(self.opt, "image_format", "jpg")
        self.total = int(min(self.opt.how_many, len(dataset)))
        self.folder = claim_task_dir(self.opt)
        self.html = None
        if not getattr(self.opt, "only_generated", False):
            self.html = HTML(self.folder / "web", f"{self.opt.name} (DPIG {self.title}), epoch "
                                                  f"{self.opt.which_epoch}")
        self.panels = 0  # sources (sample) or pairs (interpolate) on the page
        self.count = 0
        self.files = 0

    def room_on_page(self) -> bool:
        limit = getattr(self.opt, "num_panels", -1)
        return self.html is not None and (limit < 0 or self.panels < limit)

    def context(self):
        autocast = getattr(self.model, "autocast", None)
        return contextlib.ExitStack() if autocast is None else autocast()

    def inputs(self, batch: dict, side: str, rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(image, keypoints, mask or None) of `side` (source | target) for the batch rows `rows`, on the device."""
        device = self.model.device
        mask = batch.get(f"{side}_mask")
        return (batch[f"{side}_image"][rows].to(device), batch[f"{side}_keypoints"][rows].to(device),
                None if mask is None else mask[rows].to(device))

    def save(self, images: np.ndarray, names: list[str]) -> None:
        for image, name in zip(images, names):
            save_image(image, self.folder / name)
        self.files += len(names)

    def add_panel(self, link_stem: str, panel: np.ndarray) -> str:
        """Save a page tile under web/panels/; returns its link."""
        link = f"panels/{link_stem}.jpg"
        save_image(panel, self.folder / "web" / link)
        return link

    def close(self) -> str:
        where = ""
        if self.html is not None:
            where = f" and {self.html.save()}"
        return f"wrote {self.files} images ({self.summary()}) to {self.folder}{where}"

    def summary(self) -> str:
        return ""


class SampleWriter(TaskWriter):
    """--dpig_task sample: --num_samples outputs per distinct source, flagged factors drawn from the mappings."""

    title = "sample"

    def __init__(self, model, dataset) -> None:
        super().__init__(model, dataset)
        opt = self.opt
        self.sampled = [f for f in FACTOR_STREAMS if getattr(opt, f"sample_{f}", False)]
        # the factors drawn from noise (under --tf_pose_sample_bug the pose is the source's, re-decoded)
        self.drawn = [f for f in self.sampled if not (f == "pose" and opt.tf_pose_sample_bug)]
        self.generators = {f: torch.Generator().manual_seed(int(opt.seed) + i)
                           for i, f in enumerate(FACTOR_STREAMS) if f in self.drawn}
        self.seen: set[str] = set()
        if self.html is not None:
            self.html.add_header(f"sampled: {', '.join(self.sampled)}; panels source | pose | output, "
                                 f"{opt.num_samples} per source (seed {opt.seed})")

    def draws(self, factor: str, sources: int) -> torch.Tensor:
        """(sources, S, d) Φ_factor(z): S = --num_samples rows per source, source by source."""
        per_source = [self.model.sample_factor(factor, self.opt.num_samples, self.generators[factor])
                      for _ in range(sources)]
        return torch.stack(per_source).to(self.model.device)

    def new_sources(self, batch: dict) -> list[int]:
        rows = []
        for i, name in enumerate(batch["source_name"]):
            if name not in self.seen:
                self.seen.add(name)
                rows.append(i)
        return rows

    def write(self, batch: dict, model) -> None:
        rows = self.new_sources(batch)
        self.count += len(batch["source_name"])  # pairs read: test.py trims batches and stops by this count
        if not rows:
            return
        model, opt = self.model, self.opt
        image, keypoints, mask = self.inputs(batch, "source", rows)
        with torch.no_grad(), self.context():
            parts = model.split_appearance(model.appearance(image, keypoints, mask))
            drawn = {f: self.draws(f, len(rows)) for f in self.drawn}
            if "pose" in self.sampled and opt.tf_pose_sample_bug:
                real_pose = model.decode_pose(model.encode_pose(keypoints))
            outputs, poses = [], []
            for k in range(opt.num_samples):
                factors = {name: drawn[name][:, k] if name in drawn else value for name, value in parts.items()}
                if "pose" not in self.sampled:
                    pose = keypoints
                elif opt.tf_pose_sample_bug:
                    pose = real_pose
                else:
                    pose = model.decode_pose(drawn["pose"][:, k])
                outputs.append(model.render(model.join_appearance(factors), pose))
                poses.append(pose)
        stems = [Path(batch["source_name"][i]).stem for i in rows]
        height, width = outputs[0].shape[-2:]
        fakes = [self.dataset.output_to_uint8(o) for o in outputs]
        for k, fake in enumerate(fakes):
            self.save(fake, [f"{stem}_sample_{k}.{self.ext}" for stem in stems])
        if self.html is not None:
            sources = self.dataset.output_to_uint8(batch["source_image"][rows])
            tiles = [skeleton_tiles(p, height, width, self.dataset) for p in poses]
            for j, stem in enumerate(stems):
                if not self.room_on_page():
                    break
                links, texts = [], []
                for k in range(opt.num_samples):
                    panel = np.concatenate([sources[j], tiles[k][j], fakes[k][j]], axis=1)
                    links.append(self.add_panel(f"{stem}_sample_{k}", panel))
                    texts.append(f"{stem}_sample_{k}.{self.ext}")
                self.html.add_header(batch["source_name"][rows[j]], level=4)
                self.html.add_images(links, texts, links, width=sources.shape[2] * 3)
                self.panels += 1

    def summary(self) -> str:
        return f"{len(self.seen)} sources x {self.opt.num_samples} samples of {', '.join(self.sampled)}"


class InterpolateWriter(TaskWriter):
    """--dpig_task interpolate: K + 2 frames and a GIF per test pair."""

    title = "interpolate"

    def __init__(self, model, dataset) -> None:
        super().__init__(model, dataset)
        self.factor = self.opt.interp_factor
        self.weights = interpolation_weights(self.opt.num_inner)
        self.gifs = 0
        if self.html is not None:
            what = ("pose (decoded, appearance of from)" if self.factor == "pose" else
                    f"appearance factor {self.factor} (pose of from)")
            self.html.add_header(f"interpolated: {what}; t = " + ", ".join(f"{t:.3g}" for t in self.weights)
                                 + "; top: outputs, bottom: poses")

    def frames(self, batch: dict, rows: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(outputs, poses): one (B, 3, H, W) image and one (B, 18, 2) pose per t."""
        model = self.model
        image, keypoints, mask = self.inputs(batch, "source", rows)
        outputs, poses = [], []
        with torch.no_grad(), self.context():
            e_from = model.appearance(image, keypoints, mask)
            if self.factor == "pose":
                target_keypoints = batch["target_keypoints"][rows].to(model.device)
                pose_a, pose_b = model.encode_pose(keypoints), model.encode_pose(target_keypoints)
                for t in self.weights:
                    pose = model.decode_pose(lerp(pose_a, pose_b, t))
                    outputs.append(model.render(e_from, pose))
                    poses.append(pose)
                return outputs, poses
            parts_a = model.split_appearance(e_from)
            if self.factor not in parts_a:
                raise InputError(f"--interp_factor {self.factor}: this model's appearance factors are "
                                 f"{', '.join(parts_a)}")
            parts_b = model.split_appearance(model.appearance(*self.inputs(batch, "target", rows)))
            for t in self.weights:
                factors = dict(parts_a, **{self.factor: lerp(parts_a[self.factor], parts_b[self.factor], t)})
                outputs.append(model.render(model.join_appearance(factors), keypoints))
                poses.append(keypoints)
        return outputs, poses

    def write(self, batch: dict, model) -> None:
        rows = list(range(min(len(batch["source_name"]), self.total - self.count)))
        if not rows:
            return
        outputs, poses = self.frames(batch, rows)
        stems = [f"{Path(batch['source_name'][i]).stem}_2_{Path(batch['target_name'][i]).stem}" for i in rows]
        height, width = outputs[0].shape[-2:]
        fakes = [self.dataset.output_to_uint8(o) for o in outputs]
        for k, fake in enumerate(fakes):
            self.save(fake, [f"{stem}_interpolate_{k}.{self.ext}" for stem in stems])
        for j, stem in enumerate(stems):
            write_gif([fake[j] for fake in fakes], self.folder / f"{stem}_interpolate.gif", GIF_FPS)
            self.gifs += 1
        if self.html is not None:
            sources = self.dataset.output_to_uint8(batch["source_image"][rows])
            targets = self.dataset.output_to_uint8(batch["target_image"][rows])
            tiles = [skeleton_tiles(p, height, width, self.dataset) for p in poses]
            for j, stem in enumerate(stems):
                if not self.room_on_page():
                    break
                strip = np.concatenate([np.concatenate([f[j] for f in fakes], axis=1),
                                        np.concatenate([p[j] for p in tiles], axis=1)], axis=0)
                ends = np.concatenate([sources[j], targets[j]], axis=1)
                link = self.add_panel(f"{stem}_interpolate", strip)
                ends_link = self.add_panel(f"{stem}_from_to", ends)
                gif = f"panels/{stem}_interpolate.gif"  # a copy inside web/: the page links only below itself
                write_gif([fake[j] for fake in fakes], self.folder / "web" / gif, GIF_FPS)
                self.html.add_header(f"{batch['source_name'][rows[j]]} -> {batch['target_name'][rows[j]]}", level=4)
                self.html.add_images([ends_link, gif], ["from | to", f"{stem}_interpolate.gif"], [ends_link, gif],
                                     width=ends.shape[1])
                self.html.add_images([link], [f"top: outputs t = 0 .. 1 ({len(fakes)} frames); bottom: poses"],
                                     [link], width=strip.shape[1] * (2 if height < 256 else 1))
                self.panels += 1
        self.count += len(rows)

    def summary(self) -> str:
        return f"{self.count} pairs x {len(self.weights)} frames of {self.factor}, {self.gifs} GIFs"


class DPIGTasksMixin:
    """test_writer for --dpig_task sample | interpolate; transfer uses test.py's normal image writer."""

    def test_writer(self, dataset):
        task = getattr(self.opt, "dpig_task", "transfer")
        if task == "sample":
            return SampleWriter(self, dataset)
        if task == "interpolate":
            return InterpolateWriter(self, dataset)
        return None
