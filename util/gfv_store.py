"""On-disk store of global feature vectors (GFVs): one array per (from, to) pair, a manifest and a meta file.

Layout of a store folder:
- `manifest.csv`: header `from,to,file`, one row per pair in export order; `file` is the pair's `.npy` (pack
  "files") or `gfv.npy` (pack "memmap", where row i is index i of that array);
- `gfv_meta.json`: format_version, source, shape, dtype, phase, count, pack, legacy_names, provenance and
  per-channel statistics (min/max/mean/std over everything stored, accumulated in float64; channel = first axis);
- pack "files": one `np.save`d (C, H, W) array per pair, no batch dimension (kevinleewy/Human-Pose-Transfer,
  branch RL-GAN-NET, `generateGFV.py`); pack "memmap": one (N, C, H, W) `gfv.npy` written through
  `np.lib.format.open_memmap`, which avoids hundreds of thousands of small files.

The writer builds the store in a hidden sibling folder and swaps it into place at `close()`, so a failed or
refused run leaves an earlier export intact. docs/gfv.md describes the format and the commands.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import weakref
from pathlib import Path

import numpy as np

from util.io import InputError, atomic_write, atomic_write_text

FORMAT_VERSION = 1
MANIFEST = "manifest.csv"
META = "gfv_meta.json"
MEMMAP_FILE = "gfv.npy"
DTYPES = ("float32", "float16")
PACKS = ("files", "memmap")
MANIFEST_HEADER = ["from", "to", "file"]
REQUIRED_META = ("format_version", "source", "shape", "dtype", "phase", "count", "pack")


def gfv_file_name(from_name: str, to_name: str, legacy: bool = False) -> str:
    """`<from stem>_2_<to stem>_gfv.npy`, or with `legacy` KLW's `<from>___<to>_vis.npy` (full names)."""
    if legacy:
        return f"{from_name}___{to_name}_vis.npy"
    return f"{Path(from_name).stem}_2_{Path(to_name).stem}_gfv.npy"


def npy_header_bytes(shape: tuple[int, ...], dtype: str) -> int:
    """Size of the header `np.save` writes for an array of this shape and dtype (a multiple of 64)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return len(buffer.getvalue())


def bytes_per_file(shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of one `.npy` file holding an array of `shape` (Market (384, 32, 16): 786,560 float32, 393,344
    float16)."""
    return npy_header_bytes(shape, dtype) + math.prod(shape) * np.dtype(dtype).itemsize


def store_bytes(shape: tuple[int, ...], dtype: str, count: int, pack: str) -> int:
    """Bytes the arrays of a store of `count` GFVs take on disk (manifest and meta not counted)."""
    if pack == "memmap":
        return bytes_per_file((count, *shape), dtype)
    return count * bytes_per_file(shape, dtype)


def format_size(n_bytes: int) -> str:
    """`216.8 GB (201.9 GiB)`: decimal and binary units side by side."""
    return f"{n_bytes / 1e9:.1f} GB ({n_bytes / 2 ** 30:.1f} GiB)"


def holds_store(folder: Path) -> bool:
    """Whether `folder` holds a GFV store or GFV arrays (also a KLW-style folder without a manifest)."""
    if not folder.is_dir():
        return False
    return any((folder / name).exists() for name in (MANIFEST, META, MEMMAP_FILE)) or \
        any(folder.glob("*_gfv.npy")) or any(folder.glob("*_vis.npy"))


