"""The guard of a results folder: generated images of one run, epoch and setting only, unless --overwrite."""
from __future__ import annotations

import os
from pathlib import Path

from util.io import InputError, atomic_write_text

RESULTS_MARKER = "results_of.txt"  # which run, epoch and settings produced the images in a results folder
RESULT_PATTERNS = ("*_vis.*", "images/*_vis.*", "*_to_*.png", "*_sample_*.*", "*_interpolate_*.*",
                   "*_interpolate.gif")  # what test.py's modes write (single, patn5, canonical, DPIG's tasks)


def claim_results_dir(folder: str | os.PathLike, owner: str, overwrite: bool) -> Path:
    """Refuse a folder that holds results another owner (run, epoch, task, settings) wrote, unless `overwrite`;
    then record `owner` in its marker file. `owner` is the marker's text."""
    folder = Path(folder)
    marker = folder / RESULTS_MARKER
    held = folder.is_dir() and any(any(folder.glob(pattern)) for pattern in RESULT_PATTERNS)
    if held and not overwrite:
        previous = marker.read_text() if marker.is_file() else "(unknown: no results_of.txt)"
        if previous != owner:
            raise InputError(f"{folder} already holds results of {' '.join(previous.split())}; pass --overwrite "
                             "to replace them, or choose another --results_dir")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, owner)
    return folder
