"""Extension points of the VM lifecycle, implemented by plugins such as security groups and EIP.

They live in the core so that a plugin never imports the VM service. Each hook receives plain
dicts: the VM inventory (with ``vmNics`` and ``allVolumes`` embedded) and, where it matters,
the host UUID. A hook that raises makes the operation fail (and roll back when it is part of a
flow chain); ``*Rollback`` methods undo an ``after instantiate`` that succeeded.

Register with ``node.extensions.add(VmAfterInstantiate, impl)``; the VM service calls every
registered implementation in registration order.
"""

from __future__ import annotations

from typing import Any, Protocol

VmInventory = dict[str, Any]


class VmBeforeStart(Protocol):
    async def before_vm_start(self, vm: VmInventory, host_uuid: str) -> None: ...


class VmAfterInstantiate(Protocol):
    """After a new VM runs on its host (the last step of ``vm-create``)."""

    async def after_vm_instantiate(self, vm: VmInventory, host_uuid: str) -> None: ...

    async def rollback_vm_instantiate(self, vm: VmInventory, host_uuid: str) -> None: ...


class VmAfterStart(Protocol):
    async def after_vm_start(self, vm: VmInventory, host_uuid: str) -> None: ...


class VmAfterStop(Protocol):
    async def after_vm_stop(self, vm: VmInventory, host_uuid: str | None) -> None: ...


class VmAfterMigrate(Protocol):
    async def after_vm_migrate(
        self, vm: VmInventory, source_host_uuid: str, target_host_uuid: str
    ) -> None: ...


class VmAfterDestroy(Protocol):
    async def after_vm_destroy(self, vm: VmInventory) -> None: ...


class VmBeforeExpunge(Protocol):
    """Before a VM's rows are removed: drop references to its NICs (EIPs, group membership)."""

    async def before_vm_expunge(self, vm: VmInventory) -> None: ...


class VmNicBeforeDelete(Protocol):
    """Before one NIC is removed (DetachL3NetworkFromVm, expunge)."""

    async def before_vm_nic_delete(self, nic: dict[str, Any]) -> None: ...