class GFVStore:
    """Read a GFV store: `store[i]` is the GFV of manifest row i, (C, H, W) in the stored dtype."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.meta = self._read_meta()
        self.shape: tuple[int, ...] = tuple(int(s) for s in self.meta["shape"])
        self.dtype: np.dtype = np.dtype(self.meta["dtype"])
        self.phase = self.meta["phase"]
        self.source: str = self.meta["source"]
        self.pack: str = self.meta["pack"]
        self.rows: list[tuple[str, str, str]] = self._read_manifest()
        self._index: dict[tuple[str, str], int] | None = None
        self._memmap = None
        if self.pack == "memmap":
            self._open_memmap()
        else:
            present = set(os.listdir(self.folder))
            for row, (_, _, name) in enumerate(self.rows, start=2):
                if name not in present:
                    raise InputError(f"{self.folder / MANIFEST} row {row}: GFV file {self.folder / name} is missing")

    def _read_meta(self) -> dict:
        path = self.folder / META
        if not self.folder.is_dir():
            raise InputError(f"GFV folder {self.folder} does not exist")
        if not path.is_file():
            raise InputError(f"{path} is missing: {self.folder} is not a GFV store (export one with test.py "
                             "--model PG2 --export_gfv)")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise InputError(f"{path} must hold a JSON object")
        missing = [key for key in REQUIRED_META if key not in meta]
        if missing:
            raise InputError(f"{path} lacks the key(s) {', '.join(missing)}")
        if meta["format_version"] != FORMAT_VERSION:
            raise InputError(f"{path}: format_version {meta['format_version']!r}, this code reads {FORMAT_VERSION}")
        if meta["dtype"] not in DTYPES:
            raise InputError(f"{path}: dtype {meta['dtype']!r}, expected one of {', '.join(DTYPES)}")
        if meta["pack"] not in PACKS:
            raise InputError(f"{path}: pack {meta['pack']!r}, expected one of {', '.join(PACKS)}")
        shape = meta["shape"]
        if not (isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape)):
            raise InputError(f"{path}: shape {shape!r} is not a list of positive integers")
        if not isinstance(meta["count"], int) or meta["count"] < 0:
            raise InputError(f"{path}: count {meta['count']!r} is not a non-negative integer")
        return meta

    def _read_manifest(self) -> list[tuple[str, str, str]]:
        path = self.folder / MANIFEST
        if not path.is_file():
            raise InputError(f"{path} is missing: the GFV store {self.folder} is incomplete")
        with open(path, newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
        if not lines or lines[0] != MANIFEST_HEADER:
            raise InputError(f"{path}: header must be {','.join(MANIFEST_HEADER)}, got "
                             f"{','.join(lines[0]) if lines else '(empty file)'}")
        rows = []
        for number, line in enumerate(lines[1:], start=2):
            if len(line) != 3 or not all(line):
                raise InputError(f"{path} row {number}: expected 3 non-empty fields from,to,file, got {line}")
            if self.pack == "memmap" and line[2] != MEMMAP_FILE:
                raise InputError(f"{path} row {number}: pack memmap stores every GFV in {MEMMAP_FILE}, "
                                 f"the row names {line[2]}")
            rows.append((line[0], line[1], line[2]))
        if len(rows) != self.meta["count"]:
            raise InputError(f"{path} has {len(rows)} rows, {self.folder / META} says count {self.meta['count']}")
        return rows

    def _open_memmap(self) -> None:
        path = self.folder / MEMMAP_FILE
        if not path.is_file():
            raise InputError(f"GFV file {path} is missing")
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InputError(f"{path} is not a readable .npy file: {exc}") from None
        expected = (len(self.rows), *self.shape)
        if array.shape != expected or array.dtype != self.dtype:
            raise InputError(f"{path} holds {array.dtype} {array.shape}, {self.folder / META} says "
                             f"{self.dtype} {expected}")
        self._memmap = array

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        """The GFV of manifest row i: (C, H, W) (or (64,) for g1_z), stored dtype; memmap rows read lazily."""
        if not -len(self.rows) <= i < len(self.rows):
            raise IndexError(f"GFV index {i} out of range for {len(self.rows)} rows in {self.folder}")
        if self._memmap is not None:
            return np.array(self._memmap[i])  # a private, writable copy of one row
        path = self.folder / self.rows[i][2]
        try:
            array = np.load(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"GFV file {path} is not a readable .npy file: {exc}") from None
        if array.shape != self.shape or array.dtype != self.dtype:
            raise InputError(f"GFV file {path} holds {array.dtype} {array.shape}, {self.folder / META} says "
                             f"{self.dtype} {self.shape}")
        return array

    def index_of(self, from_name: str, to_name: str) -> int:
        """The manifest row of the pair (from, to) (its first row if listed twice)."""
        if self._index is None:
            self._index = {}
            for i, (a, b, _) in enumerate(self.rows):
                self._index.setdefault((a, b), i)
        try:
            return self._index[(from_name, to_name)]
        except KeyError:
            raise InputError(f"pair ({from_name}, {to_name}) is not in the GFV store {self.folder} "
                             f"({len(self.rows)} pairs, phase {self.phase})") from None


class ChannelStats:
    """Per-channel min/max/mean/std (population) over many arrays, merged in float64 (Chan et al.)."""

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.mean = np.zeros(channels, np.float64)
        self.m2 = np.zeros(channels, np.float64)
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)

    def add(self, array: np.ndarray) -> None:
        values = array.reshape(array.shape[0], -1).astype(np.float64)  # (C, values per channel)
        k = values.shape[1]
        mean = values.mean(axis=1)
        m2 = ((values - mean[:, None]) ** 2).sum(axis=1)
        total = self.n + k
        delta = mean - self.mean
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.n * k / total)
        self.n = total
        np.minimum(self.min, values.min(axis=1), out=self.min)
        np.maximum(self.max, values.max(axis=1), out=self.max)

    def as_dict(self) -> dict[str, list[float]]:
        if self.n == 0:
            return {"min": [], "max": [], "mean": [], "std": []}
        return {"min": self.min.tolist(), "max": self.max.tolist(), "mean": self.mean.tolist(),
                "std": np.sqrt(self.m2 / self.n).tolist()}


class GFVStoreWriter:
    """Write a GFV store of `count` arrays of `shape`, in order; nothing appears at `folder` before `close()`.

    Args:
        folder: the store folder. One that already holds a store needs `overwrite`; the old store stays until
            the new one is complete. A non-empty folder that holds something else is refused.
        shape: (C, H, W) of one GFV ((64,) for G1's z).
        dtype: "float32" or "float16" (arrays are cast to it; the statistics describe the stored values).
        count: how many pairs `add` will receive; `close` checks it.
        pack: "files" (one .npy per pair) or "memmap" (one (N, C, H, W) gfv.npy).
        meta: provenance for gfv_meta.json; must name `source` and `phase`; extra keys are kept.
        legacy_names: name files `<from>___<to>_vis.npy` (KLW) instead of `<from stem>_2_<to stem>_gfv.npy`.

    The disk estimate is printed, and checked against the free space, before anything is written.
    """

    def __init__(self, folder: str | os.PathLike, shape: tuple[int, ...], dtype: str, count: int, pack: str,
                 meta: dict, overwrite: bool, legacy_names: bool = False) -> None:
        self.folder = Path(folder)
        self.shape = tuple(int(s) for s in shape)
        if dtype not in DTYPES:
            raise InputError(f"GFV dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if pack not in PACKS:
            raise InputError(f"GFV pack must be one of {', '.join(PACKS)}, got {pack!r}")
        if count < 1:
            raise InputError(f"a GFV store needs at least one pair, got count {count}")
        missing = [key for key in ("source", "phase") if key not in meta]
        if missing:
            raise ValueError(f"GFVStoreWriter meta must name {', '.join(missing)}")
        self.dtype, self.count_expected, self.pack, self.legacy_names = dtype, int(count), pack, legacy_names
        self.meta = dict(meta)
        self.overwrite = overwrite
        self.check_folder()
        self.estimate = store_bytes(self.shape, dtype, self.count_expected, pack)
        self.check_room()
        per_file = (f"{self.count_expected} x {bytes_per_file(self.shape, dtype):,} B" if pack == "files" else
                    f"one {(self.count_expected, *self.shape)} {dtype} array")
        print(f"GFV export: {per_file} = {format_size(self.estimate)} into {self.folder}")

        self.rows: list[tuple[str, str, str]] = []
        self.names: set[str] = set()
        self.stats = ChannelStats(self.shape[0])
        self.closed = False
        place = self.folder.resolve()  # ("." has no name to build a sibling from)
        self.tmp = place.parent / f".{place.name}.partial-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        # a run that dies before close() leaves no half store behind (the old one, if any, is untouched)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.tmp), True)
        self.memmap = None
        if pack == "memmap":
            self.memmap = np.lib.format.open_memmap(self.tmp / MEMMAP_FILE, mode="w+", dtype=dtype,
                                                    shape=(self.count_expected, *self.shape))

    @property
    def count(self) -> int:
        """GFVs added so far."""
        return len(self.rows)

    def check_folder(self) -> None:
        if not self.folder.exists():
            return
        if not self.folder.is_dir():
            raise InputError(f"GFV folder {self.folder} exists and is not a folder")
        if holds_store(self.folder):
            if not self.overwrite:
                raise InputError(f"{self.folder} already holds a GFV export; pass --overwrite to replace it "
                                 "(the old one stays until the new one is complete), or choose another --gfv_dir")
        elif any(self.folder.iterdir()):
            raise InputError(f"{self.folder} is not empty and holds no GFV export; choose an empty or new "
                             "--gfv_dir (an export replaces its whole folder)")

    def check_room(self) -> None:
        probe = self.folder
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if free < self.estimate:
            raise InputError(f"not enough disk space for the GFV export into {self.folder}: it needs about "
                             f"{format_size(self.estimate)} ({self.count_expected} pairs, "
                             f"{bytes_per_file(self.shape, self.dtype):,} B each), {format_size(free)} free")

    def add(self, from_name: str, to_name: str, array: np.ndarray) -> None:
        """Append the GFV of pair (from, to): an array of `shape` (cast to the store's dtype)."""
        if self.closed:
            raise RuntimeError("GFVStoreWriter.add after close")
        array = np.asarray(array)
        if array.shape != self.shape:
            raise InputError(f"GFV of pair ({from_name}, {to_name}) has shape {array.shape}, the store holds "
                             f"{self.shape}")
        if self.count >= self.count_expected:
            raise InputError(f"GFV store {self.folder} was opened for {self.count_expected} pairs; pair "
                             f"({from_name}, {to_name}) is one too many")
        array = array.astype(self.dtype, copy=False)
        if self.memmap is not None:
            self.memmap[self.count] = array
            name = MEMMAP_FILE
        else:
            name = gfv_file_name(from_name, to_name, self.legacy_names)
            if name in self.names:
                raise InputError(f"pair ({from_name}, {to_name}) would be written twice as {name}: the pair list "
                                 "repeats it (use --gfv_pack memmap, which keeps repeated pairs)")
            self.names.add(name)
            atomic_write(self.tmp / name, lambda f: np.save(f, array))
        self.stats.add(array)
        self.rows.append((from_name, to_name, name))

    def close(self) -> Path:
        """Check the count, write manifest.csv and gfv_meta.json, move the store into place; returns its folder."""
        if self.closed:
            return self.folder
        if self.count != self.count_expected:
            self._cleanup()
            raise InputError(f"GFV export into {self.folder} got {self.count} pairs, expected "
                             f"{self.count_expected}; nothing was written")
        if self.memmap is not None:
            self.memmap.flush()
            self.memmap = None  # unmapped when the last reference goes
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(MANIFEST_HEADER)
        writer.writerows(self.rows)
        atomic_write_text(self.tmp / MANIFEST, buffer.getvalue())
        meta = dict(self.meta)
        meta.update(format_version=FORMAT_VERSION, shape=list(self.shape), dtype=self.dtype, count=self.count,
                    pack=self.pack, legacy_names=self.legacy_names, stats=self.stats.as_dict())
        atomic_write_text(self.tmp / META, json.dumps(meta, indent=2) + "\n")
        self._swap_into_place()
        self.closed = True
        return self.folder

    def _swap_into_place(self) -> None:
        old = None
        if self.folder.exists():
            place = self.folder.resolve()
            old = place.parent / f".{place.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.folder, old)
        os.replace(self.tmp, self.folder)
        self._cleanup.detach()
        if old is not None:
            shutil.rmtree(old)

    def abort(self) -> None:
        """Drop what was written (the temporary folder); an earlier store at `folder` stays."""
        self.memmap = None
        self._cleanup()
        self.closed = True
