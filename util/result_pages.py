"""Test result pages that stay a normal scroll at any test-set size: panels in a wrapping grid, paginated.

A test run of a few hundred pairs used to give one page with one panel per row (35,000-59,000 px tall).
Here panels flow in rows up to PAGE_WIDTH px and a page holds at most `page_size` panels; where that many
would still be taller than MAX_PAGE_HEIGHT, the panels are drawn smaller (never below MIN_WIDTH, and the
files on disk are never touched). One page: `index.html` is that page. More: `index.html` lists the pages
(panel range, first and last caption) and `page_001.html` ... each links to the index, prev and next.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from util.html import HTML

PAGE_WIDTH = 1400  # px: the grid's max-width (div.grid in util/html.py)
MAX_PAGE_HEIGHT = 14000  # px a page aims at: a few dozen screens of scrolling
MIN_WIDTH = 96  # px: panels are never drawn narrower than this, however many a page holds
GAP = 8  # px between panels (div.grid gap)
CAPTION = 34  # px under each panel: up to two caption lines
PAGE_TOP = 160  # px: title, header text and navigation above the grid
PAGE_NAME = re.compile(r"page_\d{3,}\.html")


@dataclass(frozen=True)
class Panel:
    image: str  # relative to the page folder
    caption: str
    size: tuple[int, int]  # preferred display (width, height) in px


def page_file(number: int) -> str:
    """`page_001.html` for page 1 (of several)."""
    return f"page_{number:03d}.html"


def columns(width: int) -> int:
    """How many panels `width` px wide fit in one grid row."""
    return max(1, (PAGE_WIDTH + GAP) // (width + GAP))


def page_height(width: int, height: int, count: int) -> int:
    """Estimated height in px of a page of `count` panels drawn width x height."""
    rows = math.ceil(count / columns(width))
    return PAGE_TOP + rows * (height + CAPTION + GAP)


def fit_size(size: tuple[int, int], count: int) -> tuple[int, int]:
    """The display size: the preferred one, shrunk (aspect kept) until `count` panels fit MAX_PAGE_HEIGHT."""
    width, height = size
    scale = min(1.0, PAGE_WIDTH / width)
    while True:
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        if page_height(w, h, count) <= MAX_PAGE_HEIGHT or w * 0.9 < MIN_WIDTH:
            return w, h
        scale *= 0.9


class ResultPages:
    """Collects panels (image files written by the caller under `web_dir`) and writes the pages in save()."""

    def __init__(self, web_dir: str | os.PathLike, title: str, header: str = "", page_size: int = 100) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.web_dir = Path(web_dir)
        self.title, self.header, self.page_size = title, header, int(page_size)
        self.panels: list[Panel] = []

    def get_image_dir(self) -> Path:
        """`<web_dir>/images`, where PATN's panels go (util.html.HTML's name)."""
        return self.web_dir / "images"

    def add(self, image: str, caption: str, size: tuple[int, int]) -> None:
        """One panel: its file (relative to web_dir), caption and preferred display size (width, height)."""
        self.panels.append(Panel(str(image), caption, (int(size[0]), int(size[1]))))

    def chunks(self) -> list[list[Panel]]:
        """The panels of each page, in order (one empty page when there are none)."""
        return [self.panels[i:i + self.page_size] for i in range(0, len(self.panels), self.page_size)] or [[]]

    def save(self) -> Path:
        """Write every page atomically, remove page files an earlier, longer run left; returns index.html."""
        chunks = self.chunks()
        pages = [page_file(k) for k in range(1, len(chunks) + 1)] if len(chunks) > 1 else ["index.html"]
        start = 0
        for number, (name, chunk) in enumerate(zip(pages, chunks), start=1):
            page = HTML(self.web_dir, self.title if len(pages) == 1 else f"{self.title}, page {number}")
            page.add_header(page.title, level=2)
            if self.header:
                page.add_text(self.header)
            if len(pages) > 1:
                page.add_links(self.navigation(pages, number), f"page {number} of {len(pages)}, panels "
                                                                f"{start + 1}-{start + len(chunk)} of {len(self.panels)}:")
            self.add_grid(page, chunk)
            if len(pages) > 1 and len(chunk) > 10:
                page.add_links(self.navigation(pages, number))
            page.save(name)
            start += len(chunk)
        if len(pages) > 1:
            self.save_index(pages, chunks)
        for stale in self.web_dir.glob("page_*.html"):
            if PAGE_NAME.fullmatch(stale.name) and stale.name not in pages:
                stale.unlink()
        return self.web_dir / "index.html"

    @staticmethod
    def navigation(pages: list[str], number: int) -> list[tuple[str, str | None]]:
        previous = pages[number - 2] if number > 1 else None
        following = pages[number] if number < len(pages) else None
        return [("index", "index.html"), ("< prev", previous), ("next >", following)]

    def add_grid(self, page: HTML, chunk: list[Panel]) -> None:
        if not chunk:
            page.add_text("no panels")
            return
        width = max(p.size[0] for p in chunk)
        height = max(p.size[1] for p in chunk)
        width, height = fit_size((width, height), self.page_size)
        page.add_grid([p.image for p in chunk], [p.caption for p in chunk], [p.image for p in chunk], width, height)

    def save_index(self, pages: list[str], chunks: list[list[Panel]]) -> None:
        index = HTML(self.web_dir, self.title)
        index.add_header(self.title, level=2)
        if self.header:
            index.add_text(self.header)
        index.add_text(f"{len(self.panels)} panels on {len(pages)} pages of up to {self.page_size}")
        index.add_links([(str(k), name) for k, name in enumerate(pages, start=1)], "pages:")
        rows, start = [], 0
        for name, chunk in zip(pages, chunks):
            rows.append((name, f"{start + 1}-{start + len(chunk)}", chunk[0].caption, chunk[-1].caption))
            start += len(chunk)
        index.add_table(rows, ["page", "panels", "first", "last"], link_first=True)
        index.save("index.html")
