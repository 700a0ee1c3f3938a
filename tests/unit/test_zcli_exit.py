"""The zcli console script (zcli.main:run) ends a one-shot command without the interpreter's
teardown: its output, stderr and exit status must be those of ``sys.exit(main())``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def zcli(
    entry: str, args: list[str], tmp_path: Path, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "ZMN_ENDPOINT": f"unix:{tmp_path / 'no-node.sock'}",  # nobody answers there
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    env.pop("ZMN_SESSION", None)
    code = f"import sys\nsys.argv = ['zcli', *{args!r}]\nfrom zcli.main import {entry}\n"
    code += "sys.exit(main())\n" if entry == "main" else "run()\n"
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-c", code], stderr=subprocess.PIPE, env=env, cwd=ROOT, timeout=60, **kw
    )


def test_the_console_script_is_run() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["zcli"] == "zcli.main:run"


@pytest.mark.parametrize(
    "args",
    [
        ["help"],  # a long text: all of it is flushed before the process ends
        ["zone", "list"],  # no node: exit status 5 and the error on stderr
        ["zone", "frobnicate"],  # a usage error
        ["__complete", "--", "zone", "list", ""],  # completion (no catalogue: no words)
        ["--version"],
    ],
)
def test_run_prints_and_exits_as_main_does(args: list[str], tmp_path: Path) -> None:
    quick = zcli("run", args, tmp_path)
    slow = zcli("main", args, tmp_path)
    assert (quick.returncode, quick.stdout, quick.stderr) == (
        slow.returncode,
        slow.stdout,
        slow.stderr,
    )
    assert quick.stdout or quick.stderr or args[0] == "__complete"


def test_a_reader_that_goes_away_is_a_failure_without_a_traceback(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before zcli writes
    try:
        done = zcli("run", ["help"], tmp_path, stdout=write)
    finally:
        os.close(write)
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr
