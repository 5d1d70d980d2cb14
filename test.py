"""Generate an image for every test pair: `python test.py --model PG2 --name ... --which_epoch latest`.

Writes `<source>_2_<target>_vis.jpg` at dataset resolution straight into --results_dir (the official DPTN
convention, which the evaluator reads), and an HTML page of panels source | source pose | target |
target pose | generated in <results_dir>/web/ (skipped with --only_generated).

`--canonical_poses poses.csv` (pose normalisation, PN-GAN) renders every image of <dataroot>/<phase>/ (or
`--image_list`) in each canonical pose k instead: `<stem>_2_canon<k>_vis.jpg` (`--legacy_names`: the official
`<stem>_to_<k>.png`), with panels source | canonical pose | generated (data/canonical_poses.py builds the items).

A results folder holds one checkpoint's result set, so that metrics never score a mix of two models:
`results_of.txt` records the run, the checkpoint (its weight files' sha256), the items and how many were asked
for. Another checkpoint's set, or a smaller one, is refused unless --overwrite, which first removes the old set
(util/results_dir.py); the identical command, or more pairs of the same checkpoint, may run again.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data import create_dataloader, create_dataset
from data.canonical_poses import CanonicalPoseDataset
from data.geometry import uint8_to_dataset_frame
from models import allow_compile_fallback, create_model, find_model_class
from options.test_options import TestOptions
from util.checkpoint import seed_everything
from util.cpu_memory import set_cpu_memory_policy
from util.distributed import build_context
from util.image import save_image, uint8_to_tensor
from util.io import report_input_errors
from util.patn_drawing import skeleton_tile
from util.pose_drawing import draw_skeleton
from util.result_pages import ResultPages
from util.resources import set_torch_threads
from util.results_dir import check_results_path, claim_results_dir as claim_folder, items_digest, weights_identity

PANEL_LABELS = ("source", "source pose", "target", "target pose", "generated")
CANONICAL_LABELS = ("source", "canonical pose", "generated")


def result_name(source: str, target: str, ext: str) -> str:
    """`<source stem>_2_<target stem>_vis.<ext>`, the name the official DPTN test writes."""
    return f"{Path(source).stem}_2_{Path(target).stem}_vis.{ext}"


def skeleton_images(keypoints: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Draw each (18,2) keypoint set as a skeleton image in [-1,1], shaped like `like` (B,3,H,W)."""
    height, width = like.shape[-2:]
    drawn = [uint8_to_tensor(draw_skeleton(k.cpu().numpy(), height, width)) for k in keypoints]
    return torch.stack(drawn).to(like.device)


def item_list(opt, dataset) -> str:
    """The items test.py renders, by content: the pairs (or images x canonical poses) and where they live."""
    if isinstance(dataset, CanonicalPoseDataset):
        items = (dataset.names, [p.tolist() for p in dataset.poses])
    else:
        items = getattr(dataset, "pairs", None)
    root = Path(opt.dataroot).resolve() if getattr(opt, "dataroot", None) else None
    digest = f" sha256 {items_digest(items)}" if items is not None else ""
    return f"{len(dataset)} of {root} phase {opt.phase}{digest}"


def results_owner(opt, model, dataset) -> str:
    """The marker of a results folder: the run, the checkpoint by its weights' content (so more training
    under the same tag is another owner), the items and the output form."""
    form = f"{opt.result_layout} {opt.image_format}" + (" legacy_names" if opt.legacy_names else "")
    lines = [f"name: {opt.name}", f"model: {opt.model}", f"which_epoch: {opt.which_epoch}",
             f"checkpoint: {weights_identity(model.save_dir, str(opt.which_epoch))}",
             f"items: {item_list(opt, dataset)}", f"output: {form}"]
    return "\n".join(lines) + "\n"


def claim_results_dir(opt, model, dataset, total: int) -> None:
    """Refuse to mix result sets: a folder holding another checkpoint's results, or more results of this one,
    needs --overwrite (which replaces the whole set)."""
    claim_folder(opt.results_dir, results_owner(opt, model, dataset), opt.overwrite, total)


class ResultWriter:
    """Saves generated images (and, unless --only_generated, panels + an HTML page) for test pairs."""

    labels = PANEL_LABELS

    def __init__(self, opt, dataset) -> None:
        self.opt = opt
        self.dataset = dataset
        self.results_dir = Path(opt.results_dir)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.html = None
        if not opt.only_generated:
            self.html = ResultPages(self.results_dir / "web", f"{opt.name} ({opt.model}), epoch {opt.which_epoch}",
                                    " | ".join(self.labels), opt.page_size)
        self.count = 0

    def names(self, batch: dict) -> list[str]:
        """The file name of each generated image of the batch."""
        return [result_name(s, t, self.opt.image_format) for s, t in zip(batch["source_name"], batch["target_name"])]

    def tiles(self, batch: dict, room: int, device: torch.device) -> list[np.ndarray]:
        """The panel tiles before the generated one, uint8 (room, H, W, 3) each, in `labels` order."""
        tiles = [batch["source_image"], skeleton_images(batch["source_keypoints"], batch["source_image"]),
                 batch["target_image"], skeleton_images(batch["target_keypoints"], batch["target_image"])]
        return [self.to_dataset_frame(t[:room].to(device)) for t in tiles]

    def to_dataset_frame(self, images: torch.Tensor) -> np.ndarray:
        """uint8 (B, H, W, 3) at dataset resolution, converted as the dataset's frame prescribes (for DPTN's
        stretch256: uint8 first, then OpenCV's bilinear resize, as the official test)."""
        return self.dataset.output_to_uint8(images)

    def write(self, batch: dict, model) -> None:
        generated = model.generated_images()
        names = self.names(batch)
        fakes = self.to_dataset_frame(generated)
        for name, image in zip(names, fakes):
            save_image(image, self.results_dir / name)
        room = len(names) if self.opt.num_panels < 0 else max(0, self.opt.num_panels - self.count)
        if self.html is not None and room > 0:
            names, fakes = names[:room], fakes[:room]
            tiles = self.tiles(batch, room, generated.device) + [fakes]
            for i, name in enumerate(names):
                panel = np.concatenate([t[i] for t in tiles], axis=1)
                link = f"panels/{Path(name).stem}.jpg"
                save_image(panel, self.results_dir / "web" / link)
                self.html.add(link, name, (panel.shape[1] * 2, panel.shape[0] * 2))
        self.count += len(batch["source_name"])

    def close(self) -> str:
        if self.html is not None:
            self.html.save()
        where = f" and {self.html.web_dir / 'index.html'}" if self.html is not None else ""
        return f"wrote {self.count} generated images to {self.opt.results_dir}{where}"


