"""VM instances and their NICs: the life cycle as named flow chains, per-VM task queues,
the deletion policy with its expunge reaper, host maintenance, and VM invariants.

Other services are reached only by message (host allocation and hypervisor operations,
addresses, storage, volumes) and through the ``zmn.core.vmhooks`` extension points, which
plugins such as security groups and EIPs implement.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zmn.core.consistency import ConsistencyCheck
from zmn.core.consoles import StreamOpener
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.hosthooks import HostMaintenanceExtension
from zmn.core.models import AccountResourceRefVO
from zmn.core.resource import RefSpec, ResourceRegistry, ResourceType
from zmn.core.service import Service
from zmn.services.vm.cloudinit import SSHKEY, USERDATA
from zmn.services.vm.common import attach_children
from zmn.services.vm.config import ConfigHandlers
from zmn.services.vm.consistency import VmConsistency
from zmn.services.vm.console import CONSOLE_ERRORS, ConsoleHandlers, VmConsoleStream
from zmn.services.vm.flows.create import VM_CREATE_CHAIN, VM_CREATE_FLOWS
from zmn.services.vm.flows.destroy import (
    VM_DESTROY_CHAIN,
    VM_DESTROY_FLOWS,
    VM_EXPUNGE_CHAIN,
    VM_EXPUNGE_FLOWS,
)
from zmn.services.vm.flows.migrate import VM_MIGRATE_CHAIN, VM_MIGRATE_FLOWS
from zmn.services.vm.flows.power import CHAINS as POWER_CHAINS
from zmn.services.vm.ha import HA
from zmn.services.vm.iso import ERRORS as ISO_ERRORS
from zmn.services.vm.iso import ISO, IsoHandlers
from zmn.services.vm.leases import LeaseTracker
from zmn.services.vm.lifecycle import LifecycleHandlers
from zmn.services.vm.limits import HOTPLUG_CONFIGS
from zmn.services.vm.maintenance import VmHostMaintenance
from zmn.services.vm.migrate_candidates import MigrationCandidateHandlers
from zmn.services.vm.models import VmInstanceVO, VmNicVO
from zmn.services.vm.plan import HOSTNAME, STATIC_IP
from zmn.services.vm.reaper import ExpungeReaper
from zmn.services.vm.recovery import Reconciler, recover
from zmn.services.vm.states import VM_STATE
from zmn.services.vm.wait import WAIT_ERRORS, WaitHandlers

if TYPE_CHECKING:
    from zmn.core.bus import Event, Principal
    from zmn.core.node import Node

log = logging.getLogger("zmn.vm")


def _nic_access(principal: Principal) -> list[Any]:
    """A normal account sees the NICs of its own VMs."""
    return [
        VmNicVO.vmInstanceUuid.in_(
            select(AccountResourceRefVO.resourceUuid).where(
                AccountResourceRefVO.accountUuid == principal.accountUuid
            )
        )
    ]


class VmService(
    LifecycleHandlers,
    ConfigHandlers,
    IsoHandlers,
    ConsoleHandlers,
    WaitHandlers,
    MigrationCandidateHandlers,
    Service,
):
    name = "vm"
    summary = "virtual machines and their NICs"
    requires = ("zone", "cluster", "host", "network", "primaryStorage", "image", "volume")
    state_machines = [VM_STATE]
    tag_patterns = [HOSTNAME, STATIC_IP, USERDATA, SSHKEY, ISO, HA]
    global_configs = [
        GlobalConfigDef(
            "vm",
            "deletionPolicy",
            "Direct",
            "string",
            "what DestroyVmInstance does: Direct (expunge now), Delay (keep it Destroyed for"
            " vm/expungePeriod, recoverable) or Never (keep it until ExpungeVmInstance)",
            choices=("Direct", "Delay", "Never"),
        ),
        GlobalConfigDef(
            "vm",
            "expungePeriod",
            86400,
            "int",
            "seconds a destroyed VM is kept under deletion policy Delay",
            min=0,
        ),
        GlobalConfigDef(
            "vm",
            "expungeInterval",
            3600,
            "int",
            "seconds between two runs of the expunge reaper",
            min=1,
        ),
        GlobalConfigDef(
            "vm",
            "hostMaintenance.policy",
            "MigrateOrStop",
            "string",
            "VMs of a host going into maintenance: MigrateOrStop (migrate, stop those that"
            " cannot move), Migrate (fail when one cannot move) or Stop",
            choices=("MigrateOrStop", "Migrate", "Stop"),
        ),
        *HOTPLUG_CONFIGS,
    ]
    error_codes = {
        "VM_INSTANCE.NOT_FOUND": "no VM with that UUID or name",
        "VM_INSTANCE.INVALID_STATE": "the operation is not allowed in the VM's state",
        "VM_INSTANCE.NO_SIZE": "give an instance offering, or cpuNum and memorySize",
        "VM_INSTANCE.SIZE_TWICE": "an instance offering and cpuNum/memorySize were both given",
        "VM_INSTANCE.DISABLED_RESOURCE": "an image, offering or L3 network asked for is disabled",
        "VM_INSTANCE.IMAGE_NOT_READY": "the image is not Ready",
        "VM_INSTANCE.IMAGE_NOT_BOOTABLE": "the image is a data volume template",
        "VM_INSTANCE.ROOT_DISK_NEEDED": "an ISO image needs rootDiskOfferingUuid",
        "VM_INSTANCE.SCOPE_MISMATCH": "networks, zone, cluster and host are not in one zone",
        "VM_INSTANCE.STATIC_IP_L3": "a staticIp tag names an L3 network the VM does not get",
        "VM_INSTANCE.NO_BACKUP_STORAGE": "the image is on no usable backup storage of the zone",
        "VM_INSTANCE.SAME_HOST": "the migration target is the host the VM runs on",
        "VM_INSTANCE.MIGRATE_OTHER_CLUSTER": "a VM migrates only within its cluster",
        "VM_INSTANCE.NOT_ON_L3": "the VM has no NIC on that L3 network",
        "VM_INSTANCE.L3_ALREADY_ATTACHED": "the VM already has a NIC on that L3 network",
        "VM_INSTANCE.L3_UNREACHABLE": "the VM's cluster is not attached to the L3's L2 network",
        "VM_NIC.NOT_FOUND": "no NIC with that UUID",
        "VM_INSTANCE.HOTPLUG_SHRINK": "a running VM only grows its vCPUs and memory: stop it",
        "VM_INSTANCE.HOTPLUG_LIMIT": "beyond the hot-add maximum fixed at the VM's start",
        "VM_INSTANCE.HOTPLUG_BLOCK": "memory is hot-added in whole 128 MiB blocks",
        **CONSOLE_ERRORS,
        **WAIT_ERRORS,
        "TEST.FAULT_INJECTED": "a flow failed because a test asked it to",
        "FLOW.STEP_FAILED": "a flow step failed unexpectedly; it was rolled back",
        **ISO_ERRORS,
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        node.flows.add_chain(VM_CREATE_CHAIN, VM_CREATE_FLOWS)
        for name, flows in POWER_CHAINS.items():
            node.flows.add_chain(name, flows)
        node.flows.add_chain(VM_MIGRATE_CHAIN, VM_MIGRATE_FLOWS)
        node.flows.add_chain(VM_DESTROY_CHAIN, VM_DESTROY_FLOWS)
        node.flows.add_chain(VM_EXPUNGE_CHAIN, VM_EXPUNGE_FLOWS)
        node.extensions.add(ConsistencyCheck, VmConsistency(node))  # type: ignore[type-abstract]
        node.extensions.add(HostMaintenanceExtension, VmHostMaintenance(node))  # type: ignore[type-abstract]
        node.extensions.add(StreamOpener, VmConsoleStream())  # type: ignore[type-abstract]
        self.reaper = ExpungeReaper(node)
        self.leases = LeaseTracker(node)
        self.reconciler = Reconciler(node)

    def declare(self, registry: ResourceRegistry) -> None:
        registry.add(
            ResourceType(
                "VmInstance",
                VmInstanceVO,
                self.name,
                "vm",
                columns=["uuid", "name", "state", "cpuNum", "memorySize", "hostUuid", "zoneUuid"],
                refs={
                    "zoneUuid": RefSpec("Zone", on_delete="cascade"),
                    "clusterUuid": RefSpec("Cluster", on_delete="cascade"),
                    "hostUuid": RefSpec("Host", on_delete="cascade"),
                    "lastHostUuid": RefSpec(
                        "Host", on_delete="detach", forward="lastHost", reverse="lastHostVm"
                    ),
                    "imageUuid": RefSpec("Image", on_delete="keep"),
                    "instanceOfferingUuid": RefSpec("InstanceOffering", on_delete="detach"),
                    "rootVolumeUuid": RefSpec(
                        "Volume", on_delete="keep", forward="rootVolume", reverse="rootOfVm"
                    ),
                    "defaultL3NetworkUuid": RefSpec(
                        "L3Network",
                        on_delete="detach",
                        forward="defaultL3Network",
                        reverse="defaultOfVm",
                    ),
                },
                enums={
                    "state": sorted(VM_STATE.states),
                    "type": ["UserVm"],
                    "platform": ["Linux", "Windows", "Other"],
                    "hypervisorType": ["Simulator", "KVM"],
                },
                docs={
                    "hostUuid": "host the VM runs on (and takes capacity from); null when stopped",
                    "lastHostUuid": "host the VM ran on last",
                    "memorySize": "memory in bytes",
                    "rootVolumeUuid": "the VM's root volume",
                },
                owned=True,
                inventory_hook=partial(attach_children, self.node),
                hook_adds=("vmNics", "allVolumes"),
                state_field="state",
                summary="a virtual machine",
            )
        )
        registry.add(
            ResourceType(
                "VmNic",
                VmNicVO,
                self.name,
                "vm-nic",
                columns=["uuid", "vmInstanceUuid", "l3NetworkUuid", "ip", "mac", "deviceId"],
                refs={
                    # every NIC belongs to an existing VM (CheckConsistency: nic-owned-by-vm)
                    "vmInstanceUuid": RefSpec(
                        "VmInstance", on_delete="cascade", reverse="vmNics", guaranteed=True
                    ),
                    "l3NetworkUuid": RefSpec("L3Network", on_delete="cascade"),
                    "usedIpUuid": RefSpec("UsedIp", on_delete="keep"),
                },
                docs={
                    "ip": "the NIC's address (its UsedIp)",
                    "deviceId": "order of the NIC in the VM, from 0",
                    "internalName": "interface name on the host",
                    "leaseDate": "when the guest took its DHCP lease of ip since the VM last"
                    " started, as its host saw it (null: not yet)",
                },
                access_filter=_nic_access,
                summary="a VM's network interface on an L3 network",
            )
        )

    async def start(self) -> None:
        try:
            await recover(self.node)
        except Exception:  # a failed recovery must not keep the node down
            log.exception("recovering interrupted VM operations failed")
        self.reaper.start()
        self.reconciler.start()
        self.leases.start()
        self._evictions = self.node.bus.subscribe("/managementNode/evicted", self._on_evicted)

    async def _on_evicted(self, event: Event) -> None:
        """The node that evicted a dead node rolls back the VM chains it left unfinished."""
        if event.data.get("evictedBy") != self.node.uuid:
            return
        dead = str(event.data.get("nodeUuid") or "")
        if not dead:
            return
        try:
            settled = await recover(self.node, of_node=dead)
            log.info("took over VM operations of evicted node %s: %d VM(s) settled", dead, settled)
        except Exception:
            log.exception("rolling back the VM operations of evicted node %s failed", dead)

    async def stop(self) -> None:
        evictions = getattr(self, "_evictions", None)
        if evictions is not None:
            evictions.cancel()
        self.leases.stop()
        await self.reconciler.stop()
        await self.reaper.stop()
