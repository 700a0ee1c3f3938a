"""Extension points of the host life cycle that other services implement.

They live in the core so that, say, the VM service can move VMs off a host going into
maintenance without importing the host service (and the host service never imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from zmn.core.service import Call


class HostMaintenanceExtension(Protocol):
    """Called when a host goes into maintenance (e.g. the VM service migrates VMs away).

    Raising aborts the maintenance and puts the host back in its previous state.
    """

    async def prepare_maintenance(self, call: Call, host_uuid: str) -> None: ...
