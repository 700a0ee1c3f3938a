"""Static checks over the source tree: no shell runs user data, bandit's rules are clean.

* No ``subprocess``/``asyncio`` call runs through a shell (``shell=True``, ``os.system``,
  ``os.popen``, ``create_subprocess_shell``, ``getoutput``): programs get argv lists, so a
  hostile name is one argument, never shell syntax. Checked on the syntax tree, so neither a
  comment nor a string mentioning ``shell=True`` trips it, and no spelling escapes it.
* ``ruff check --select S`` (the bandit rules) reports nothing on the shipped packages; a
  finding that is not a problem carries a narrow ``# noqa: S...`` with the reason.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["zmn", "zcli", "tui", "agent"]
SCANNED = [*PACKAGES, "bench", "tests", "scripts", "playbooks"]
SHELL_CALLS = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"),
}


def python_files() -> list[Path]:
    return sorted(p for top in SCANNED for p in (ROOT / top).rglob("*.py"))


def shell_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every call that would run a shell."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "shell" and not (
                isinstance(kw.value, ast.Constant) and kw.value.value is False
            ):
                found.append((node.lineno, f"shell={ast.unparse(kw.value)}"))
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if (func.value.id, func.attr) in SHELL_CALLS:
                found.append((node.lineno, f"{func.value.id}.{func.attr}()"))
        if isinstance(func, ast.Name) and func.id in {"system", "popen", "getoutput"}:
            found.append((node.lineno, f"{func.id}()"))
    return found


def test_the_scan_catches_every_spelling() -> None:
    sample = (
        "import os, subprocess, asyncio\n"
        "subprocess.run(cmd, shell=True)\n"
        "subprocess.Popen(cmd, shell=flag)\n"
        "os.system(cmd)\n"
        "asyncio.create_subprocess_shell(cmd)\n"
        "subprocess.run(['ls'], shell=False)\n"
        "x = 'shell=True'  # shell=True\n"
    )
    assert [line for line, _what in shell_uses(sample)] == [2, 3, 4, 5]


def test_nothing_runs_a_shell() -> None:
    files = python_files()
    assert len(files) > 100
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in files
        for line, what in shell_uses(path.read_text())
    ]
    assert offenders == []


def test_bandit_rules_are_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.fail(f"ruff is not installed at {ruff}")
    proc = subprocess.run(
        [str(ruff), "check", "--select", "S", "--output-format", "json", "--no-cache", *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    listing = [
        f"{Path(f['filename']).relative_to(ROOT)}:{f['location']['row']}: {f['code']} {f['message']}"
        for f in findings
    ]
    assert listing == [], "\n".join(listing)
