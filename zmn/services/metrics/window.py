"""The recent samples of each host and VM, kept in memory (no row per sample), and their rates.

A sample is a dict of raw values as the hypervisor reports them: counters that only grow
(``cpuTime`` in ns, disk and network bytes and operations, a host's ``cpuBusy``/``cpuTotal``
in seconds) and gauges (memory, load). :class:`MetricsWindow` keeps the last ``size``
samples per resource; :func:`vm_rates` and :func:`host_rates` turn two consecutive samples into
rates. A counter that went down (the domain restarted) gives no rate for that interval.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

VM_COUNTERS = {  # raw counter -> rate field (per second)
    "diskReadBytes": "diskReadBytesPerSecond",
    "diskWriteBytes": "diskWriteBytesPerSecond",
    "diskReadOps": "diskReadOpsPerSecond",
    "diskWriteOps": "diskWriteOpsPerSecond",
    "netRxBytes": "netRxBytesPerSecond",
    "netTxBytes": "netTxBytesPerSecond",
}
VM_GAUGES = ("memoryUsed", "memoryTotal", "cpuNum")
HOST_GAUGES = ("memoryUsed", "memoryTotal", "load1", "load5", "load15", "cpuNum")


@dataclass(frozen=True)
class Sample:
    time: float  # unix seconds, the sampler's clock
    values: dict[str, float]
    host_uuid: str | None = None  # for a VM: where it ran


class MetricsWindow:
    """``size`` recent samples per resource UUID, thread-safe (the Prometheus thread reads)."""

    def __init__(self, size: int = 60) -> None:
        self.size = size
        self._samples: dict[str, deque[Sample]] = {}
        self._kind: dict[str, str] = {}  # uuid -> "host" | "vm"
        self._lock = threading.Lock()

    def add(self, kind: str, uuid: str, sample: Sample) -> None:
        with self._lock:
            q = self._samples.get(uuid)
            if q is None or q.maxlen != self.size:
                q = self._samples[uuid] = deque(q or (), maxlen=self.size)
            if q and sample.time <= q[-1].time:
                return  # a repeated or reordered report
            q.append(sample)
            self._kind[uuid] = kind

    def forget(self, uuid: str) -> None:
        with self._lock:
            self._samples.pop(uuid, None)
            self._kind.pop(uuid, None)

    def prune(self, before: float) -> int:
        """Forget resources whose newest sample is older than ``before`` (deleted VMs, gone
        hosts), so the window stays bounded however many come and go; returns how many."""
        with self._lock:
            stale = [u for u, q in self._samples.items() if not q or q[-1].time < before]
            for u in stale:
                del self._samples[u]
                self._kind.pop(u, None)
            return len(stale)

    def samples(self, uuid: str) -> list[Sample]:
        with self._lock:
            return list(self._samples.get(uuid, ()))

    def latest(self, kind: str) -> dict[str, Sample]:
        with self._lock:
            return {u: q[-1] for u, q in self._samples.items() if q and self._kind[u] == kind}


def _delta(a: Sample, b: Sample, key: str) -> float | None:
    if key not in a.values or key not in b.values:
        return None
    d = b.values[key] - a.values[key]
    return d if d >= 0 else None  # a reset: no rate for this interval


def vm_rates(a: Sample, b: Sample) -> dict[str, float]:
    dt = b.time - a.time
    out: dict[str, float] = {"time": b.time}
    cpu = _delta(a, b, "cpuTime")
    if cpu is not None and dt > 0:
        vcpus = max(1.0, b.values.get("cpuNum", 1.0))
        out["cpuPercent"] = round(cpu / (dt * 1e9 * vcpus) * 100, 2)
    for counter, rate in VM_COUNTERS.items():
        d = _delta(a, b, counter)
        if d is not None and dt > 0:
            out[rate] = round(d / dt, 2)
    out.update({g: b.values[g] for g in VM_GAUGES if g in b.values})
    return out


def host_rates(a: Sample, b: Sample) -> dict[str, float]:
    out: dict[str, float] = {"time": b.time}
    busy, total = _delta(a, b, "cpuBusy"), _delta(a, b, "cpuTotal")
    if busy is not None and total:
        out["cpuPercent"] = round(min(100.0, busy / total * 100), 2)
    out.update({g: b.values[g] for g in HOST_GAUGES if g in b.values})
    return out


def series(samples: list[Sample], kind: str) -> list[dict[str, Any]]:
    """Rates between consecutive samples, oldest first."""
    rate = vm_rates if kind == "vm" else host_rates
    return [rate(a, b) for a, b in itertools.pairwise(samples)]
