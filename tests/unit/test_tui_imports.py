"""Import boundaries: the dashboard is an API client; its command line starts without Textual."""

from __future__ import annotations

import subprocess
import sys

SERVER_SIDE = ("zmn.core", "zmn.server", "zmn.services", "zmn.daemon", "sqlalchemy")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_app_never_imports_server_internals() -> None:
    mods = loaded_after("import tui.app, tui.testing")
    assert "textual" in mods
    leaked = sorted(m for m in mods if m.startswith(SERVER_SIDE))
    assert leaked == []


def test_the_command_line_does_not_import_textual_before_it_runs() -> None:
    mods = loaded_after("import tui.main")
    assert not [m for m in mods if m.startswith("textual")]


def test_ztui_help_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tui.main", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--endpoint", "--session", "--read-only"):
        assert option in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "tui.main", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("ztui ")
