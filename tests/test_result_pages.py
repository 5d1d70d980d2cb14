"""Test result pages: panels in a wrapping grid, paginated, an index linking the pages, every image on disk."""
from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

import train as train_script
from util.result_pages import MAX_PAGE_HEIGHT, PAGE_WIDTH, ResultPages, columns, fit_size, page_height

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script_pages", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


class Page(HTMLParser):
    """The <img> sources (with their width/height attributes) and <a> targets of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "a":
            self._href = attrs["href"]
            self.links.append((self._href, ""))

    def handle_data(self, data):
        if self._href is not None and data.strip():
            self.links[-1] = (self._href, self.links[-1][1] + data.strip())

    def handle_endtag(self, tag):
        if tag == "a":
            self._href = None


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def nav(page: Page) -> dict[str, str]:
    """text -> href of the index/prev/next links."""
    return {text: href for href, text in page.links if text in ("index", "< prev", "next >")}


def assert_images_on_disk(web: Path, page: Page) -> None:
    for attrs in page.images:
        src = attrs["src"]
        assert not src.startswith("/") and "://" not in src
        assert (web / unquote(src)).is_file(), src
    for href, _ in page.links:
        assert (web / unquote(href)).is_file(), href


def write_panels(web: Path, count: int, size=(320, 128)) -> ResultPages:
    pages = ResultPages(web, "run", "source | generated", page_size=100)
    (web / "panels").mkdir(parents=True)
    tile = np.full((size[1], size[0], 3), 128, np.uint8)
    for i in range(count):
        name = f"panels/p{i:04d} #.jpg"  # a space and '#': links must be percent-encoded
        Image.fromarray(tile).save(web / name)
        pages.add(name, f"pair {i}", (size[0] * 2, size[1] * 2))
    return pages


def test_240_panels_make_three_linked_pages_and_an_index(tmp_path):
    web = tmp_path / "web"
    index = write_panels(web, 240).save()
    assert index == web / "index.html"
    names = sorted(p.name for p in web.glob("*.html"))
    assert names == ["index.html", "page_001.html", "page_002.html", "page_003.html"]
    first, second, last = (parse(web / n) for n in names[1:])
    assert [len(p.images) for p in (first, second, last)] == [100, 100, 40]
    assert nav(first) == {"index": "index.html", "next >": "page_002.html"}  # no prev on page 1
    assert nav(second)["< prev"] == "page_001.html" and nav(second)["next >"] == "page_003.html"
    assert nav(last) == {"index": "index.html", "< prev": "page_002.html"}
    contents = parse(web / "index.html")
    assert not contents.images
    assert {h for h, _ in contents.links} == {"page_001.html", "page_002.html", "page_003.html"}
    text = (web / "index.html").read_text()
    assert "240 panels on 3 pages of up to 100" in text and "201-240" in text and "pair 239" in text
    captions = [a["alt"] for p in (first, second, last) for a in p.images]
    assert captions == [f"pair {i}" for i in range(240)]  # every panel once, in order
    for page in (first, second, last, contents):
        assert_images_on_disk(web, page)
    # the grid: fixed sizes, several panels per row, width and estimated height within one screen's scroll
    width, height = int(first.images[0]["width"]), int(first.images[0]["height"])
    assert width <= PAGE_WIDTH and columns(width) >= 2 and abs(width / height - 2.5) < 0.02
    assert page_height(width, height, 100) <= MAX_PAGE_HEIGHT
    assert all((a["width"], a["height"]) == (str(width), str(height)) for p in (first, last) for a in p.images)


def test_one_page_is_the_index_and_stale_pages_go(tmp_path):
    web = tmp_path / "web"
    write_panels(web, 240).save()
    (web / "page_notes.html").write_text("kept: not a page name of ours")
    pages = ResultPages(web, "run", page_size=100)
    pages.add("panels/p0000 #.jpg", "pair 0", (640, 256))
    pages.save()
    assert sorted(p.name for p in web.glob("*.html")) == ["index.html", "page_notes.html"]
    page = parse(web / "index.html")
    assert len(page.images) == 1 and not nav(page)
    assert_images_on_disk(web, page)


@pytest.mark.parametrize("size, count", [((640, 256), 100), ((1760, 512), 100), ((256, 102), 1000),
                                         ((640, 256), 1)])
def test_fit_size_keeps_pages_within_bounds(size, count):
    width, height = fit_size(size, count)
    assert width <= min(size[0], PAGE_WIDTH) and abs(width / height - size[0] / size[1]) < 0.03
    if count == 1:
        assert (width, height) == size  # nothing to shrink for
    else:
        assert page_height(width, height, count) <= MAX_PAGE_HEIGHT


def test_page_size_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="page_size"):
        ResultPages(tmp_path, "run", page_size=0)


COMMON = ["--gpu_ids", "-1", "--num_threads", "0", "--ngf", "8", "--seed", "3", "--model", "PG2", "--stage", "1",
          "--dataset_mode", "market"]


def test_test_py_pages_both_layouts(tiny_market_root, tmp_path):
    ckpt = tmp_path / "ckpt"
    assert train_script.main(["--name", "pages", "--dataroot", str(tiny_market_root), "--checkpoints_dir", str(ckpt),
                              "--batchSize", "2", "--niter", "1", "--niter_decay", "0", "--max_steps", "1",
                              *COMMON]) == 0
    common = ["--name", "pages", "--dataroot", str(tiny_market_root), "--checkpoints_dir", str(ckpt), "--batchSize",
              "5", "--page_size", "4", "--how_many", "9", *COMMON]
    results = tmp_path / "single"
    assert test_script.main([*common, "--results_dir", str(results)]) == 0
    web = results / "web"
    pairs = len(list(results.glob("*_vis.jpg")))
    pages = sorted(web.glob("page_*.html"))
    assert pairs == 9 and len(pages) == 3
    counts = [len(parse(p).images) for p in pages]
    assert sum(counts) == pairs and all(c == 4 for c in counts[:-1])
    for page in [*pages, web / "index.html"]:
        assert_images_on_disk(web, parse(page))
    patn = tmp_path / "patn5"
    assert test_script.main([*common, "--results_dir", str(patn), "--result_layout", "patn5"]) == 0
    pages = sorted(patn.glob("page_*.html"))
    assert len(pages) == len(counts) and re.search(r"___", (patn / "index.html").read_text())
    for page in pages:
        parsed = parse(page)
        assert_images_on_disk(patn, parsed)
        assert all(a["src"].startswith("images/") for a in parsed.images)
    assert test_script.main([*common, "--results_dir", str(tmp_path / "bad"), "--page_size", "0"]) == 2
