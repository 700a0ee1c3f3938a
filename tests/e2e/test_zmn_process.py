"""The management node as a real process: init, start, status, stop, kill -9, restart."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import ZmnProcess


@pytest.fixture
def zmn(tmp_path: Path) -> Iterator[ZmnProcess]:
    proc = ZmnProcess(tmp_path / "home")
    yield proc
    proc.stop_quietly()


def test_init_creates_home_admin_and_keeps_conf(zmn: ZmnProcess) -> None:
    first = zmn.zmn("init")
    assert first.code == 0, first.err
    assert "created account admin with password:" in first.out
    secret = zmn.home / "admin-password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    password = secret.read_text().strip()
    assert password and password in first.out
    conf = zmn.home / "zmn.conf"
    conf.write_text(conf.read_text() + "log.level=DEBUG\n")
    again = zmn.zmn("init")
    assert again.code == 0, again.err
    assert "keeping existing" in again.out
    assert "joined the existing database" in again.out
    assert "password" not in again.out.split("account admin")[-1] or "unchanged" in again.out
    assert "log.level=DEBUG" in conf.read_text()


def test_start_status_stop(zmn: ZmnProcess) -> None:
    assert zmn.zmn("init").code == 0
    down = zmn.zmn("status")
    assert down.code == 5 and "not running" in down.err
    started = zmn.zmn("start")
    assert started.code == 0, started.err + started.out
    sock = zmn.home / "zmn.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660
    status = zmn.zmn("status", "-o", "json")
    assert status.code == 0, status.err
    info = status.json()
    assert info["running"] is True
    assert info["database"]["backend"] == "sqlite"
    assert info["bus"]["backend"] == "local"
    assert "zone" in info["services"] and "identity" in info["services"]
    assert info["endpoints"] == [f"unix:{sock}"]
    second = zmn.zmn("start")
    assert second.code == 1 and "already running" in second.err
    text = zmn.zmn("status")
    assert text.code == 0 and "version" in text.out and "uptime" in text.out
    stopped = zmn.zmn("stop")
    assert stopped.code == 0 and "stopped" in stopped.out
    assert not (zmn.home / "zmn.pid").exists()
    assert zmn.zmn("status").code == 5


def test_foreground_refuses_second_node_on_same_home(zmn: ZmnProcess) -> None:
    assert zmn.zmn("init").code == 0
    assert zmn.zmn("start").code == 0
    fg = zmn.zmn("start", "--foreground", timeout=30)
    assert fg.code == 1
    assert "another management node is running" in fg.err


def test_start_without_init_says_so(zmn: ZmnProcess) -> None:
    zmn.home.mkdir(parents=True)
    result = zmn.zmn("start", "--wait", "20")
    assert result.code == 1
    assert "zmn init" in result.err


def test_kill9_keeps_committed_resources(zmn: ZmnProcess) -> None:
    assert zmn.zmn("init").code == 0
    assert zmn.zmn("start").code == 0
    created = zmn.zcli("-o", "json", "api", "CreateZone", "name=survivor")
    assert created.code == 0, created.err
    uuid = created.json()["uuid"]
    pid = zmn.pid()
    zmn.kill9()
    assert zmn.pid() == pid  # the stale pid file is still there
    assert (zmn.home / "zmn.sock").exists()  # and the stale socket
    again = zmn.zmn("start")
    assert again.code == 0, again.err + again.out
    assert zmn.pid() != pid
    found = zmn.zcli("-o", "json", "api", "QueryZone", f"uuid={uuid}")
    assert found.code == 0, found.err
    assert [z["name"] for z in found.json()] == ["survivor"]


def test_logs_show_the_node_log(zmn: ZmnProcess) -> None:
    assert zmn.zmn("init").code == 0
    assert zmn.zmn("start").code == 0
    logs = zmn.zmn("logs", "-n", "20")
    assert logs.code == 0
    assert "serving on unix:" in logs.out
    assert os.path.getsize(zmn.home / "zmn.log") > 0
