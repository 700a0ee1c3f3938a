"""Changes of a running VM's size: vCPUs and memory hot-added up to limits fixed at start.

At every start (:func:`zmn.services.vm.limits.start_limits`, added to the ``start``
hypervisor operation by :func:`zmn.services.vm.common.hypervisor`) the VM gets ``maxCpuNum`` / ``maxMemorySize`` from
the global configs ``vm/cpu.hotplugMax`` and ``vm/memory.hotplugMax`` (0: no hot-add). The
hypervisor keeps them (the KVM domain's ``<vcpu current=N>MAX`` and ``<maxMemory>``; the
simulator's record), so a config changed later applies from the next start.

:func:`grow_running` is what ``ChangeInstanceOffering`` and ``UpdateVmInstance`` (cpuNum,
memorySize) do to a Running VM: shrinking is refused before anything happens (a stop is
needed), the extra vCPUs and memory are reserved on the VM's host within its
over-provisioning ratios, the hypervisor grows the VM (``changeCpuMemory``, checked against
the limits fixed at start: :mod:`zmn.api.hotplug`), and only then does the VM row change. A
refused or failed hot-add gives the reservation back; the VM and its row stay as they were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zmn.api.errors import InvalidState
from zmn.api.hotplug import MIB
from zmn.core.service import send
from zmn.services.vm.common import quietly

if TYPE_CHECKING:
    from zmn.core.service import Call


async def grow_running(call: Call, vm: dict[str, Any], cpu: int, memory: int) -> None:
    """Hot-add to a Running VM (see the module docstring); raise and change nothing if not."""
    have_cpu, have_memory = int(vm["cpuNum"]), int(vm["memorySize"])
    for field, new, have in (("cpuNum", cpu, have_cpu), ("memorySize", memory, have_memory)):
        if new < have:
            raise InvalidState(
                f"{field}: VM {vm['name']} is Running with {_show(field, have)}; a running VM"
                f" only grows: stop it to give it {_show(field, new)}",
                code="VM_INSTANCE.HOTPLUG_SHRINK",
                field=field,
            )
    extra_cpu, extra_memory = cpu - have_cpu, memory - have_memory
    if not extra_cpu and not extra_memory:
        return
    host = str(vm["hostUuid"])
    await send(call, "AllocateHost", cpuNum=extra_cpu, memorySize=extra_memory, hostUuid=host)
    try:
        await send(
            call,
            "HypervisorOp",
            hostUuid=host,
            op="changeCpuMemory",
            vm=vm,
            args={"cpuNum": cpu, "memorySize": memory},
        )
    except BaseException:
        await quietly(
            f"giving back the hot-add reservation of VM {vm['uuid']}",
            send(
                call,
                "ReleaseHostCapacity",
                hostUuid=host,
                cpuNum=extra_cpu,
                memorySize=extra_memory,
            ),
        )
        raise


def _show(field: str, value: int) -> str:
    return f"{value} vCPUs" if field == "cpuNum" else f"{value // MIB} MiB"
