"""``zcli completion bash|zsh|fish`` prints the script made from the node's catalogue."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_zcli import Zcli
from tests.support.inproc import running_node
from zcli.gen.completions import generate
from zmn.core.catalogue import build_catalogue


@pytest.fixture
async def zcli(tmp_path: Path) -> AsyncIterator[Zcli]:
    async with running_node(tmp_path / "home") as (node, server):
        yield Zcli(tmp_path, node, server)


async def test_completion_prints_each_shells_script(zcli: Zcli, tmp_path: Path) -> None:
    scripts = generate(build_catalogue(zcli.node))
    for shell, rel in (
        ("bash", "completions/zcli.bash"),
        ("zsh", "completions/_zcli"),
        ("fish", "completions/zcli.fish"),
    ):
        run = await zcli.ok("completion", shell)
        assert run.out == scripts[rel] and run.err == ""
    bash = await zcli.ok("completion", "bash")
    path = tmp_path / "zcli.bash"
    path.write_text(bash.out)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr  # what the README says to install parses
    assert "complete -F _zcli zcli" in bash.out


async def test_completion_needs_a_known_shell(zcli: Zcli) -> None:
    run = await zcli("completion", "tcsh")
    assert run.rc == 2 and "completion takes one shell: bash, zsh, fish" in run.err
    assert "field: shell" in run.err
    assert (await zcli("completion")).rc == 2
