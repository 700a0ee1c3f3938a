"""Usage samples the agent sends with its reports: the host's CPU, memory and load from
``/proc``, and each running domain's counters from libvirt (``Driver.usage``).

Every ``metrics_interval`` seconds (agent config; 0 turns it off) a ``metrics`` report goes to
the node with raw values; the node turns them into rates. Counters: ``cpuTime`` (ns),
``diskReadBytes``/``diskWriteBytes``/``diskReadOps``/``diskWriteOps``, ``netRxBytes``/``netTxBytes``,
a host's ``cpuBusy``/``cpuTotal`` (seconds); gauges: ``memoryUsed``/``memoryTotal`` (bytes),
``cpuNum``, ``load1``/``load5``/``load15``.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("zagent.metrics")


def host_usage(proc: Path = Path("/proc")) -> dict[str, float]:
    """The host's own CPU time (busy and all, seconds), memory and load average."""
    ticks = float(os.sysconf("SC_CLK_TCK"))
    fields = [float(x) for x in (proc / "stat").read_text().splitlines()[0].split()[1:9]]
    total = sum(fields)
    idle = fields[3] + fields[4]  # idle + iowait
    mem: dict[str, float] = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            mem[key] = float(rest.split()[0]) * 1024
    load = [float(x) for x in (proc / "loadavg").read_text().split()[:3]]
    return {
        "cpuBusy": (total - idle) / ticks,
        "cpuTotal": total / ticks,
        "cpuNum": float(os.cpu_count() or 1),
        "memoryTotal": mem.get("MemTotal", 0.0),
        "memoryUsed": mem.get("MemTotal", 0.0) - mem.get("MemAvailable", 0.0),
        "load1": load[0],
        "load5": load[1],
        "load15": load[2],
    }


def from_domain_stats(rec: dict[str, Any]) -> dict[str, float]:
    """One domain's values from a ``virConnectGetAllDomainStats`` record."""
    out: dict[str, float] = {}
    if "cpu.time" in rec:
        out["cpuTime"] = float(rec["cpu.time"])
    vcpus = rec.get("vcpu.current")
    if vcpus:
        out["cpuNum"] = float(vcpus)
    current = rec.get("balloon.current") or rec.get("balloon.maximum")
    if current:
        out["memoryTotal"] = float(current) * 1024
        if "balloon.available" in rec and "balloon.unused" in rec:  # the guest's own view
            out["memoryUsed"] = float(rec["balloon.available"] - rec["balloon.unused"]) * 1024
        elif "balloon.rss" in rec:  # what the guest holds of the host's memory
            out["memoryUsed"] = min(float(rec["balloon.rss"]), float(current)) * 1024
    for prefix, pairs in (
        ("block", (("rd.bytes", "diskReadBytes"), ("wr.bytes", "diskWriteBytes"),
                   ("rd.reqs", "diskReadOps"), ("wr.reqs", "diskWriteOps"))),
        ("net", (("rx.bytes", "netRxBytes"), ("tx.bytes", "netTxBytes"))),
    ):  # fmt: skip
        for i in range(int(rec.get(f"{prefix}.count", 0))):
            for key, name in pairs:
                value = rec.get(f"{prefix}.{i}.{key}")
                if value is not None:
                    out[name] = out.get(name, 0.0) + float(value)
    return out


class _Usage(Protocol):
    def usage(self) -> dict[str, dict[str, float]]: ...


class Submit(Protocol):
    def submit(self, kind: str, payload: dict[str, Any]) -> None: ...


class MetricsSampler:
    """A thread sending a ``metrics`` report every ``interval`` seconds."""

    def __init__(self, driver: _Usage, reporter: Submit, interval: float) -> None:
        self.driver = driver
        self.reporter = reporter
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> dict[str, Any]:
        try:
            host = host_usage()
        except (OSError, ValueError, IndexError) as exc:
            log.warning("cannot read the host's usage: %s", exc)
            host = {}
        try:
            vms = self.driver.usage()
        except Exception as exc:  # libvirt gone for a moment: the next round tries again
            log.warning("cannot read the domains' usage: %s", exc)
            vms = {}
        return {"host": host, "vms": vms}

    def start(self) -> None:
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zagent-metrics", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.reporter.submit("metrics", self.sample())
