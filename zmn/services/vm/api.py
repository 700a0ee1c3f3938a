from __future__ import annotations

from typing import Annotated, Literal

from zmn.api.cloudinit import MAX_USER_DATA
from zmn.api.limits import Text
from zmn.api.message import ApiMessage, CreateMessage, Doc, Ref, Secret, api

# user data: text with its newlines and tabs, or base64 (4/3 of 64 KiB, with line breaks)
USER_DATA_TEXT = Text(MAX_USER_DATA * 2, allow="\n\r\t")
SSH_KEY_TEXT = Text(16384)  # one OpenSSH public key line (an RSA-16384 key fits)

Uuid = Annotated[str, Doc("VM UUID or name")]


@api(resource="VmInstance", verb="create", long=True)
class CreateVmInstance(CreateMessage, kw_only=True):
    """Create a VM: choose a host and storage, make its volumes and NICs, start it."""

    name: Annotated[str, Doc("VM name")]
    # Ref(read=True): plan_create (zmn/services/vm/plan.py) reads these rows by UUID anyway
    imageUuid: Annotated[
        str, Doc("image UUID or name (root volume template or ISO)"), Ref("Image", read=True)
    ]
    l3NetworkUuids: Annotated[
        list[str], Doc("L3 networks (UUIDs or names), one NIC on each"), Ref("L3Network", read=True)
    ]
    instanceOfferingUuid: Annotated[
        str | None,
        Doc("instance offering (or give cpuNum and memorySize)"),
        Ref("InstanceOffering", read=True),
    ] = None
    cpuNum: Annotated[int | None, Doc("vCPUs, without an instance offering")] = None
    memorySize: Annotated[int | None, Doc("memory in bytes, without an instance offering")] = None
    defaultL3NetworkUuid: Annotated[
        str | None, Doc("the L3 of the default route (default: the first)"), Ref("L3Network")
    ] = None
    rootDiskOfferingUuid: Annotated[
        str | None,
        Doc("root volume size (needed for an ISO image)"),
        Ref("DiskOffering", read=True),
    ] = None
    dataDiskOfferingUuids: Annotated[
        list[str], Doc("one data volume per disk offering"), Ref("DiskOffering", read=True)
    ] = []
    zoneUuid: Annotated[str | None, Doc("create in this zone"), Ref("Zone")] = None
    clusterUuid: Annotated[str | None, Doc("create in this cluster"), Ref("Cluster", read=True)] = (
        None
    )
    hostUuid: Annotated[str | None, Doc("create on this host"), Ref("Host", read=True)] = None
    primaryStorageUuidForRootVolume: Annotated[
        str | None, Doc("put the volumes on this primary storage"), Ref("PrimaryStorage")
    ] = None
    strategy: Annotated[
        Literal["InstantStart", "CreateStopped"],
        Doc("InstantStart runs it now; CreateStopped leaves it Stopped"),
    ] = "InstantStart"
    type: Annotated[Literal["UserVm"], Doc("VM type")] = "UserVm"
    userData: Annotated[
        str | None,
        Doc("cloud-init user data, text or base64, at most 64 KiB (also the userdata:: tag)"),
        Secret(),  # often holds passwords; kept out of job records and the audit log
        USER_DATA_TEXT,
    ] = None
    sshKeys: Annotated[
        list[str], Doc("SSH public keys for the guest (also sshkey:: tags)"), SSH_KEY_TEXT
    ] = []


@api(resource="VmInstance", verb="start", long=True)
class StartVmInstance(ApiMessage, kw_only=True):
    """Start a stopped VM (on its last host when it has room)."""

    uuid: Uuid
    hostUuid: Annotated[str | None, Doc("start on this host"), Ref("Host")] = None
    clusterUuid: Annotated[str | None, Doc("start in this cluster"), Ref("Cluster")] = None


@api(resource="VmInstance", verb="stop", long=True)
class StopVmInstance(ApiMessage, kw_only=True):
    """Stop a VM: gracefully, or at once with type=cold."""

    uuid: Uuid
    type: Annotated[Literal["grace", "cold"], Doc("grace (shut down) or cold (power off)")] = (
        "grace"
    )


@api(resource="VmInstance", verb="reboot", long=True)
class RebootVmInstance(ApiMessage, kw_only=True):
    """Reboot a running VM."""

    uuid: Uuid


@api(resource="VmInstance", verb="pause", long=True)
class PauseVmInstance(ApiMessage, kw_only=True):
    """Pause a running VM (it keeps its memory and host)."""

    uuid: Uuid


@api(resource="VmInstance", verb="resume", long=True)
class ResumeVmInstance(ApiMessage, kw_only=True):
    """Resume a paused VM."""

    uuid: Uuid


@api(resource="VmInstance", verb="destroy", long=True)
class DestroyVmInstance(ApiMessage, kw_only=True):
    """Destroy a VM; by vm/deletionPolicy it is expunged now (Direct), later (Delay) or never."""

    uuid: Uuid


@api(resource="VmInstance", verb="recover", long=True)
class RecoverVmInstance(ApiMessage, kw_only=True):
    """Bring a destroyed (not yet expunged) VM back, Stopped."""

    uuid: Uuid


@api(resource="VmInstance", verb="expunge", long=True)
class ExpungeVmInstance(ApiMessage, kw_only=True):
    """Remove a destroyed VM for good: its NICs, addresses and root volume go."""

    uuid: Uuid


