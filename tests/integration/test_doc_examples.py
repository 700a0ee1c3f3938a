"""Every example in README.md and the man pages runs, and succeeds.

The zcli examples of each document run in order, as written (through bash), against a fresh
node holding the reference cloud of ``demo/cloud.zcli``; the build itself is the example
``zcli -f demo/cloud.zcli`` that README and zcli(1) show. Examples that need a VM are kept
apart and skipped only while VmInstance is absent from the catalogue. zmn(8)'s examples run
as real processes in a fresh home, zagent(8)'s in an empty directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.inproc import running_node
from zcli.gen.roff import unescape

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUILD = "zcli -f demo/cloud.zcli"
NEEDS_VM = re.compile(r"\b(vm|vm-instance|VmInstance|vmNics)\b|QueryVm")


def readme_examples() -> list[str]:
    """Lines of README's fenced code blocks that are zcli commands."""
    out: list[str] = []
    fenced = False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced and line.startswith("zcli "):
            out.append(line)
    return out


def man_examples(page: str) -> list[str]:
    """The literal lines (``.nf`` to ``.fi``) of a man page's EXAMPLES section."""
    text = (ROOT / "man" / page).read_text()
    section = text.split(".SH EXAMPLES\n", 1)[1].split("\n.SH ", 1)[0]
    out: list[str] = []
    literal = False
    for line in section.splitlines():
        if line == ".nf":
            literal = True
        elif line == ".fi":
            literal = False
        elif literal and not line.startswith("."):
            out.append(unescape(line))
    return out


ZCLI_DOCS = {
    "README.md": readme_examples,
    "zcli.1": lambda: man_examples("zcli.1"),
    "zcli-query.7": lambda: man_examples("zcli-query.7"),
}


@dataclass
class Ran:
    rc: int
    out: str
    err: str


class Shell:
    """Runs example lines through bash with the environment of one node."""

    def __init__(self, tmp: Path) -> None:
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ZMN_", "XDG_", "NO_COLOR"))
        }
        self.env.update(
            PATH=f"{BIN}{os.pathsep}{self.env.get('PATH', '')}",
            ZMN_ENDPOINT=f"unix:{tmp / 'home' / 'zmn.sock'}",
            ZMN_HOME=str(tmp / "home"),
            XDG_CONFIG_HOME=str(tmp / "config"),
            XDG_CACHE_HOME=str(tmp / "cache"),
            XDG_STATE_HOME=str(tmp / "state"),
            PYTHONPATH=str(ROOT),
        )

    async def __call__(self, line: str) -> Ran:
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            f"set -o pipefail\n{line}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=ROOT,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return Ran(proc.returncode, out.decode(), err.decode())


async def _with_cloud(tmp: Path, examples: list[str], *, vm: bool) -> None:
    shell = Shell(tmp)
    async with running_node(tmp / "home") as (node, _server):
        built = await shell(BUILD)
        assert built.rc == 0, f"{BUILD} -> {built.rc}\n{built.err}"
        has_vm = "VmInstance" in node.resources.types
        if vm and not has_vm:
            pytest.skip("VmInstance is not in the catalogue yet")
        for line in examples:
            if line.split("#")[0].strip() == BUILD:
                continue  # that example built the cloud above
            ran = await shell(line)
            assert ran.rc == 0, f"example failed: {line}\nexit {ran.rc}\n{ran.err}{ran.out}"
            assert "Traceback" not in ran.err, ran.err


@pytest.mark.parametrize("doc", sorted(ZCLI_DOCS))
async def test_zcli_examples_run(doc: str, tmp_path: Path) -> None:
    examples = ZCLI_DOCS[doc]()
    assert examples, f"no examples found in {doc}"
    await _with_cloud(tmp_path, [e for e in examples if not NEEDS_VM.search(e)], vm=False)


@pytest.mark.parametrize(
    "doc", [d for d in sorted(ZCLI_DOCS) if any(NEEDS_VM.search(e) for e in ZCLI_DOCS[d]())]
)
async def test_vm_examples_run(doc: str, tmp_path: Path) -> None:
    examples = [e for e in ZCLI_DOCS[doc]() if NEEDS_VM.search(e)]
    await _with_cloud(tmp_path, examples, vm=True)


def test_readme_and_zcli_page_build_the_reference_cloud() -> None:
    assert BUILD in [e.split("#")[0].strip() for e in readme_examples()]
    assert BUILD in man_examples("zcli.1")


# --------------------------------------------------------------------------- zmn, zagent


@pytest.fixture
def zmn_home(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZMN_", "XDG_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", ZMN_HOME=str(tmp_path / "home"))
    try:
        yield env
    finally:  # never leave a node running behind a failed example
        subprocess.run([str(BIN / "zmn"), "stop"], env=env, capture_output=True, timeout=60)


def _run(line: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", line], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_zmn_examples_run(zmn_home: dict[str, str], tmp_path: Path) -> None:
    examples = man_examples("zmn.8")
    assert "zmn start" in examples and examples[-1] == "zmn stop"
    for line in examples:
        ran = _run(line, zmn_home, tmp_path)
        assert ran.returncode == 0, f"example failed: {line}\n{ran.stderr}{ran.stdout}"


def test_zagent_examples_run(tmp_path: Path) -> None:
    examples = man_examples("zagent.8")
    assert examples
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in examples:
        ran = _run(line, env, tmp_path)
        assert ran.returncode == 0, f"example failed: {line}\n{ran.stderr}{ran.stdout}"