class CanonicalWriter(ResultWriter):
    """--canonical_poses: `<stem>_2_canon<k>_vis.<ext>` (or `<stem>_to_<k>.png`), panels source | canonical pose
    | generated."""

    labels = CANONICAL_LABELS

    def names(self, batch: dict) -> list[str]:
        if self.opt.legacy_names:
            return [f"{Path(s).stem}_to_{t.removeprefix('canon')}.png"
                    for s, t in zip(batch["source_name"], batch["target_name"])]
        return super().names(batch)

    def tiles(self, batch: dict, room: int, device: torch.device) -> list[np.ndarray]:
        tiles = [batch["source_image"], skeleton_images(batch["target_keypoints"], batch["source_image"])]
        return [self.to_dataset_frame(t[:room].to(device)) for t in tiles]


def build_dataset(opt):
    """The test pairs, or under --canonical_poses every image in every canonical pose."""
    if opt.canonical_poses is None:
        return create_dataset(opt)
    needs_source_pose = getattr(find_model_class(opt.model), "reads_source_pose", True)
    return CanonicalPoseDataset(opt, needs_source_pose)


class PanelWriter:
    """--result_layout patn5: PATN's test output, `images/<source>___<target>_vis.jpg` panels of five tiles
    (source | source pose | target | target pose | generated, each at dataset resolution, skeletons drawn from
    the pose maps as the official test draws them) and `index.html` beside `images/`."""

    def __init__(self, opt, dataset) -> None:
        self.opt = opt
        self.dataset = dataset
        self.results_dir = Path(opt.results_dir)
        self.html = ResultPages(self.results_dir, f"Experiment = {opt.name}, Phase = {opt.phase}, "
                                                  f"Epoch = {opt.which_epoch}", page_size=opt.page_size)
        self.count = 0

    def skeletons(self, maps: torch.Tensor) -> np.ndarray:
        """uint8 (B, H, W, 3) skeleton tiles of (B, 18, Hn, Wn) pose maps, brought to the dataset frame."""
        tiles = np.stack([skeleton_tile(m.float().cpu().numpy()) for m in maps])
        return uint8_to_dataset_frame(tiles, self.dataset.image_size, self.dataset.frame)

    def write(self, batch: dict, model) -> None:
        generated = model.generated_images()
        to_uint8 = self.dataset.output_to_uint8
        tiles = [to_uint8(batch["source_image"]), self.skeletons(batch["source_pose"]),
                 to_uint8(batch["target_image"]), self.skeletons(batch["target_pose"]), to_uint8(generated)]
        for i, (source, target) in enumerate(zip(batch["source_name"], batch["target_name"])):
            name = f"{source}___{target}_vis.jpg"
            save_image(np.concatenate([t[i] for t in tiles], axis=1), self.html.get_image_dir() / name)
            width = self.opt.display_winsize  # the panel at PATN's page width, its aspect kept
            self.html.add(f"images/{name}", f"{source}___{Path(target).stem}",
                          (width, round(width * tiles[0].shape[1] / (5 * tiles[0].shape[2]))))
        self.count += len(batch["source_name"])

    def close(self) -> str:
        self.html.save()
        return f"wrote {self.count} panels to {self.html.get_image_dir()} and {self.html.web_dir / 'index.html'}"


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """Parse, generate, return the exit status (2 for bad input)."""
    options = TestOptions()
    opt = options.parse(argv)
    check_results_path(opt.results_dir)
    set_cpu_memory_policy(opt.cpu_memory)
    set_torch_threads(opt.torch_threads)
    if opt.compile:
        allow_compile_fallback()
    ctx = build_context(opt.gpu_ids)
    seed_everything(opt.seed)  # --seed: whatever a model samples at test time (noise, drawn poses) repeats
    dataset = build_dataset(opt)
    loader = create_dataloader(opt, ctx, dataset)
    model = create_model(opt, ctx)
    model.setup()
    total = int(min(opt.how_many, len(dataset)))
    writer = model.test_writer(dataset)  # a model's own output mode (PG2: --export_gfv), or None
    if writer is None:
        claim_results_dir(opt, model, dataset, total)
        writers = {"patn5": PanelWriter, "single": CanonicalWriter if opt.canonical_poses else ResultWriter}
        writer = writers[opt.result_layout](opt, dataset)
    options.save(opt)
    with tqdm(total=total, unit="img", dynamic_ncols=True) as bar:
        for batch in loader:
            keep = min(len(batch["source_name"]), total - writer.count)
            if keep < len(batch["source_name"]):
                batch = {k: v[:keep] for k, v in batch.items()}
            model.set_input(batch)
            model.test()
            writer.write(batch, model)
            bar.update(keep)
            if writer.count >= total:
                break
    print(writer.close())
    return 0


if __name__ == "__main__":
    sys.exit(main())
