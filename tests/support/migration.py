"""What live-migration tests and the ``migrate`` benchmark share: one L2 across the hosts, a
watcher outside them that pings a guest, and the guest's boot identity.

:func:`join_l2` links every KVM host's VM NIC (``eth1``: a veth whose peer ``eth1p`` stays in
the host) into one segment through a bridge in the root namespace, and adds a *watcher*
network namespace on it with an address of the L3, so a guest stays reachable at the same
address whichever host runs it, from a process that is on no host. The agents' bridges are
not touched: each host gets a small bridge of its own joining ``eth1p`` to its uplink.

:class:`Pinger` pings at a fixed interval with timestamps (:mod:`tests.support.icmpping`, a
``ping -D -i`` in Python: the machine has no iputils) and reads the
replies: how many sequence numbers never answered between the first and the last reply, and
the longest silence between two replies (the guest's downtime as seen from the network).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.datacenter import Datacenter, NsHost, sh

ROOT = str(Path(__file__).resolve().parents[2])
REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+) ")


@contextlib.contextmanager
def join_l2(dc: Datacenter, hosts: list[NsHost], address: str, nic: str = "eth1") -> Iterator[str]:
    """Yields the watcher namespace's name; ``address`` is its ``IP/prefix`` on the L3."""
    bridge = f"{dc.tag}l2"
    watcher = f"{dc.tag}-watch"
    sh("ip", "link", "add", bridge, "type", "bridge")
    try:
        sh("ip", "link", "set", bridge, "up")
        for h in hosts:
            up = f"{dc.tag}u{h.index}"
            sh("ip", "link", "add", up, "type", "veth", "peer", "name", "l2up", "netns", h.netns)
            sh("ip", "link", "set", up, "master", bridge, "up")
            for argv in (
                ["link", "add", "l2join", "type", "bridge"],
                ["link", "set", f"{nic}p", "master", "l2join"],
                ["link", "set", "l2up", "master", "l2join"],
                ["link", "set", "l2up", "up"],
                ["link", "set", "l2join", "up"],
            ):
                sh("ip", "-n", h.netns, *argv)
        sh("ip", "netns", "add", watcher)
        sh("ip", "link", "add", f"{dc.tag}w", "type", "veth", "peer", "name", "w0", "netns",
           watcher)  # fmt: skip
        sh("ip", "link", "set", f"{dc.tag}w", "master", bridge, "up")
        sh("ip", "-n", watcher, "addr", "add", address, "dev", "w0")
        sh("ip", "-n", watcher, "link", "set", "w0", "up")
        sh("ip", "-n", watcher, "link", "set", "lo", "up")
        yield watcher
    finally:
        for pid in sh("ip", "netns", "pids", watcher, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", watcher, check=False)
        for h in hosts:
            sh("ip", "link", "del", f"{dc.tag}u{h.index}", check=False)
        sh("ip", "link", "del", f"{dc.tag}w", check=False)
        sh("ip", "link", "del", bridge, check=False)


@dataclass
class PingReport:
    sent: int  # sequence numbers from the first reply to the last
    lost: int  # of those, never answered
    longest_gap_ms: float  # the longest time between two consecutive replies
    interval_ms: float

    @property
    def lost_ms(self) -> float:
        """Lost pings times the interval: the downtime the issue asks to report."""
        return self.lost * self.interval_ms


class Pinger:
    """``ping`` from ``netns`` to ``ip`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, netns: str, ip: str, interval: float = 0.02) -> None:
        self.interval = interval
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.support.icmpping", ip,
             f"{interval}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        )  # fmt: skip

    def stop(self) -> PingReport:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        replies: dict[int, float] = {}
        for line in out.splitlines():
            m = REPLY.match(line)
            if m:
                replies[int(m.group(2))] = float(m.group(1))
        if not replies:
            raise AssertionError(f"no ping reply at all:\n{out[-2000:]}")
        seqs = sorted(replies)
        times = sorted(replies.values())
        gaps = [b - a for a, b in itertools.pairwise(times)] or [0.0]
        sent = seqs[-1] - seqs[0] + 1
        return PingReport(sent, sent - len(seqs), max(gaps) * 1000, self.interval * 1000)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
