"""The README is a newcomer's guide: short, its two install commands intact, its "your own
method" snippet runnable as written, and every relative link in it and in docs/ alive."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
MAX_BYTES = 15_000
COMMANDS = ('pip install -e . && python -m benchmarks.run --suite inr',
            'pip install -e ".[test]" && python -m pytest')
# a tiny digits-inr build (tests/test_benchmarks/cli_helpers.py FAST), one seed, one epoch
EXTRA = ["--seeds", "0", "--epochs", "1", "--limit", "12", "--dataset-option", "steps=20"]
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def snippet(name: str, language: str) -> str:
    """The fenced ``language`` block right after ``<!-- snippet: name -->`` in the README."""
    found = re.search(rf"<!-- snippet: {re.escape(name)} -->\s*```{language}\n(.*?)^```", README.read_text(),
                      re.S | re.M)
    assert found, f"README.md has no ```{language} block after <!-- snippet: {name} -->"
    return found.group(1)


def test_readme_is_short_and_keeps_the_two_commands():
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size:,} bytes; at most {MAX_BYTES:,} (details go to docs/)"
    text = README.read_text()
    for command in COMMANDS:
        assert command in text, f"README.md lost the command {command!r}"


def test_your_own_method_snippet_runs_as_written(tmp_path):
    code = snippet("your-own-method", "python")
    lines = [line for line in snippet("your-own-method-command", "bash").splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one command, got {lines}"
    argv = shlex.split(lines[0])
    assert argv[:3] == ["python", "-m", "benchmarks.run"], argv
    plugin, method = argv[argv.index("--plugin") + 1], argv[argv.index("--methods") + 1]
    (tmp_path / plugin).write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSBENCH_")}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, *argv[1:], *EXTRA, "--data-root", str(tmp_path / "data"),
                           "--out", str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    paths = sorted((tmp_path / "out" / "records").rglob("*.json"))
    records = [json.loads(p.read_text()) for p in paths]
    mine = [r for r in records if r["config"]["method"] == method]
    assert mine, f"no record of {method} among {[str(p) for p in paths]}"
    assert all(r["status"] == "ok" for r in mine), [r.get("reason") for r in mine]
    origin = mine[0]["config"]["method_origin"]
    assert origin["module"] == Path(plugin).stem and origin["source_sha256"], origin


def outside_code(path: Path) -> list[str]:
    """The lines of a Markdown file that are not inside a fenced code block."""
    kept, fenced = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return kept


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in outside_code(path) if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page):
    broken = []
    for line in outside_code(page):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{target}: no heading with anchor #{anchor} in {path.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
