"""The hot-add limits a VM gets at each start (see :mod:`zmn.services.vm.online`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zmn.api.hotplug import MEMORY_BLOCK
from zmn.core.globalconfig import GlobalConfigDef

if TYPE_CHECKING:
    from zmn.core.node import Node

HOTPLUG_CONFIGS = [
    GlobalConfigDef(
        "vm",
        "cpu.hotplugMax",
        0,
        "int",
        "vCPUs a running VM can be grown to (ChangeInstanceOffering, UpdateVmInstance cpuNum),"
        " fixed at each start; 0: no CPU hot-add (a change needs a stop)",
        min=0,
        max=512,
    ),
    GlobalConfigDef(
        "vm",
        "memory.hotplugMax",
        0,
        "int",
        "bytes of memory a running VM can be grown to, in 128 MiB steps, fixed at each"
        " start; 0: no memory hot-add (a change needs a stop)",
        min=0,
    ),
]


def start_limits(node: Node, vm: dict[str, Any]) -> dict[str, int]:
    """``maxCpuNum`` / ``maxMemorySize`` for a VM starting now (0: no headroom)."""
    cpu, memory = int(vm["cpuNum"]), int(vm["memorySize"])
    max_cpu = int(node.global_config.get("vm", "cpu.hotplugMax"))
    max_memory = int(node.global_config.get("vm", "memory.hotplugMax"))
    out: dict[str, int] = {}
    if max_cpu > cpu:
        out["maxCpuNum"] = max_cpu
    if max_memory > memory:
        blocks = (max_memory - memory) // MEMORY_BLOCK
        if blocks:
            out["maxMemorySize"] = memory + blocks * MEMORY_BLOCK
    return out
