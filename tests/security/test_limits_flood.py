"""A real ``zmn`` under anonymous floods on TCP; its local admin stays served.

The node runs as a process started the way an operator would (``zmn start``) under the usual
descriptor limits of a service (soft 1024, hard 4096), so that what a flood costs shows in
its own RSS and descriptors and not in the test's.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import BIN, ZmnProcess
from zmn.client import Client

# what the node may grow by under the flood below: 50 anonymous connections, each holding
# at most 128 KiB unread input, one 64 KiB frame, 256 KiB of queued replies and 32 requests
# (api.limit.* defaults) come to about 25 MiB; the rest is allocator slack
RSS_GROWTH_BOUND = 64 * 1024 * 1024
ADMIN_CALL_BOUND = 1.0
FLOODERS = 50
IDLE_CONNECTIONS = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[ZmnProcess, int, int]]:
    proc = ZmnProcess(tmp_path / "home")
    assert proc.zmn("init").code == 0
    port = free_port()
    conf = proc.home / "zmn.conf"
    conf.write_text(conf.read_text() + f"api.tcp.listen=127.0.0.1:{port}\n")
    started = proc.run("prlimit", "--nofile=1024:4096", str(BIN / "zmn"), "start", timeout=90)
    assert started.code == 0, started
    pid = proc.pid()
    assert pid
    try:
        yield proc, port, pid
    finally:
        proc.stop_quietly()


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def admin_call(proc: ZmnProcess) -> float:
    """Seconds for the unix socket's owner to connect and get an answer."""
    started = time.monotonic()
    with Client(f"unix:{proc.home / 'zmn.sock'}", timeout=30) as client:
        assert client.call("QueryZone", {"count": True})["total"] >= 0
    return time.monotonic() - started


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


PING = frame(b'{"type":"request","id":1,"api":"Ping","args":{}}')
CREATE = frame(b'{"type":"request","id":2,"api":"CreateZone","args":{"name":"x"}}')
BIG = frame(b'{"type":"request","id":3,"api":"Ping","args":{"pad":"' + b"x" * (8 << 20) + b'"}}')


def flood(port: int, stop: threading.Event, big: bool) -> None:
    """Pipeline requests without ever reading a reply; reconnect when the node hangs up."""
    chunk = BIG if big else (PING + CREATE) * 200
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                while not stop.is_set():
                    s.sendall(chunk)
        except OSError:
            time.sleep(0.05)


def test_anonymous_pipelined_flood_keeps_rss_bounded_and_the_admin_served(
    node: tuple[ZmnProcess, int, int],
) -> None:
    proc, port, pid = node
    admin_call(proc)  # warm: first query, catalogue
    baseline = rss(pid)
    stop = threading.Event()
    threads = [
        threading.Thread(target=flood, args=(port, stop, i % 5 == 0), daemon=True)
        for i in range(FLOODERS)
    ]
    for t in threads:
        t.start()
    peak, latencies = baseline, []
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            latencies.append(admin_call(proc))
            for _ in range(5):
                peak = max(peak, rss(pid))
                time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    growth = peak - baseline
    assert growth < RSS_GROWTH_BOUND, f"RSS grew by {growth >> 20} MiB under the flood"
    assert max(latencies) < ADMIN_CALL_BOUND, f"admin calls took {sorted(latencies)[-3:]} s"
    log = (proc.home / "zmn.log").read_text()
    assert log.count("refused") <= 3, "refusals are summarised, not logged one by one"


HOLDER = """
import errno, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(count):
    s = socket.socket()
    s.setblocking(False)
    code = s.connect_ex(("127.0.0.1", port))
    assert code in (0, errno.EINPROGRESS, errno.EAGAIN), errno.errorcode.get(code)
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
"""


def test_twenty_thousand_idle_tcp_connections_leave_the_unix_socket_usable(
    node: tuple[ZmnProcess, int, int],
) -> None:
    """Each holder process opens half (a process may hold 20,000 descriptors here, and
    raising the hard limit needs a capability the test may not have)."""
    proc, port, pid = node
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(port), str(IDLE_CONNECTIONS // 2)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for holder in holders:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "ready"
        time.sleep(2)
        latencies = [admin_call(proc) for _ in range(5)]
        assert max(latencies) < ADMIN_CALL_BOUND, f"admin calls took {latencies} s"
        assert open_fds(pid) < 1024 + 100, "the node holds a descriptor per flood connection"
    finally:
        for holder in holders:
            with contextlib.suppress(OSError):
                holder.communicate("", timeout=30)
