"""What the VMs placed on hosts take, read through the registry (the host service never
imports the VM service; without it, nothing is placed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zmn.core.node import Node

# VM states in which a VM holds CPUs and memory on its host (Created and Destroying only
# while its ``hostUuid`` is still set: during creation and destruction)
PLACED_STATES = (
    "Created",
    "Starting",
    "Running",
    "Stopping",
    "Rebooting",
    "Pausing",
    "Paused",
    "Resuming",
    "Migrating",
    "Unknown",
    "Destroying",
)


def placed_usage(node: Node, session: Session) -> dict[str, tuple[int, int]]:
    """host UUID -> (vCPUs, bytes) of the VMs placed there (empty without the VM service)."""
    rt = node.resources.types.get("VmInstance")
    if rt is None:
        return {}
    vm = rt.model
    out: dict[str, tuple[int, int]] = {}
    rows = session.execute(
        select(vm.hostUuid, vm.cpuNum, vm.memorySize).where(
            vm.hostUuid.is_not(None), vm.state.in_(PLACED_STATES)
        )
    )
    for host, cpu, memory in rows:
        c, m = out.get(host, (0, 0))
        out[host] = (c + int(cpu), m + int(memory))
    return out


def placed_vms(node: Node, session: Session, host_uuid: str) -> list[tuple[str, str, int, int]]:
    """(uuid, state, vCPUs, bytes) of the VMs placed on one host."""
    rt = node.resources.types.get("VmInstance")
    if rt is None:
        return []
    vm = rt.model
    rows = session.execute(
        select(vm.uuid, vm.state, vm.cpuNum, vm.memorySize).where(
            vm.hostUuid == host_uuid, vm.state.in_(PLACED_STATES)
        )
    )
    return [(str(u), str(st), int(c), int(m)) for u, st, c, m in rows]