@api(resource="VmInstance", verb="migrate", long=True)
class MigrateVm(ApiMessage, kw_only=True):
    """Live-migrate a running VM to another host of its cluster."""

    vmInstanceUuid: Annotated[str, Doc("VM UUID or name"), Ref("VmInstance")]
    hostUuid: Annotated[
        str | None, Doc("target host (default: chosen by the allocator)"), Ref("Host")
    ] = None


@api(resource="VmInstance", verb="update")
class UpdateVmInstance(ApiMessage, kw_only=True):
    """Rename a VM, change its description or default L3, or its cpuNum/memorySize (a Running
    VM only grows, up to the hot-add maxima fixed at its start)."""

    uuid: Uuid
    name: Annotated[str | None, Doc("new name")] = None
    description: Annotated[str | None, Doc("new description")] = None
    defaultL3NetworkUuid: Annotated[str | None, Doc("L3 of one of its NICs"), Ref("L3Network")] = (
        None
    )
    cpuNum: Annotated[
        int | None, Doc("vCPUs (Running: only more, up to vm/cpu.hotplugMax at its start)")
    ] = None
    memorySize: Annotated[
        int | None,
        Doc("memory in bytes (Running: only more, by 128 MiB steps, up to vm/memory.hotplugMax)"),
    ] = None
    userData: Annotated[
        str | None,
        Doc("new cloud-init user data, text or base64 (Stopped VMs only)"),
        Secret(),
        USER_DATA_TEXT,
    ] = None
    sshKeys: Annotated[
        list[str] | None,
        Doc("SSH public keys replacing the VM's (Stopped VMs only)"),
        SSH_KEY_TEXT,
    ] = None
    ha: Annotated[
        Literal["NeverStop", "None"] | None,
        Doc("HA level: NeverStop (restarted on another host when its host dies), None: no HA"),
    ] = None


@api(resource="VmInstance", verb="change-offering")
class ChangeInstanceOffering(ApiMessage, kw_only=True):
    """Give a VM the vCPUs and memory of another instance offering.

    A Stopped VM takes them at its next start. A Running VM grows online (vCPUs and memory
    hot-added) up to the maxima fixed at its start by vm/cpu.hotplugMax and
    vm/memory.hotplugMax; shrinking it, or growing it beyond them, needs a stop."""

    vmInstanceUuid: Annotated[str, Doc("VM UUID or name"), Ref("VmInstance")]
    instanceOfferingUuid: Annotated[
        str, Doc("instance offering UUID or name"), Ref("InstanceOffering")
    ]


@api(resource="VmInstance", verb="attach-l3", long=True)
class AttachL3NetworkToVm(ApiMessage, kw_only=True):
    """Add a NIC on an L3 network to a VM (hot-plugged when it runs)."""

    vmInstanceUuid: Annotated[str, Doc("VM UUID or name"), Ref("VmInstance")]
    l3NetworkUuid: Annotated[str, Doc("L3 network UUID or name"), Ref("L3Network")]
    staticIp: Annotated[str | None, Doc("address to give the NIC")] = None


@api(resource="VmNic", verb="detach", long=True)
class DetachL3NetworkFromVm(ApiMessage, kw_only=True):
    """Remove a NIC from its VM and give its address back."""

    vmNicUuid: Annotated[str, Doc("NIC UUID"), Ref("VmNic")]


# ----------------------------------------------------------------------------- internal


@api(internal=True)
class DeleteVmInstance(ApiMessage, kw_only=True):
    """Destroy and expunge a VM at once (cascade from a zone, cluster or host delete)."""

    uuid: Annotated[str, Doc("VM UUID")]
    cascade: Annotated[bool, Doc("ignored; a VM always goes with its NICs and root volume")] = False


@api(internal=True)
class DeleteVmNic(ApiMessage, kw_only=True):
    """Remove a NIC (cascade from an L3 network delete)."""

    uuid: Annotated[str, Doc("NIC UUID")]
    cascade: Annotated[bool, Doc("ignored")] = False


@api(internal=True)
class CheckVmOperation(ApiMessage, kw_only=True):
    """Whether a VM's state allows an operation; answers its inventory, or InvalidState."""

    vmInstanceUuid: Annotated[str, Doc("VM UUID")]
    operation: Annotated[str, Doc("operation name, as the state table has it")]


@api(resource="VmInstance", verb="attach-iso", long=True)
class AttachIsoToVmInstance(ApiMessage, kw_only=True):
    """Put an ISO image in the VM's CD-ROM drive (at once when it runs)."""

    vmInstanceUuid: Annotated[str, Doc("VM UUID or name"), Ref("VmInstance")]
    isoUuid: Annotated[str, Doc("ISO image UUID or name (mediaType ISO)"), Ref("Image")]


@api(resource="VmInstance", verb="detach-iso", long=True)
class DetachIsoFromVmInstance(ApiMessage, kw_only=True):
    """Take the ISO out of the VM's CD-ROM drive (at once when it runs)."""

    vmInstanceUuid: Annotated[str, Doc("VM UUID or name"), Ref("VmInstance")]
    isoUuid: Annotated[
        str | None, Doc("the ISO to take out (default: whichever is in)"), Ref("Image")
    ] = None


@api(resource="VmInstance", verb="migration-candidates", mutating=False, rows="Host")
class GetVmMigrationCandidateHosts(ApiMessage, kw_only=True):
    """Hosts a running VM can live-migrate to: another Enabled, Connected host of its cluster
    that reaches its networks and primary storage and has room for its CPUs and memory."""

    vmInstanceUuid: Annotated[str, Doc("VM UUID or name"), Ref("VmInstance")]
