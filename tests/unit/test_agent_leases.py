"""The agent's DHCP lease watcher: new and renewed leases are reported, a baseline is not."""

from __future__ import annotations

import os
from pathlib import Path

from agent.leases import LeaseWatcher, parse

L3 = "1" * 32


def write(path: Path, lines: list[str], tick: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    os.utime(path, ns=(tick * 1_000_000_000, tick * 1_000_000_000))  # a visible change


def test_parse_reads_dnsmasq_lines_and_skips_others() -> None:
    text = ("1765000000 52:54:00:AA:bb:01 10.0.0.5 web-1 01:52:54:00:aa:bb:01\n"
            "duid 00:01:00:01:2c:aa\n\n1765000001 52:54:00:aa:bb:02 10.0.0.6 * *\n")  # fmt: skip
    assert parse(L3, text) == {
        (L3, "52:54:00:aa:bb:01", "10.0.0.5", 1765000000),
        (L3, "52:54:00:aa:bb:02", "10.0.0.6", 1765000001),
    }


def test_new_and_renewed_leases_are_reported_once(tmp_path: Path) -> None:
    leases = tmp_path / L3 / "leases"
    write(leases, ["100 52:54:00:00:00:01 10.0.0.5 a *"], 1)
    w = LeaseWatcher(tmp_path, lambda _leases: None)
    assert w.scan() == []  # the baseline: taken before the agent started
    assert w.scan() == []  # unchanged file
    write(leases, ["100 52:54:00:00:00:01 10.0.0.5 a *", "200 52:54:00:00:00:02 10.0.0.6 b *"], 2)
    assert w.scan() == [
        {"l3NetworkUuid": L3, "mac": "52:54:00:00:00:02", "ip": "10.0.0.6", "expiry": 200}
    ]
    # a renewal (the VM restarted and asked again) moves the expiry: reported again
    write(leases, ["100 52:54:00:00:00:01 10.0.0.5 a *", "300 52:54:00:00:00:02 10.0.0.6 b *"], 3)
    assert [x["expiry"] for x in w.scan()] == [300]
    # dnsmasq restarting rewrites the same lines: nothing new
    write(leases, ["300 52:54:00:00:00:02 10.0.0.6 b *", "100 52:54:00:00:00:01 10.0.0.5 a *"], 4)
    assert w.scan() == []


def test_the_watcher_thread_reports(tmp_path: Path) -> None:
    import threading

    got: list[list[dict]] = []
    done = threading.Event()

    def report(leases: list[dict]) -> None:
        got.append(leases)
        done.set()

    w = LeaseWatcher(tmp_path, report, interval=0.02)
    w.start()
    try:
        write(tmp_path / L3 / "leases", ["100 52:54:00:00:00:09 10.0.0.9 x *"], 5)
        assert done.wait(5)
    finally:
        w.stop()
    assert got[0][0]["mac"] == "52:54:00:00:00:09"
