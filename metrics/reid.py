"""Person re-identification of real or generated images with a fast-reid BoT network: `python -m metrics.reid`.

Protocols (docs/reid.md):
- standard:  real `<dataroot>/query/` against the real gallery `<dataroot>/test/` (Market bounding_box_test
             without the pid -1 boxes): fast-reid's ReidEvaluator, the check that a checkpoint loads right.
- generated: every row (from, to) of `--pairs` is one query, the generated `<from>_2_<to>_vis.jpg` of
             `--results_dir`, with pid(to); the gallery is the real test folder. The headline rule (query
             camera by `--cam_rule`, the source image junk with `--junk_source`) and the plain fast-reid rule
             (target camera, nothing else junk) are both reported, always, from one run.
- pngan:     the standard lists, each image replaced by its 8 canonical-pose images
             `<stem>_2_canon<k>_vis.jpg` of `--canonical_dir`, fused as PN-GAN does (Qian et al., ECCV 2018).
Network: Luo et al., CVPRW 2019 (bag of tricks), JDAI-CV/fast-reid `configs/Market1501/bagtricks_R50-ibn.yml`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from data.annotations import read_pairs
from metrics.pairing import RESULT_SUFFIXES
from metrics.reid_data import DATASETS, FASHION_PIDS, Item, list_items, pid_cam
from metrics.reid_features import COMBINES, FUSIONS, METRICS, combine, distance_matrix, fuse_poses, timed_features
from metrics.reid_protocol import rank_eval, rerank_distance
from util.io import InputError, atomic_write_text, report_input_errors

PROTOCOLS = ("standard", "generated", "pngan")
CAM_RULES = ("target", "source", "none")
AP_FORMULAS = ("fastreid", "market_official")
CANONICAL_POSES = 8
MAX_RANK = 50
AP_TEXT = {"fastreid": "fast-reid: mean precision at each hit",
           "market_official": "Market-1501 compute_AP.m: trapezoid over recall"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m metrics.reid", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--reid_weights", type=Path, help="fast-reid model_final.pth or a state dict (required)")
    parser.add_argument("--random_weights", action="store_true", help="tests only: a random network (announced)")
    parser.add_argument("--dataroot", type=Path, required=True, help="prepared layout: test/ (gallery), query/")
    parser.add_argument("--dataset", choices=DATASETS, default="market")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="standard")
    parser.add_argument("--results_dir", type=Path, help="generated images <from>_2_<to>_vis.jpg (generated)")
    parser.add_argument("--canonical_dir", type=Path, help="<stem>_2_canon<k>_vis.jpg, k=1..8 (pngan)")
    parser.add_argument("--pairs", type=Path, help="pair CSV (default <dataroot>/market-pairs-test.csv or the "
                                                   "DeepFashion test pair file)")
    parser.add_argument("--cam_rule", choices=CAM_RULES, default="target", help="query camera: cam(to), cam(from) "
                                                                                  "or one no gallery image has")
    parser.add_argument("--junk_source", action="store_true", default=True,
                        help="the source image is junk for its generated query (headline rule)")
    parser.add_argument("--no_junk_source", "--no-junk_source", dest="junk_source", action="store_false",
                        help="keep the source image as an ordinary gallery image")
    parser.add_argument("--query_source", choices=("generated", "real"), default="generated",
                        help="real: the real target replaces each generated query (the upper bound)")
    parser.add_argument("--fashion_pid", choices=FASHION_PIDS, default="id", help="10-digit id token or 8-digit item")
    parser.add_argument("--pn_fusion", choices=FUSIONS, default="avg")
    parser.add_argument("--pn_combine", choices=COMBINES, default="pn_only")
    parser.add_argument("--pn_weights", type=Path,
                        help="pngan: a second fast-reid checkpoint for the canonical-pose images (the paper's "
                             "Network B, trained on them: train.py --model reid_bagtricks --pngan_branch); default: "
                             "--reid_weights embeds both")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    parser.add_argument("--metric", choices=METRICS, help="default cosine; pngan: euclidean (squared)")
    parser.add_argument("--flip", action="store_true", help="average with the left-right flipped image")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (fast-reid's form)")
    parser.add_argument("--k1", type=int, default=20)
    parser.add_argument("--k2", type=int, default=6)
    parser.add_argument("--lambda", dest="lambda_value", type=float, default=0.3)
    parser.add_argument("--ap", choices=AP_FORMULAS, default="fastreid", help="AP formula of mAP and 'metric'")
    parser.add_argument("--stem_pool", choices=("auto", "ceil", "pad1"), default="auto")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_workers", type=int, default=0, help="image-loading processes")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--out", type=Path, help="JSON report (written atomically)")
    return parser


def validate(args: argparse.Namespace) -> None:
    """Every option checked before any image is read or weights are loaded."""
    if args.random_weights == (args.reid_weights is not None):
        raise InputError("pass exactly one of --reid_weights PATH and --random_weights (tests only)")
    if min(args.size) < 16 or args.batch_size < 1 or args.num_workers < 0:
        raise InputError(f"--size {args.size} (>= 16 each), --batch_size {args.batch_size} (>= 1), "
                         f"--num_workers {args.num_workers} (>= 0): out of range")
    needed = {"generated": "results_dir", "pngan": "canonical_dir"}.get(args.protocol)
    for name in ("results_dir", "canonical_dir", "pairs"):
        given = getattr(args, name) is not None
        if given and name != needed and not (name == "pairs" and args.protocol == "generated"):
            raise InputError(f"--{name} is used by --protocol {'pngan' if name == 'canonical_dir' else 'generated'} "
                             f"only, not --protocol {args.protocol}")
    if needed and getattr(args, needed) is None and not (args.query_source == "real" and needed == "results_dir"):
        raise InputError(f"--protocol {args.protocol} needs --{needed}")
    defaults = {"cam_rule": "target", "junk_source": True, "query_source": "generated"}
    if args.protocol != "generated":
        changed = [k for k, v in defaults.items() if getattr(args, k) != v]
        if changed:
            raise InputError(f"--{changed[0]} applies to --protocol generated only")
    if args.protocol != "pngan" and (args.pn_fusion != "avg" or args.pn_combine != "pn_only"):
        raise InputError("--pn_fusion/--pn_combine apply to --protocol pngan only")
    if args.pn_combine == "orig_only" and args.pn_fusion != "avg":
        raise InputError("--pn_fusion has no effect with --pn_combine orig_only (the original feature alone)")
    if args.pn_weights is not None and (args.protocol != "pngan" or args.pn_combine == "orig_only"):
        raise InputError("--pn_weights embeds the canonical-pose images: it needs --protocol pngan and a "
                         "--pn_combine other than orig_only")
    if args.pn_weights is not None and args.random_weights:
        raise InputError("--pn_weights needs --reid_weights for the original images, not --random_weights")
    if args.query_source == "real" and args.results_dir is not None:
        raise InputError("--results_dir is not read with --query_source real (the real targets are the queries)")
    if not args.rerank and (args.k1, args.k2, args.lambda_value) != (20, 6, 0.3):
        raise InputError("--k1/--k2/--lambda apply with --rerank only")
    if args.dataset != "fashion" and args.fashion_pid != "id":
        raise InputError("--fashion_pid applies to --dataset fashion only")
    if not args.dataroot.is_dir():
        raise InputError(f"--dataroot {args.dataroot} is not a folder")


def default_pairs(dataroot: Path, dataset: str) -> Path:
    """market-pairs-test.csv, or the first DeepFashion spelling present (fasion-resize-, fasion-, ...)."""
    if dataset == "market":
        return dataroot / "market-pairs-test.csv"
    from data.fashion_dataset import find_csv

    return find_csv(dataroot, "pairs", "test")


def _find_file(folder: Path, stem: str) -> Path | None:
    for suffix in RESULT_SUFFIXES:
        if (folder / (stem + suffix)).is_file():
            return folder / (stem + suffix)
    return None


def _missing(what: str, missing: list[tuple[Path, str]], total: int) -> InputError:
    """One line: the first missing file, where it was wanted, and how many are missing."""
    path, where = missing[0]
    return InputError(f"{what} {path} not found ({where}{'; ' if where else ''}{len(missing)} of {total} missing)")


def generated_lists(args, gallery: list[Item]) -> dict:
    """Queries of the generated protocol, sorted by file name, and the query cameras and junk of both rules."""
    pairs_path = args.pairs or default_pairs(args.dataroot, args.dataset)
    rows = read_pairs(pairs_path)
    by_stem = {}
    for row, (source, target) in enumerate(rows, start=1):
        by_stem.setdefault(f"{Path(source).stem}_2_{Path(target).stem}_vis", (row, source, target))
    gallery_index = {item.name: i for i, item in enumerate(gallery)}
    real_dir = args.dataroot / "test"
    queries, missing = [], []
    for stem in sorted(by_stem):
        row, source, target = by_stem[stem]
        if args.query_source == "real":
            path = real_dir / target if (real_dir / target).is_file() else None
            shown = (real_dir / target, f"pair row {row}")
        else:
            path = _find_file(args.results_dir, stem)
            shown = (args.results_dir / (stem + ".jpg"), f"pair row {row}: {source} -> {target}")
        if path is None:
            missing.append(shown)
            continue
        pid, cam_to = pid_cam(target, args.dataset, args.fashion_pid)
        cam_from = pid_cam(source, args.dataset, args.fashion_pid)[1]
        queries.append((Path(path), pid, cam_to, cam_from, gallery_index.get(source), gallery_index.get(target)))
    if missing:
        raise _missing("generated image" if args.query_source == "generated" else "real target", missing, len(by_stem))
    g_cams = np.array([item.camid for item in gallery])
    none_cam = min(int(g_cams.min()), 0) - 1  # a camera no gallery image has: nothing is same-camera junk
    head_cams = {"target": [q[2] for q in queries], "source": [q[3] for q in queries],
                 "none": [none_cam] * len(queries)}[args.cam_rule]
    # (Q, G) masks, built only when needed (12,000 x 15,913 booleans are 191 MB each)
    real = args.query_source == "real"
    self_junk = _mask(len(gallery), [q[5] for q in queries]) if real else None  # the real target is in the gallery
    sources = [q[4] for q in queries]
    head_junk = self_junk
    if args.junk_source:
        head_junk = _mask(len(gallery), sources, self_junk)
    return {"paths": [q[0] for q in queries], "pids": np.array([q[1] for q in queries]),
            "rules": {"headline": (np.array(head_cams), head_junk),
                      "fastreid": (np.array([q[2] for q in queries]), self_junk)},
            "pairs_file": str(pairs_path), "pair_rows": len(rows), "duplicate_rows": len(rows) - len(by_stem),
            "sources_in_gallery": sum(s is not None for s in sources)}


def _mask(columns: int, marked: list[int | None], base: np.ndarray | None = None) -> np.ndarray:
    """(len(marked), columns) bool: row i marks column marked[i] (None: nothing), on top of `base`."""
    mask = np.zeros((len(marked), columns), dtype=bool) if base is None else base.copy()
    rows = [i for i, c in enumerate(marked) if c is not None]
    mask[rows, [marked[i] for i in rows]] = True
    return mask


def canonical_paths(folder: Path, items: list[Item]) -> list[list[Path]]:
    """The 8 `<stem>_2_canon<k>_vis.jpg` of every item; InputError naming the first missing one."""
    out, missing = [], []
    for item in items:
        stems = [f"{Path(item.name).stem}_2_canon{k}_vis" for k in range(1, CANONICAL_POSES + 1)]
        found = [_find_file(folder, s) for s in stems]
        missing += [(folder / (s + ".jpg"), f"for {item.name}") for s, f in zip(stems, found) if f is None]
        out.append(found)
    if missing:
        raise _missing("canonical-pose image", missing, len(items) * CANONICAL_POSES)
    return out


def score(q_feat, g_feat, q_pids, g_pids, g_cams, rules: dict, metric: str, rerank: dict | None,
          ap: str = "fastreid", device=None) -> dict[str, dict]:
    """One distance matrix, then CMC/mAP/mINP under each rule {name: (query cams, junk mask or None)}.

    Distances (and the re-ranking kNN) are computed on `device` (default: where the features are).
    """
    if device is not None:
        q_feat, g_feat = q_feat.to(device), g_feat.to(device)
    dist = distance_matrix(q_feat, g_feat, metric)
    if rerank is not None:
        dist = rerank_distance(q_feat, g_feat, dist, rerank["k1"], rerank["k2"], rerank["lambda"],
                               normalize=metric == "cosine")
    results = {}
    for name, (q_cams, junk) in rules.items():
        ranked = rank_eval(dist, q_pids, g_pids, q_cams, g_cams, junk, MAX_RANK)
        official = ranked.ap_official
        values = ranked.summary(ap=official if ap == "market_official" else None)
        results[name] = {**values, "mAP_fastreid": 100.0 * float(ranked.ap.mean()),
                         "mAP_market_official": 100.0 * float(official.mean()), "ap_formula": ap,
                         "valid_queries": ranked.num_valid, "skipped_queries": ranked.num_skipped,
                         "junk_items": ranked.junk, "cmc": [round(float(c), 8) for c in ranked.cmc]}
    return results


def load_network(args) -> tuple[torch.nn.Module, dict]:
    """The checkpoint, strictly loaded, or (announced) random weights."""
    from metrics.reid_net import BagtricksReID

    if args.random_weights:
        print("warning: --random_weights: the re-id network is random (seed 0); the numbers mean nothing, "
              "this is for tests only", file=sys.stderr)
        stem_pool = "ceil" if args.stem_pool == "auto" else args.stem_pool
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = BagtricksReID(num_classes=0, with_ibn=True, stem_pool=stem_pool)
        return model.eval(), {"random_weights": True, "sha256": None, "with_ibn": True, "num_classes": 0,
                              "stem_pool": stem_pool, "mappings": []}
    return load_checkpoint(args.reid_weights, args.stem_pool)


def load_checkpoint(path: Path, stem_pool: str) -> tuple[torch.nn.Module, dict]:
    """A fast-reid checkpoint, strictly loaded, and what was detected in it."""
    from metrics.reid_net import load_fastreid_checkpoint

    model, info = load_fastreid_checkpoint(path, stem_pool=stem_pool)
    return model, {"random_weights": False, **info}


def embed_once(model: torch.nn.Module, paths: list[Path], embed: dict):
    """Features of every distinct path, computed once; returns (lookup(paths) -> (N, D) features, seconds)."""
    unique = list(dict.fromkeys(paths))
    feats, seconds = timed_features(model, unique, **embed)
    row = {p: i for i, p in enumerate(unique)}
    return (lambda wanted: feats[[row[p] for p in wanted]]), seconds


def format_table(report: dict) -> str:
    c = report["counts"]
    lines = [f"re-id, protocol {report['protocol']} ({report['dataset']}): {c['queries']} queries, gallery "
             f"{c['gallery_images']} images; query and gallery lists sorted by file name",
             f"{'rule':<10} {'Rank-1':>7} {'Rank-5':>7} {'Rank-10':>7} {'mAP':>7} {'mINP':>7} {'metric':>7} "
             f"{'valid':>6} {'skipped':>7} {'junk':>8}"]
    for name, r in report["results"].items():
        lines.append(f"{name:<10} {r['rank1']:7.2f} {r['rank5']:7.2f} {r['rank10']:7.2f} {r['mAP']:7.2f} "
                     f"{r['mINP']:7.2f} {r['metric']:7.2f} {r['valid_queries']:6d} {r['skipped_queries']:7d} "
                     f"{r['junk_items']:8d}")
    for name, text in report["rules"].items():
        lines.append(f"  {name}: {text}")
    s = report["settings"]
    lines.append(f"  distance {report['metric']}{' + re-ranking' if s['rerank'] else ''}, mAP = {AP_TEXT[s['ap']]}, "
                 f"metric = (mAP + Rank-1)/2, size {s['size'][0]}x{s['size'][1]}, flip {s['flip']}")
    return "\n".join(lines)


def rule_texts(args) -> dict[str, str]:
    if args.protocol != "generated":
        return {"fastreid": "junk = same pid and same camera as the query (fast-reid ReidEvaluator, Market)"}
    cam = {"target": "query camera = cam(to)", "source": "query camera = cam(from)",
           "none": "no camera rule (a query camera no gallery image has)"}[args.cam_rule]
    source = ", the source image is junk" if args.junk_source else ""
    self_note = "; the real target itself is junk" if args.query_source == "real" else ""
    return {"headline": f"{cam}{source}{self_note}",
            "fastreid": f"plain fast-reid rule: query camera = cam(to), same pid+camera junk{self_note}"}


def run(args: argparse.Namespace) -> dict:
    """The whole evaluation for parsed options; returns the report (also written to --out)."""
    validate(args)
    metric = args.metric or ("euclidean" if args.protocol == "pngan" else "cosine")
    gallery, dropped = list_items(args.dataroot / "test", args.dataset, args.fashion_pid, drop_junk=True)
    g_pids, g_cams = np.array([i.pid for i in gallery]), np.array([i.camid for i in gallery])
    extra = {}
    if args.protocol == "generated":
        lists = generated_lists(args, gallery)
        q_paths, q_pids, rules = lists.pop("paths"), lists.pop("pids"), lists.pop("rules")
        extra = lists
    else:
        if not (args.dataroot / "query").is_dir():
            raise InputError(f"--protocol {args.protocol} needs the real query images in {args.dataroot / 'query'} "
                             "(python -m datasets.prepare_market copies Market-1501's query/ there)")
        queries, _ = list_items(args.dataroot / "query", args.dataset, args.fashion_pid)
        q_paths, q_pids = [q.path for q in queries], np.array([q.pid for q in queries])
        rules = {"fastreid": (np.array([q.camid for q in queries]), None)}
        if args.protocol == "pngan":
            canon = canonical_paths(args.canonical_dir, queries + gallery)
    model, arch = load_network(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    embed = dict(size=tuple(args.size), batch_size=args.batch_size, device=device, flip=args.flip,
                 num_workers=args.num_workers)
    pn_arch = None
    if args.protocol == "pngan":
        originals = list(q_paths) + [g.path for g in gallery]
        canon_model = model
        if args.pn_weights is not None:
            canon_model, pn_arch = load_checkpoint(args.pn_weights, args.stem_pool)
            canon_model.to(device)
        wanted = {"canonical": [] if args.pn_combine == "orig_only" else [p for group in canon for p in group],
                  "original": [] if args.pn_combine == "pn_only" else originals}
        if canon_model is model:  # one network: each image embedded once
            merged, seconds = embed_once(model, wanted["canonical"] + wanted["original"], embed)
            feats = {k: merged(paths) for k, paths in wanted.items()}
            unique = len(set(wanted["canonical"] + wanted["original"]))
        else:
            feats, seconds = {}, 0.0
            for key, net in (("canonical", canon_model), ("original", model)):
                if not wanted[key]:
                    continue
                lookup, took = embed_once(net, wanted[key], embed)
                feats[key], seconds = lookup(wanted[key]), seconds + took
            unique = len(set(wanted["canonical"])) + len(set(wanted["original"]))
        fused = original = None
        if wanted["canonical"]:
            fused = fuse_poses(feats["canonical"].reshape(len(canon), CANONICAL_POSES, -1), args.pn_fusion)
        if wanted["original"]:
            original = feats["original"]
        final = combine(original, fused, args.pn_combine)
        q_feat, g_feat = final[:len(q_paths)], final[len(q_paths):]
    else:
        lookup, seconds = embed_once(model, list(q_paths) + [g.path for g in gallery], embed)
        q_feat, g_feat = lookup(q_paths), lookup([g.path for g in gallery])
        unique = len(set(q_paths) | {g.path for g in gallery})
    rerank = {"k1": args.k1, "k2": args.k2, "lambda": args.lambda_value} if args.rerank else None
    results = score(q_feat, g_feat, q_pids, g_pids, g_cams, rules, metric, rerank, args.ap, device)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["size"] = list(args.size)
    report = {"protocol": args.protocol, "dataset": args.dataset, "metric": metric, "settings": settings,
              "weights": arch, "weights_pn": pn_arch or "same as weights", "device": str(device), "rules": rule_texts(args),
              "headline": "headline" if "headline" in results else "fastreid",
              "lists": "query and gallery sorted by file name; ties in the ranking keep gallery order",
              "counts": {"queries": len(q_paths), "gallery_images": len(gallery), "gallery_junk_dropped": dropped,
                         "images_embedded": unique, **extra},
              "timing": {"feature_seconds": round(seconds, 3),
                         "seconds_per_100_images": round(100 * seconds / max(unique, 1), 3)},
              "results": results, "torch": torch.__version__}
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    return report


def evaluate_standard(model: torch.nn.Module, dataroot: Path, *, size=(256, 128), batch_size: int = 128,
                      device=None, flip: bool = False, metric: str = "cosine", rerank: bool = False) -> dict:
    """The standard Market protocol (query/ against test/ without pid -1) on an in-memory network.

    Returns {"rank1", "rank5", "rank10", "mAP", "mINP", "metric" ((mAP + Rank-1)/2), "valid_queries",
    "skipped_queries", "gallery_images", "distance"}; the model's train/eval mode is restored.
    """
    dataroot = Path(dataroot)
    gallery, _ = list_items(dataroot / "test", "market", drop_junk=True)
    queries, _ = list_items(dataroot / "query", "market")
    paths = [q.path for q in queries] + [g.path for g in gallery]
    feats, _ = timed_features(model, paths, size=tuple(size), batch_size=batch_size, device=device, flip=flip)
    rules = {"fastreid": (np.array([q.camid for q in queries]), None)}
    rr = {"k1": 20, "k2": 6, "lambda": 0.3} if rerank else None
    device = device if device is not None else next(model.parameters()).device
    result = score(feats[:len(queries)], feats[len(queries):], np.array([q.pid for q in queries]),
                   np.array([g.pid for g in gallery]), np.array([g.camid for g in gallery]), rules, metric, rr,
                   device=device)
    r = result["fastreid"]
    keys = ("rank1", "rank5", "rank10", "mAP", "mINP", "metric", "valid_queries", "skipped_queries")
    return {**{k: r[k] for k in keys}, "gallery_images": len(gallery), "distance": metric}


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: evaluate, print the table, write --out."""
    args = build_parser().parse_args(argv)
    report = run(args)
    print(format_table(report))
    if args.out is not None:
        print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
