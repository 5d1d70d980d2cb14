"""Shared checks of the refusal tests: a refused command exits 2 with one `error:` line and changes nothing."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (or 'dir') of everything under `root`: equal snapshots = nothing changed."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def refused(root: Path, main: Callable[[list[str]], int], argv: list[str], capsys, *culprits: str) -> str:
    """`main(argv)` exits 2 with one `error:` line naming every culprit, and nothing under `root` changed."""
    before = snapshot(root)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for culprit in culprits:
        assert culprit in err, err
    assert snapshot(root) == before
    return err
