"""Killing a namespaced KVM host hard and bringing it back; watching where a domain runs.

Used by the VM HA end-to-end test and the ``ha`` benchmark family::

    killed = kill_host(h)        # SIGKILL to every process of its namespaces but the holder
                                 # (agent, libvirtd, virtlogd, sshd, QEMU), its link down
    revive_host(h)               # link up, sshd and libvirtd started again (not the agent)
    with DomainPoller(hosts, vm_uuid) as p: ...   # p.max_running: most hosts at once
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

from tests.support.datacenter import NsHost, sh


def dashed(uuid: str) -> str:
    return f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"


def veth_of(h: NsHost) -> str:
    return f"{h.dc.tag}h{h.index}"


def kill_host(h: NsHost) -> list[int]:
    """SIGKILL every process in the host's namespaces but the holder; its link down."""
    assert h.holder is not None
    killed = [p for p in h.pids() if p != h.holder.pid]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    sh("ip", "link", "set", veth_of(h), "down")
    return killed


def revive_host(h: NsHost) -> None:
    """Link up, stale pid files gone, sshd and libvirtd running again (the node's
    ``ReconnectHost`` starts the agent over SSH)."""
    sh("ip", "link", "set", veth_of(h), "up")
    h.run(["rm", "-f", "/run/sshd.pid", "/run/libvirtd.pid", "/run/virtlogd.pid",
           "/run/zagent.pid"], check=False)  # fmt: skip
    h.start_sshd()
    h.start_libvirtd()


class DomainPoller:
    """``virsh list --uuid`` (running domains) in every host, every ~0.5 s, in a thread.
    ``max_running``: the most hosts seen running the domain in one round; ``seen_on``: the
    sets of hosts, each time it changed."""

    def __init__(self, hosts: list[NsHost], uuid: str, period: float = 0.5) -> None:
        self.hosts, self.uuid, self.period = hosts, uuid, period
        self.dashed = dashed(uuid)
        self.rounds = 0
        self.max_running = 0
        self.seen_on: list[set[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="domain-poller", daemon=True)

    def _running_on(self, h: NsHost) -> bool:
        try:
            out = h.run(["virsh", "-c", "qemu:///system", "list", "--uuid"], check=False,
                        timeout=10)  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0 and self.dashed in out.stdout

    def _run(self) -> None:
        while not self._stop.is_set():
            on = {h.name for h in self.hosts if self._running_on(h)}
            self.max_running = max(self.max_running, len(on))
            if not self.seen_on or self.seen_on[-1] != on:
                self.seen_on.append(on)
            self.rounds += 1
            self._stop.wait(self.period)

    def __enter__(self) -> DomainPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
