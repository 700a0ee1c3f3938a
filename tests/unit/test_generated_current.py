"""completions/ and man/ are generated from the catalogue: regenerating changes nothing, and
the man pages render without a roff warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need
from zcli.gen import ROOT
from zcli.gen.roff import unescape

GENERATED = [
    "completions/zcli.bash",
    "completions/_zcli",
    "completions/zcli.fish",
    "man/zcli.1",
    "man/zcli-query.7",
    "man/zmn.8",
    "man/zagent.8",
]
MAN_PAGES = [p for p in GENERATED if p.startswith("man/")]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m zcli.gen all`` into an empty directory, in a fresh process."""
    out = tmp_path_factory.mktemp("gen")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZMN_")}
    subprocess.run(
        [sys.executable, "-m", "zcli.gen", "all", "--out", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return out


@pytest.mark.parametrize("rel", GENERATED)
def test_checked_in_file_is_current(regenerated: Path, rel: str) -> None:
    fresh = (regenerated / rel).read_text()
    current = (ROOT / rel).read_text() if (ROOT / rel).exists() else ""
    assert current == fresh, f"{rel} is stale: run make completions man"


def test_generation_is_deterministic(regenerated: Path) -> None:
    """A second run in another process (another hash seed, another temp home) agrees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZMN_")}
    env["PYTHONHASHSEED"] = "12345"
    proc = subprocess.run(
        [sys.executable, "-m", "zcli.gen", "check", "--out", str(regenerated)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    for rel in GENERATED:
        text = (regenerated / rel).read_text()
        assert "0000000000000000" not in text  # no node UUID leaked in


@pytest.mark.parametrize("rel", MAN_PAGES)
def test_man_page_renders_without_warnings(rel: str) -> None:
    need(shutil.which("groff") is not None, "groff is not installed (groff-base)")
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(ROOT / rel)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("rel", MAN_PAGES)
def test_man_l_shows_name_and_examples(rel: str) -> None:
    need(shutil.which("man") is not None, "man is not installed (man-db)")
    proc = subprocess.run(
        ["man", "-l", str(ROOT / rel)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100", "LANG": "C.UTF-8"},
    )
    assert proc.returncode == 0, proc.stderr
    page = proc.stdout
    assert "NAME" in page and "EXAMPLES" in page
    name = Path(rel).stem
    assert f"{name} -" in page.replace("\u2010", "-").replace("\u2212", "-")


def test_examples_read_back_as_typed() -> None:
    text = (ROOT / "man" / "zcli.1").read_text()
    assert "zcli \\-o json zone get z1" in text
    assert unescape("zcli \\-o json zone get z1") == "zcli -o json zone get z1"
    assert unescape("printf \\(aqzone list\\en\\(aq") == "printf 'zone list\\n'"
