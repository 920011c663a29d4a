"""The HTML leaderboard: built from fixed records, it holds the Markdown's tables cell for
cell, every figure as an embedded PNG, a sorting script and nothing from the network; in
headless Chromium (where installed) it renders, its images decode, and its headers sort."""

import base64
import copy
import importlib.util
import json
import re
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from benchmarks.leaderboard import write
from benchmarks.records import config_id, record_path, run_id, write_record
from test_leaderboard import RECORDS, record

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_leaderboard.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def variant(base: dict, config: dict, history_rise: float = 0.0) -> dict:
    """``base`` with nested ``config`` entries replaced (``{"hyperparameters": {"probes": 4}}``),
    its identity recomputed, and a validation curve rising by ``history_rise`` over its epochs."""
    r = copy.deepcopy(base)

    def merge(into: dict, changes: dict) -> None:
        for key, value in changes.items():
            merge(into[key], value) if isinstance(value, dict) and key in into else into.__setitem__(key, value)

    merge(r["config"], config)
    r["config_id"], r["run_id"] = config_id(r["config"]), run_id(r["config"], r["seed"])
    for h in r["history"]:
        h["val_accuracy"] = 0.1 + history_rise * h["epoch"] / len(r["history"])
    return r


# Ablations as published: NG-GNN against its number of probe inputs, DWSNet against views.
ABLATIONS = [variant(record("ng-gnn", seed, acc + 0.01 * seed, acc, 0.0), {"hyperparameters": {"probes": probes}},
                     history_rise=acc - 0.1)
             for probes, acc in ((0, 0.70), (4, 0.78), (16, 0.83)) for seed in (0, 1)]
ABLATIONS += [variant(record("dwsnet", 0, acc, acc, 0.0), {"data": {"options": {"views": views}}}, history_rise=0.5)
              for views, acc in ((1, 0.80), (2, 0.85), (5, 0.88))]


