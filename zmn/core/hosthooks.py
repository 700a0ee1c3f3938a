"""Extension points of the host life cycle that other services implement.

They live in the core so that, say, the VM service can move VMs off a host going into
maintenance without importing the host service (and the host service never imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from zmn.core.fastsql import AnyConnection
    from zmn.core.service import Call


class HostMaintenanceExtension(Protocol):
    """Called when a host goes into maintenance (e.g. the VM service migrates VMs away).

    Raising aborts the maintenance and puts the host back in its previous state.
    """

    async def prepare_maintenance(self, call: Call, host_uuid: str) -> None: ...


class HostStorageAccess(Protocol):
    """Hosts that cannot use a primary storage although their cluster is attached to it (the
    primary storage service: hosts that have not read a shared storage's marker).

    The host allocator skips them when it chooses a host (VM create, start, migrate, and the
    migration candidates); a host asked for by name goes on to the storage's own check,
    which says why it is refused.
    """

    def hosts_without(self, conn: AnyConnection, ps_uuids: list[str]) -> dict[str, str]:
        """Host UUID -> why it cannot use one of ``ps_uuids``, read in ``conn``."""
        ...
