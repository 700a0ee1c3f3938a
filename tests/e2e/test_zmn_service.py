"""The node as a service: the systemd unit, sd_notify readiness, journal or file log, rotation."""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import BIN, ZmnProcess
from zmn import cli
from zmn.ops import service


@pytest.fixture
def zmn(tmp_path: Path) -> Iterator[ZmnProcess]:
    proc = ZmnProcess(tmp_path / "home")
    yield proc
    proc.stop_quietly()


def test_service_install_writes_a_notify_unit_that_systemd_accepts(
    zmn: ZmnProcess, tmp_path: Path
) -> None:
    assert zmn.zmn("init").code == 0
    units = tmp_path / "units"
    made = zmn.zmn("service", "install", "--unit-dir", str(units), "--no-start")
    assert made.code == 0, made.err
    assert "systemctl enable --now zmn.service" in made.out
    path = units / "zmn.service"
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(path.read_text())
    svc = unit["Service"]
    assert (svc["Type"], svc["Restart"], svc["StandardError"]) == (
        "notify",
        "on-failure",
        "journal",
    )
    assert svc["ExecStart"] == f'"{BIN / "zmn"}" --home "{zmn.home}" start --foreground'
    assert svc["Environment"] == f'"ZMN_HOME={zmn.home}"'
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert (zmn.home / "service-unit").read_text().strip() == "zmn.service"
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True
    )
    problems = [ln for ln in verify.stderr.splitlines() if str(path) in ln]
    assert problems == [], verify.stderr
    printed = zmn.zmn("service", "install", "--print")
    assert printed.code == 0 and "Type=notify" in printed.out
    bad = zmn.zmn("service", "install", "--unit-dir", str(units), "--name", "a b")
    assert bad.code == 2 and "--name" in bad.err


def test_foreground_node_tells_systemd_when_it_is_ready_and_when_it_stops(
    zmn: ZmnProcess, tmp_path: Path
) -> None:
    assert zmn.zmn("init").code == 0
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(60)
    proc = subprocess.Popen(
        [str(BIN / "zmn"), "start", "--foreground"],
        env={**zmn.env, "NOTIFY_SOCKET": address},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = sock.recv(4096).decode()
        assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready
        # READY comes after the API answers: status works at once
        assert zmn.zmn("status").code == 0
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in sock.recv(4096).decode()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        sock.close()


def test_logs_read_the_journal_of_the_installed_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "zmn.log").write_text("from the file\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "journalctl").write_text('#!/bin/sh\necho "journal: $*"\n')
    (fake / "journalctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    booted = tmp_path / "run-systemd-system"
    monkeypatch.setattr(service, "SYSTEMD_RUNNING", booted)

    def logs(*args: str) -> str:
        with pytest.raises(SystemExit) as done:
            cli.main(["--home", str(home), "logs", *args])
        assert done.value.code == 0
        return capfd.readouterr().out

    assert logs("-n", "5") == "from the file\n"  # no systemd: the file
    (home / "service-unit").write_text("zmn-a.service\n")
    assert logs("-n", "5") == "from the file\n"  # unit installed, systemd not running
    booted.mkdir()
    assert logs("-n", "7") == ("journal: --unit zmn-a.service --no-pager --output short-iso -n 7\n")


ROTATE = """
import logging, sys
from zmn.ops.logfile import RotatingLog
h = RotatingLog(sys.argv[1], 400, 2, own_std=True)
log = logging.getLogger("t"); log.addHandler(h); log.setLevel(logging.INFO)
for i in range(60):
    log.info("line %03d %s", i, "x" * 40)
print("stdout after rotation", flush=True)
sys.stderr.write("stderr after rotation\\n")
"""


def test_the_file_log_rotates_and_carries_stdout_and_stderr_along(tmp_path: Path) -> None:
    path = tmp_path / "zmn.log"
    subprocess.run([sys.executable, "-c", ROTATE, str(path)], check=True, timeout=60)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["zmn.log", "zmn.log.1", "zmn.log.2"]  # keep=2: older ones are gone
    assert all(p.stat().st_size <= 400 + 100 for p in tmp_path.iterdir())
    current = path.read_text()
    assert "line 059" in current
    assert "stdout after rotation" in current and "stderr after rotation" in current
    assert "line 000" not in "".join(p.read_text() for p in tmp_path.iterdir())
