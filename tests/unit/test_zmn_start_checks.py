"""``zmn start`` runs the start checks (conf, TLS, addresses, database) once, in the process
that can say on the terminal what is wrong: foreground and background alike."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from zmn import cli, daemon


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The homes check_start ran for; serving and logging set-up do nothing."""
    ran: list[Path] = []
    monkeypatch.setattr(daemon, "check_start", lambda config: ran.append(config.home))

    async def serve(config: Any) -> None:
        return None

    monkeypatch.setattr(daemon, "serve", serve)
    monkeypatch.setattr(daemon, "setup_logging", lambda *a, **k: None)
    return ran


def test_foreground_start_checks_once(checks: list[Path], tmp_path: Path) -> None:
    args = SimpleNamespace(home=str(tmp_path), foreground=True, wait=1.0)
    assert cli.cmd_start(args) == 0
    assert checks == [tmp_path]


def test_background_start_checks_in_zmn_start_and_not_in_the_node(
    checks: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[list[str]] = []

    class Exited:  # the spawned node, which ends at once
        returncode = 0

        def __init__(self, argv: list[str], **kwargs: Any) -> None:
            spawned.append(argv)

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(cli.subprocess, "Popen", Exited)
    cli.cmd_start(SimpleNamespace(home=str(tmp_path), foreground=False, wait=1.0))
    assert checks == [tmp_path]
    (argv,) = spawned
    assert argv[1:] == ["-m", "zmn.daemon", str(tmp_path), daemon.CHECKED]

    # the node started that way runs no check; started by hand (no flag) it does
    monkeypatch.setattr(sys, "argv", argv[2:])
    with pytest.raises(SystemExit) as done:
        daemon.main()
    assert done.value.code == 0 and checks == [tmp_path]
    monkeypatch.setattr(sys, "argv", argv[2:-1])
    with pytest.raises(SystemExit):
        daemon.main()
    assert checks == [tmp_path, tmp_path]
