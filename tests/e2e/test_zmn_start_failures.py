"""``zmn start`` that cannot start says why and what to do: no traceback, exit status 1, no
socket or pid file left behind (issue "hold under abuse", item 9).
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import Result, ZmnProcess


@pytest.fixture
def zmn(tmp_path: Path) -> Iterator[ZmnProcess]:
    proc = ZmnProcess(tmp_path / "home")
    yield proc
    proc.stop_quietly()


def _conf(zmn: ZmnProcess, **values: str) -> None:
    conf = zmn.home / "zmn.conf"
    conf.write_text(conf.read_text() + "".join(f"{k}={v}\n" for k, v in values.items()))


def _refused(zmn: ZmnProcess, result: Result, *words: str) -> None:
    assert result.code == 1, result
    assert "Traceback" not in result.err, result.err
    for word in words:
        assert word in result.err, (word, result.err)
    assert not (zmn.home / "zmn.sock").exists()
    assert not (zmn.home / "zmn.pid").exists()
    assert zmn.zmn("status").code == 5  # nothing answers


@pytest.mark.parametrize("foreground", [False, True], ids=["background", "foreground"])
def test_port_in_use(zmn: ZmnProcess, foreground: bool) -> None:
    assert zmn.zmn("init").code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _conf(zmn, **{"api.tcp.listen": f"127.0.0.1:{port}"})
        args = ("start", "--foreground") if foreground else ("start", "--wait", "30")
        result = zmn.zmn(*args, timeout=60)
    _refused(zmn, result, f"127.0.0.1:{port}", "already in use", "api.tcp.listen")


def test_missing_tls_files(zmn: ZmnProcess, tmp_path: Path) -> None:
    assert zmn.zmn("init").code == 0
    missing = tmp_path / "nowhere" / "node.pem"
    _conf(zmn, **{"api.tcp.listen": "127.0.0.1:0", "api.tls.cert": str(missing)})
    _refused(zmn, zmn.zmn("start", "--wait", "30"), "api.tls.cert", str(missing), "PEM")


def test_tls_files_that_do_not_load(zmn: ZmnProcess, tmp_path: Path) -> None:
    assert zmn.zmn("init").code == 0
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    _conf(zmn, **{"api.tcp.listen": "127.0.0.1:0", "api.tls.cert": str(junk)})
    _refused(zmn, zmn.zmn("start", "--wait", "30"), "do not load", str(junk))


@pytest.mark.parametrize("kind", ["binary", "directory"])
def test_unreadable_conf(zmn: ZmnProcess, kind: str) -> None:
    assert zmn.zmn("init").code == 0
    conf = zmn.home / "zmn.conf"
    conf.unlink()
    if kind == "binary":
        conf.write_bytes(b"db.url=\xff\xfe\x00garbage\n")
    else:
        conf.mkdir()
    result = zmn.zmn("start", "--wait", "30")
    assert result.code == 1, result
    assert "Traceback" not in result.err
    assert f"cannot read {conf}" in result.err and "UTF-8 text file" in result.err
    assert not (zmn.home / "zmn.sock").exists()


def test_corrupt_database(zmn: ZmnProcess) -> None:
    assert zmn.zmn("init").code == 0
    db = zmn.home / "zmn.db"
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # the first page's b-tree: the schema is unreadable
    db.write_bytes(bytes(data))
    result = zmn.zmn("start", "--wait", "30")
    _refused(zmn, result, "fails its integrity check", "restore it from a backup")


def test_database_without_a_table(zmn: ZmnProcess) -> None:
    assert zmn.zmn("init").code == 0
    with sqlite3.connect(zmn.home / "zmn.db") as con:
        con.execute("DROP TABLE zone")
    result = zmn.zmn("start", "--wait", "30")
    _refused(zmn, result, "lacks table(s) zone", "restore it from a backup")


def test_a_good_start_after_the_cause_is_fixed(zmn: ZmnProcess) -> None:
    assert zmn.zmn("init").code == 0
    conf = zmn.home / "zmn.conf"
    original = conf.read_text()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        _conf(zmn, **{"api.tcp.listen": f"127.0.0.1:{taken.getsockname()[1]}"})
        assert zmn.zmn("start", "--wait", "30").code == 1
    conf.write_text(original)
    started = zmn.zmn("start", "--wait", "30")
    assert started.code == 0, started
    assert zmn.zmn("status").code == 0