class Page(HTMLParser):
    """The parts of the page the checks need: tables as cell text, images, scripts, links."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[dict] = []
        self.scripts: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[a] for a in ("src", "href") if a in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "script":
            self._script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "script":
            self._script = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._script:
            self.scripts[-1] += data
        self.text.append(data)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def markdown_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            if current is None:
                current = []
                tables.append(current)
            current.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        elif not line.startswith("|---"):
            current = None
    return tables


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    for r in RECORDS + ABLATIONS:
        write_record(record_path(out, r["config"], r["seed"]), r)
    markdown = write(out)
    page = Page()
    page.feed((out / "leaderboard.html").read_text())
    return out, markdown, page


def test_the_page_holds_every_markdown_table_cell_for_cell(board):
    _, markdown, page = board
    expected = markdown_tables(markdown)
    assert len(page.tables) == len(expected) == 1
    assert [[c.replace("|", "/") for c in row] for row in page.tables[0]] == expected[0]
    assert len(expected[0]) == 1 + 4 + 3 + 3  # header, the configurations of RECORDS and of the ablations
    assert "nfn-np (n/a): dwsnet takes MLPs only" in "".join(page.text)


def test_every_figure_is_an_embedded_png_and_written_to_figures(board):
    out, _, page = board
    files = sorted((out / "figures").glob("*.png"))
    names = {f.name.removeprefix("quick-inr-digits-inr-").removesuffix(".png") for f in files}
    assert names == {"parameters", "throughput", "robustness", "curves", "probes", "views"}
    assert len(page.images) == len(files)
    embedded = set()
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,") and img["alt"]
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        width, height = png_size(data)
        assert 500 <= width <= 1200 and 300 <= height <= 800
        embedded.add(data)
    assert embedded == {f.read_bytes() for f in files}


def test_figures_without_enough_data_are_named_with_the_reason(tmp_path):
    for r in RECORDS:
        write_record(record_path(tmp_path, r["config"], r["seed"]), r)
    write(tmp_path)
    html = (tmp_path / "leaderboard.html").read_text()
    note = re.search(r'<p class="skipped">Not drawn: (.*?)</p>', html).group(1)
    assert "probes ablation (no method was run at two or more values of config.hyperparameters.probes)" in note
    assert "views ablation" in note and "learning curves" not in note
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == [
        f"quick-inr-digits-inr-{n}.png" for n in ("curves", "parameters", "robustness", "throughput")]


def test_the_page_is_self_contained_and_sortable(board):
    out, _, page = board
    html = (out / "leaderboard.html").read_text()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"https?:|//[a-z]|@import|url\(|<link|<iframe", text)
    for url in page.urls:
        assert url.startswith(("data:image/png;base64,", "#")) or (out / url).is_file(), url
    assert len(page.scripts) == 1 and 'querySelectorAll("table.sortable thead th")' in page.scripts[0]
    assert html.count('<table class="sortable">') == len(page.tables)


browser = pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                             reason="no chromium on PATH (apt-get install chromium) to render the page in")


@browser
def test_the_page_renders_in_chromium_with_every_figure_drawn(board, tmp_path):
    from PIL import Image

    out, _, page = board
    shot = tmp_path / "shot.png"
    done = subprocess.run([sys.executable, str(SCRIPT), str(out / "leaderboard.html"), "--png", str(shot)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    layout = json.loads(shot.with_suffix(".json").read_text())
    image = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert image.shape[1] == 1400 and image.shape[0] == layout["height"] > 1500
    assert image.std() > 20  # not a blank page
    assert len(layout["images"]) == len(page.images)
    for box in layout["images"]:
        assert box["decoded"] and box["natural_width"] > 500 and box["width"] > 400
        region = image[int(box["y"]):int(box["y"] + box["height"]), int(box["x"]):int(box["x"] + box["width"])]
        assert region.shape[0] > 250 and region.std() > 20  # a drawn figure, not a uniform patch
        colours = region.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
        assert len(np.unique(colours)) > 50  # lines, bars, text in several colours


@browser
def test_clicking_a_header_sorts_its_table_both_ways(board):
    spec = importlib.util.spec_from_file_location("screenshot_leaderboard", SCRIPT)
    shots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shots)
    out, _, _ = board
    column = """Array.from(document.querySelector("table.sortable").tBodies[0].rows).map(r => r.cells[2].textContent)"""
    click = """document.querySelector("table.sortable thead th:nth-child(3)").click()"""
    with shots.open_page(out / "leaderboard.html") as (tools, session):
        before = shots.evaluate(tools, session, column)
        shots.evaluate(tools, session, click)
        ascending = shots.evaluate(tools, session, column)
        shots.evaluate(tools, session, click)
        descending = shots.evaluate(tools, session, column)
    def numbers(cells):
        return [float(c.split(" ")[0]) for c in cells if c != "n/a"]

    assert sorted(before) == sorted(ascending) and before != ascending
    assert numbers(ascending) == sorted(numbers(ascending)) and ascending[-1] == "n/a"
    assert numbers(descending) == sorted(numbers(descending), reverse=True) and descending[-1] == "n/a"


def test_rescaled_runs_get_a_metric_against_scale_range_figure(tmp_path):
    """A table whose runs were rescaled at several ranges draws the metric against the range:
    one line per method, flat for a model whose metric does not move."""
    from benchmarks import figures
    from benchmarks.leaderboard import frame, sections, summary

    def rescaled(method: str, seed: int, drop: float) -> dict:
        r = record(method, seed, 0.8, 0.8, 0.0)
        r["robustness"].update({name: {"test": {"accuracy": 0.8 - drop * k}, "output_change": drop * k,
                                       "function_error": 0.0}
                                for k, name in enumerate(("rescale", "rescale_10", "rescale_100"), 1)})
        return r

    records = [rescaled("scalegmn", s, 0.0) for s in (0, 1)] + [rescaled("mlp", s, 0.2) for s in (0, 1)]
    section = sections(summary(frame(records)), ("quick",))[0]
    assert section.transforms == ("permutation", "rescale", "rescale_10", "rescale_100")
    drawn = figures.scale_ranges(section)
    assert isinstance(drawn, figures.Figure) and png_size(drawn.png)[0] >= 500
    # without rescaling (SIRENs) the figure is skipped with the reason
    plain = sections(summary(frame(RECORDS)), ("quick",))[0]
    skipped = figures.scale_ranges(plain)
    assert isinstance(skipped, figures.Skipped) and "no rescaling was measured" in skipped.reason
    for r in records:
        write_record(record_path(tmp_path, r["config"], r["seed"]), r)
    write(tmp_path)
    assert (tmp_path / "figures" / "quick-inr-digits-inr-scale_range.png").exists()
    assert "metric against the rescaling range" not in (tmp_path / "leaderboard.html").read_text()
