"""Plausible usage for simulator hosts and their running VMs, so demos and tests show metrics.

Each tick advances counters the way a busy hypervisor would: every VM's CPU use wanders
(a bounded random walk between 2% and 90% of its vCPUs), disks and NICs move some kilobytes
to megabytes a second, memory sits between a third and four fifths of the VM's size; a host's
figures are its VMs' sums plus a little of its own. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class _Vm:
    util: float
    counters: dict[str, float] = field(default_factory=dict)


_VM_TRAFFIC = (("diskReadBytes", 4e6), ("diskWriteBytes", 2e6), ("netRxBytes", 1e6),
               ("netTxBytes", 5e5))  # fmt: skip


class SyntheticUsage:
    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - demo figures, not security
        self._vms: dict[str, _Vm] = {}
        self._hosts: dict[str, dict[str, float]] = {}

    def vm(self, uuid: str, cpu_num: int, memory: int, dt: float) -> dict[str, float]:
        """The VM's next raw sample; ``busyCores`` is what it adds to its host's CPU."""
        # every VM, every round: rng.uniform(a, b) written out (a + (b - a) * random(), the
        # same numbers) saves a Python call per draw
        rand = self._rng.random
        state = self._vms.get(uuid)
        if state is None:
            state = self._vms[uuid] = _Vm(0.05 + (0.5 - 0.05) * rand())
        state.util = min(0.9, max(0.02, state.util + (-0.08 + (0.08 + 0.08) * rand())))
        c = state.counters
        c["cpuTime"] = c.get("cpuTime", 0.0) + dt * 1e9 * cpu_num * state.util
        for key, top in _VM_TRAFFIC:
            c[key] = c.get(key, 0.0) + dt * (0.01 + (1.0 - 0.01) * rand()) * top
        c["diskReadOps"] = c.get("diskReadOps", 0.0) + dt * (1 + 199 * rand())
        c["diskWriteOps"] = c.get("diskWriteOps", 0.0) + dt * (1 + 99 * rand())
        return {
            **c,
            "cpuNum": float(cpu_num),
            "memoryTotal": float(memory),
            "memoryUsed": float(int(memory * (0.33 + (0.8 - 0.33) * rand()))),
            "busyCores": cpu_num * state.util,
        }

    def host(
        self, uuid: str, cpu_num: int, memory: int, vms: list[dict[str, float]], dt: float
    ) -> dict[str, float]:
        c = self._hosts.setdefault(uuid, {"cpuBusy": 0.0, "cpuTotal": 0.0})
        busy_cores = sum(v["busyCores"] for v in vms) + 0.05 * cpu_num
        busy_cores = min(float(cpu_num), busy_cores)
        c["cpuTotal"] += dt * cpu_num
        c["cpuBusy"] += dt * busy_cores
        used = sum(v["memoryUsed"] for v in vms) + memory * 0.05
        return {
            **c,
            "cpuNum": float(cpu_num),
            "memoryTotal": float(memory),
            "memoryUsed": float(min(memory, int(used))),
            "load1": round(busy_cores * self._rng.uniform(0.9, 1.1), 2),
            "load5": round(busy_cores, 2),
            "load15": round(busy_cores * 0.95, 2),
        }

    def forget_except(self, vms: set[str], hosts: set[str]) -> None:
        self._vms = {u: s for u, s in self._vms.items() if u in vms}
        self._hosts = {u: c for u, c in self._hosts.items() if u in hosts}
