"""A small offline HTML page (dominate) for training visuals and test results.

Every link is relative to the page's folder and no external resource is referenced, so a copied
`web/` folder opens anywhere without a network. Nothing touches the disk until `save()`.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import dominate
from dominate import tags

from util.io import atomic_write_text

_STYLE = """
body { font-family: sans-serif; margin: 1em; }
table.images { table-layout: fixed; border-collapse: collapse; margin-bottom: 0.5em; }
table.images td { padding: 4px; text-align: center; vertical-align: top; word-wrap: break-word; }
table.images p { margin: 2px 0; font-size: 0.9em; }
table.data { border-collapse: collapse; }
table.data td, table.data th { border: 1px solid #999; padding: 2px 8px; }
div.grid { display: flex; flex-wrap: wrap; gap: 8px; max-width: 1400px; margin-bottom: 0.5em; }
div.grid figure { margin: 0; text-align: center; }
div.grid figcaption { font-size: 0.75em; line-height: 1.2; word-break: break-all; }
p.nav a { margin-right: 0.6em; }
"""


class HTML:
    """An HTML page at `<web_dir>/index.html` whose images live in `<web_dir>/images/`.

    refresh > 0 makes the browser reload the page every `refresh` seconds (useful while training).
    """

    def __init__(self, web_dir: str | os.PathLike, title: str, refresh: int = 0) -> None:
        self.web_dir = Path(web_dir)
        self.image_dir = self.web_dir / "images"
        self.title = title
        self.doc = dominate.document(title=title)
        with self.doc.head:
            tags.meta(charset="utf-8")
            if refresh > 0:
                tags.meta(http_equiv="refresh", content=str(int(refresh)))
            tags.style(_STYLE)

    def get_image_dir(self) -> Path:
        """Where images referenced by this page belong (pix2pix's name)."""
        return self.image_dir

    def url(self, path: str | os.PathLike) -> str:
        """A relative, percent-encoded link for `path` (relative to web_dir, or absolute inside it).

        Raises ValueError for URLs and for paths outside web_dir: the page must open offline.
        """
        text = os.fspath(path)
        if "://" in text or text.startswith("//"):
            raise ValueError(f"{text!r}: the page links only to local files relative to {self.web_dir}")
        p = Path(text)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.web_dir.resolve())
            except ValueError:
                raise ValueError(f"{text!r} is outside the page folder {self.web_dir}") from None
        posix = PurePosixPath(*p.parts)
        if ".." in posix.parts:
            raise ValueError(f"{text!r} leaves the page folder {self.web_dir}")
        return quote(str(posix), safe="/")

    def add_header(self, text: str, level: int = 3) -> None:
        """A heading (h1..h6) above what is added next."""
        heading = getattr(tags, f"h{min(max(level, 1), 6)}")
        with self.doc:
            heading(text)

    def add_text(self, text: str) -> None:
        """A paragraph of plain text (escaped)."""
        with self.doc:
            tags.p(text)

    def add_images(self, images: list, texts: list[str], links: list, width: int = 256) -> None:
        """One row of images, each with its caption below and a link (usually to the full-size file)."""
        if not (len(images) == len(texts) == len(links)):
            raise ValueError(f"add_images needs as many texts and links as images, got "
                             f"{len(images)} images, {len(texts)} texts, {len(links)} links")
        row_table = tags.table(cls="images")
        with row_table:
            with tags.tr():
                for image, text, link in zip(images, texts, links):
                    with tags.td(style=f"width:{int(width)}px"):
                        with tags.a(href=self.url(link)):
                            tags.img(src=self.url(image), style=f"width:{int(width)}px", alt=text)
                        tags.p(text)
        self.doc.add(row_table)

    def add_grid(self, images: list, texts: list[str], links: list, width: int, height: int) -> None:
        """Images in rows that wrap at the page width (max 1400 px), each `width` x `height` px with its
        caption below and a link; the fixed size lets the browser lay out the page before the files load."""
        if not (len(images) == len(texts) == len(links)):
            raise ValueError(f"add_grid needs as many texts and links as images, got "
                             f"{len(images)} images, {len(texts)} texts, {len(links)} links")
        grid = tags.div(cls="grid")
        with grid:
            for image, text, link in zip(images, texts, links):
                with tags.figure(style=f"width:{int(width)}px"):
                    with tags.a(href=self.url(link)):
                        tags.img(src=self.url(image), width=int(width), height=int(height), alt=text)
                    tags.figcaption(text)
        self.doc.add(grid)

    def add_links(self, links: list[tuple[str, str | None]], label: str = "") -> None:
        """One line of links [(text, target page or None for plain text)], e.g. prev | next | page numbers."""
        line = tags.p(cls="nav")
        with line:
            if label:
                tags.span(label + " ")
            for text, target in links:
                if target is None:
                    tags.b(text)
                else:
                    tags.a(text, href=self.url(target))
        self.doc.add(line)

    def add_table(self, rows: list[list[object]], header: list[str] | None = None, link_first: bool = False) -> None:
        """A small data table (e.g. metrics per checkpoint); cells are shown as text. `link_first`: each row's
        first cell is a local file, shown as a link to it."""
        data = tags.table(cls="data")
        with data:
            if header:
                with tags.tr():
                    for cell in header:
                        tags.th(str(cell))
            for row in rows:
                with tags.tr():
                    for i, cell in enumerate(row):
                        if i == 0 and link_first:
                            with tags.td():
                                tags.a(str(cell), href=self.url(str(cell)))
                        else:
                            tags.td(str(cell))
        self.doc.add(data)

    def render(self) -> str:
        """The page as an HTML string."""
        return self.doc.render()

    def save(self, filename: str = "index.html") -> Path:
        """Atomically write the page into web_dir (a reader never sees half a page)."""
        path = self.web_dir / filename
        atomic_write_text(path, self.render())
        return path
