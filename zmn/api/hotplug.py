"""Growing a running VM's vCPUs and memory: the limits and the one check every hypervisor
driver applies (the KVM agent on the live domain, the simulator on its record), so a refused
change reads the same everywhere and names the global config that fixed the limit.

Limits are fixed when the VM starts, from ``vm/cpu.hotplugMax`` and ``vm/memory.hotplugMax``;
a running VM only grows (memory by whole 128 MiB blocks, the size Linux onlines memory in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zmn.api.errors import InvalidArgument, InvalidState

MIB = 1024 * 1024
MEMORY_BLOCK = 128 * MIB
CPU_KEY = "vm/cpu.hotplugMax"
MEMORY_KEY = "vm/memory.hotplugMax"


@dataclass(frozen=True)
class Limits:
    """What a running VM has and may grow to."""

    cpu_num: int
    max_cpu_num: int
    memory_size: int  # bytes, boot memory plus hot-added DIMMs
    max_memory_size: int  # bytes; equal to memory_size when no <maxMemory>
    free_slots: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "cpuNum": self.cpu_num,
            "maxCpuNum": self.max_cpu_num,
            "memorySize": self.memory_size,
            "maxMemorySize": self.max_memory_size,
        }


def check(uuid: str, have: Limits, cpu_num: int, memory_size: int) -> None:
    """Refuse a change the running domain cannot take, naming the limit; nothing changes."""
    if cpu_num < have.cpu_num or memory_size < have.memory_size:
        raise InvalidState(
            f"VM {uuid} runs with {have.cpu_num} vCPUs and {have.memory_size // MIB} MiB:"
            " a running VM only grows; stop it to shrink it",
            code="VM_INSTANCE.HOTPLUG_SHRINK",
            **have.to_wire(),
        )
    if cpu_num > have.max_cpu_num:
        raise InvalidState(
            f"VM {uuid} was started with at most {have.max_cpu_num} vCPUs (global config"
            f" {CPU_KEY} at its start); {cpu_num} needs a stop and start",
            code="VM_INSTANCE.HOTPLUG_LIMIT",
            field="cpuNum",
            **have.to_wire(),
        )
    if memory_size > have.max_memory_size:
        raise InvalidState(
            f"VM {uuid} was started with at most {have.max_memory_size // MIB} MiB (global"
            f" config {MEMORY_KEY} at its start); {memory_size // MIB} MiB needs a stop"
            " and start",
            code="VM_INSTANCE.HOTPLUG_LIMIT",
            field="memorySize",
            **have.to_wire(),
        )
    extra = memory_size - have.memory_size
    if extra % MEMORY_BLOCK:
        raise InvalidArgument(
            f"memorySize: a running VM grows by whole 128 MiB blocks; {extra // MIB} MiB more"
            " is not one",
            code="VM_INSTANCE.HOTPLUG_BLOCK",
            field="memorySize",
        )
    if extra and have.free_slots == 0:
        raise InvalidState(
            f"VM {uuid} has no free memory slot left; stop and start it to grow its memory",
            code="VM_INSTANCE.HOTPLUG_LIMIT",
            field="memorySize",
            **have.to_wire(),
        )
