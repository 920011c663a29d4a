"""Naming hazard: our package is called ``datasets``, like Hugging Face's. Inside a wsbench
process the name must be ours (or give one clear error); other code's ``import datasets``
must be left alone."""

import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks  # noqa: F401  (binds the name)
import datasets

REPO = Path(__file__).resolve().parents[2]
STAND_IN = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "datasets"
version = "99.0"

[tool.setuptools]
packages = ["datasets"]
"""


def test_datasets_is_the_local_package():
    assert Path(datasets.__file__).resolve().is_relative_to(REPO)


@pytest.mark.slow
def test_a_stand_in_hugging_face_datasets_neither_hides_ours_nor_is_hidden(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    stand_in = tmp_path / "stand-in"
    (stand_in / "datasets").mkdir(parents=True)
    (stand_in / "datasets" / "__init__.py").write_text("STAND_IN = True\n")
    (stand_in / "pyproject.toml").write_text(STAND_IN)
    pip = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, str(stand_in)], check=True, cwd=tmp_path)
    subprocess.run([*pip, "-e", str(REPO)], check=True, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, *args], cwd=elsewhere, capture_output=True, text=True, timeout=300)

    theirs = run("-c", "import datasets; print(datasets.STAND_IN)")
    assert theirs.returncode == 0 and theirs.stdout.strip() == "True"  # other projects keep their datasets
    ours = run("-c", "import benchmarks, datasets; print(datasets.__file__)")
    assert ours.returncode == 0 and Path(ours.stdout.strip()).resolve().is_relative_to(REPO), ours.stderr
    listing = run("-m", "benchmarks.run", "--list")
    assert listing.returncode == 0 and "digits-inr" in listing.stdout, listing.stderr
    clash = run("-c", "import datasets, benchmarks")
    assert clash.returncode != 0
    assert "another package named 'datasets' is already imported" in clash.stderr.strip().splitlines()[-1]
