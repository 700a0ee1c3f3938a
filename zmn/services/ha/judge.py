"""Deciding that a KVM host is dead, from two independent signs (pure logic, no I/O).

A host is dead when BOTH hold:

1. the node has had no answer from its agent for ``ha.host.detectTimeout`` seconds
   (measured from the last answer the HA monitor got), and
2. on every shared primary storage the host uses, its heartbeat counter, read by live peer
   hosts, has not changed for ``ha.storage.heartbeatTimeout`` seconds.

Anything uncertain keeps the host alive: no shared storage (nothing to restart on, and no
second sign), no peer able to read a storage, a read that failed. Counters are compared, never
timestamps written by the host, so the hosts' clocks do not matter; all times here are the
node's monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Beat:
    counter: int | None  # None: the file is missing
    since: float  # when the node first saw this counter


@dataclass
class Verdict:
    dead: bool
    reason: str


@dataclass
class HostWatch:
    """What the node knows about one host's liveness."""

    host_uuid: str
    last_answer: float
    storages: set[str] = field(default_factory=set)
    beats: dict[str, _Beat] = field(default_factory=dict)

    def answered(self, now: float) -> None:
        self.last_answer = now
        self.beats.clear()  # a live agent: the heartbeat watch starts again when it is lost

    def use_storages(self, storages: set[str]) -> None:
        self.storages = set(storages)
        for gone in set(self.beats) - self.storages:
            del self.beats[gone]

    def heartbeat(self, storage: str, counter: int | None, now: float) -> None:
        """A counter read by a peer (None: the file is not there)."""
        beat = self.beats.get(storage)
        if beat is None or beat.counter != counter:
            self.beats[storage] = _Beat(counter, now)

    def lost_for(self, now: float) -> float:
        return now - self.last_answer

    def verdict(self, now: float, detect_timeout: float, heartbeat_timeout: float) -> Verdict:
        lost = self.lost_for(now)
        if lost < detect_timeout:
            return Verdict(False, f"agent answered {lost:.1f} s ago (< {detect_timeout:g} s)")
        if not self.storages:
            return Verdict(False, "the host uses no shared primary storage: no heartbeat")
        for ps in sorted(self.storages):
            beat = self.beats.get(ps)
            if beat is None:
                return Verdict(False, f"heartbeat on primary storage {ps} not read yet")
            still = now - beat.since
            if still < heartbeat_timeout:
                return Verdict(
                    False,
                    f"heartbeat on primary storage {ps} changed {still:.1f} s ago"
                    f" (< {heartbeat_timeout:g} s)",
                )
        return Verdict(
            True,
            f"agent silent for {lost:.1f} s and its heartbeat still for at least"
            f" {heartbeat_timeout:g} s on {len(self.storages)} shared primary storage(s)",
        )
