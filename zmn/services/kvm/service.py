"""The KVM plugin: ``AddKvmHost``, the ``KVM`` host type and the agent callback endpoint.

It registers its host type with the host service through the :class:`HostType` extension
point and adds hosts through the host service's ``AddHost`` internal message (by name), so
the host service never knows about KVM and this plugin can be left out.

zmn.conf keys: ``agent.callback.listen`` (HOST:PORT, default ``0.0.0.0:7071``),
``agent.callback.advertise`` (the address agents report to, default: found per host),
``kvm.playbook`` (default ``playbooks/kvm-agent.yaml``, installed beside ``zmn``) and
``kvm.wheelhouse`` (default ``$ZMN_HOME/cache/wheelhouse``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmn
from zmn.api.errors import InvalidArgument
from zmn.core import crud
from zmn.core.consoles import ConsoleProvider
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.service import Call, Service, handler
from zmn.services.host.hosttype import HostType
from zmn.services.image.api import ExportVolumeToImageStore
from zmn.services.kvm import models as _models  # noqa: F401 - the kvm_host table
from zmn.services.kvm.api import AddKvmHost
from zmn.services.kvm.console import KvmConsoles
from zmn.services.kvm.deploy import SshDeployer
from zmn.services.kvm.endpoint import AgentEndpoint
from zmn.services.kvm.hosttype import KvmHostType
from zmn.services.kvm.storage import FILE_STORAGE, KvmLocalSnapshots, KvmLocalStorage
from zmn.services.kvm.tags import FACT_TAGS
from zmn.services.kvm.template import export_volume
from zmn.services.kvm.vmsync import KvmVmSync
from zmn.services.primary_storage.local import LocalStorageBackend
from zmn.services.volume.resize import VolumeResizeStorage
from zmn.services.volume.snapshots import VolumeSnapshotStorage

if TYPE_CHECKING:
    from zmn.core.node import Node

DEFAULT_PLAYBOOK = Path(zmn.__file__).resolve().parent.parent / "playbooks" / "kvm-agent.yaml"


def _uri(value: Any) -> str | None:
    text = str(value)
    return (
        None if "://" in text and " " not in text else "must be a libvirt URI like qemu:///system"
    )


def _mirror(value: Any) -> str | None:
    text = str(value)
    if not text:
        return None
    ok = text.startswith(("http://", "https://", "file:/")) and not any(
        c.isspace() or c in "'\"\\;`$" for c in text
    )
    return None if ok else "must be empty or an http(s):// or file:/ URL without spaces or quotes"


class KvmService(Service):
    name = "kvm"
    summary = "KVM hosts: zagent deployed over SSH, driven over signed HTTP"
    requires = ("host",)
    global_configs = [
        GlobalConfigDef(
            "kvm",
            "libvirt.uri",
            "qemu:///system",
            "string",
            "libvirt connection URI the agents use (test:///default for tests); pushed to"
            " each agent at its next reconnect",
            validator=_uri,
        ),
        GlobalConfigDef(
            "kvm",
            "host.virtualization",
            "auto",
            "string",
            "how hosts run guests: kvm (hardware, /dev/kvm), tcg (QEMU's emulator), or auto:"
            " kvm when /dev/kvm works and the host is not itself a VM (nested KVM pauses guests"
            " with 'KVM internal error' on many hypervisors), else tcg; pushed to each agent at"
            " its next reconnect",
            choices=("auto", "kvm", "tcg"),
        ),
        GlobalConfigDef(
            "kvm",
            "vm.graphics",
            "none",
            "string",
            "graphical console of VMs started from now on: none, or vnc/spice on the host's"
            " management address with a random password per start (RequestConsoleAccess)",
            choices=("none", "vnc", "spice"),
        ),
        GlobalConfigDef(
            "kvm", "agent.port", 7070, "int", "port zagent listens on", min=1, max=65535
        ),
        GlobalConfigDef(
            "kvm", "agent.timeout", 30, "int", "seconds to wait for an agent's answer", min=1
        ),
        GlobalConfigDef(
            "kvm",
            "agent.startTimeout",
            60,
            "int",
            "seconds a freshly started agent has to answer its first echo",
            min=1,
        ),
        GlobalConfigDef(
            "kvm", "ssh.timeout", 30, "int", "seconds to connect and log in over SSH", min=1
        ),
        GlobalConfigDef(
            "kvm",
            "task.timeout",
            600,
            "int",
            "seconds a long agent command (VM start, stop, migrate) may take",
            min=1,
        ),
        GlobalConfigDef(
            "kvm",
            "agent.metricsInterval",
            10,
            "int",
            "seconds between the usage reports (CPU, memory, disk, network) of each agent;"
            " 0: none. Pushed to each agent at its next reconnect",
            min=0,
            max=3600,
        ),
        GlobalConfigDef(
            "kvm",
            "host.packageMirror",
            "",
            "string",
            "package repository URL a host installs QEMU/libvirt/Python from when it deploys"
            " (apt: a Debian/Ubuntu archive; dnf: a repository); empty: the host's own sources",
            validator=_mirror,
        ),
        GlobalConfigDef(
            "kvm",
            "reconnect.maxBackoff",
            300,
            "int",
            "longest pause, in seconds, between pings of an agent that stopped answering",
            min=1,
        ),
    ]
    tag_patterns = [pattern for pattern, _key, _token in FACT_TAGS]
    error_codes = {
        "KVM.NO_CREDENTIALS": "AddKvmHost needs a password or an SSH private key",
        "KVM.BAD_SSH_KEY": "the SSH private key file cannot be read on the management node",
        "KVM.HOST_KEY_CHANGED": "the host's SSH key is not the one pinned on first contact;"
        " nothing was run on it",
        "KVM.SSH_UNREACHABLE": "SSH to the host failed (network, port, timeout)",
        "KVM.SSH_AUTH_FAILED": "SSH login was refused",
        "KVM.DEPLOY_FAILED": "a step of the deployment playbook failed (details.step)",
        "KVM.BAD_PLAYBOOK": "the deployment playbook is malformed",
        "KVM.WHEELHOUSE_FAILED": "a wheel the agent needs cannot be shipped (not pure Python)",
        "KVM.NO_RECORD": "the host has no KVM record (credentials, key, secret)",
        "KVM.AGENT_UNREACHABLE": "the agent did not accept a connection",
        "KVM.AGENT_TIMEOUT": "the agent did not answer in time",
        "KVM.AGENT_START_TIMEOUT": "the agent did not answer after it was started",
        "KVM.AGENT_MISMATCH": "the agent at that address belongs to another host",
        "KVM.AGENT_BACKOFF": "the agent missed pings; it is retried after a backoff",
        "KVM.AGENT_BAD_ANSWER": "the agent's answer could not be understood",
        "KVM.TASK_TIMEOUT": "a long agent command did not report its result in time",
        "KVM.UNSUPPORTED_OPERATION": "the VM operation is not implemented for KVM hosts yet",
        "KVM.NO_L2": "a NIC's L3 network has no L2 network",
        "KVM.VOLUME_ON_OTHER_HOST": "the volume is on another host's local storage",
        "KVM.UNSUPPORTED_IMAGE_FORMAT": "local storage root volumes need a qcow2 image",
        "KVM.IMAGE_NOT_FETCHABLE": "the image has no Ready copy on an image store",
        "KVM.IMAGE_CHECKSUM": "the image copied to the host does not match its checksum",
        "KVM.MIGRATE_LOCAL_STORAGE": "a VM with volumes on local storage cannot migrate",
        "KVM.VOLUME_NOT_MADE": "the volume on local storage has no file on any host yet",
        "KVM.MIGRATE_TARGET": "the migration target is not another KVM host",
        "KVM.NO_DHCP_ADDRESS": "an L3's IP ranges fill its CIDR: no address left for the hosts'"
        " DHCP server",
        "KVM.NO_SUCH_NIC": "security-group rules were sent for a NIC that does not exist",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        playbook = Path(node.config.get("kvm.playbook") or DEFAULT_PLAYBOOK)
        wheelhouse = Path(
            node.config.get("kvm.wheelhouse") or node.config.home / "cache" / "wheelhouse"
        )
        self.endpoint = AgentEndpoint(node, self._secret_of)
        self.host_type = KvmHostType(node, self.endpoint, SshDeployer(playbook, wheelhouse))
        node.extensions.add(HostType, self.host_type)  # type: ignore[type-abstract]
        self.vmsync = KvmVmSync(node, self.host_type)
        node.extensions.add(LocalStorageBackend, KvmLocalStorage(self.host_type))  # type: ignore[type-abstract]
        for ps_type in FILE_STORAGE:  # local and shared: qcow2 files, snapshots inside them
            volumes = KvmLocalSnapshots(self.host_type, ps_type)
            node.extensions.add(VolumeSnapshotStorage, volumes)  # type: ignore[type-abstract]
            node.extensions.add(VolumeResizeStorage, volumes)  # type: ignore[type-abstract]
        node.extensions.add(ConsoleProvider, KvmConsoles(self.host_type))  # type: ignore[type-abstract]

    def _secret_of(self, host_uuid: str) -> str | None:
        return self.host_type.secret_of(host_uuid)

    async def start(self) -> None:
        self.vmsync.start()

    async def stop(self) -> None:
        await self.vmsync.stop()
        await self.endpoint.stop()
        self.host_type.agents.close()

    @handler(ExportVolumeToImageStore)
    async def export_volume(self, msg: ExportVolumeToImageStore, call: Call) -> dict[str, Any]:
        return await export_volume(
            self.host_type, msg.volumeUuid, msg.backupStorageUuid, msg.installPath
        )

    @handler(AddKvmHost)
    async def add_kvm_host(self, msg: AddKvmHost, call: Call) -> dict[str, Any]:
        existing = crud.existing_inventory(call, "Host", msg)
        if existing is not None:
            return {"inventory": existing}
        _check(msg)
        params = {
            "username": msg.username,
            "password": msg.password,
            "sshPrivateKey": os.path.abspath(msg.sshPrivateKey) if msg.sshPrivateKey else None,
            "sshPort": msg.sshPort,
        }
        add = call.node.apis.get("AddHost")
        return dict(
            await call.call(
                add(
                    resourceUuid=msg.resourceUuid,
                    description=msg.description,
                    systemTags=list(msg.systemTags),
                    userTags=list(msg.userTags),
                    name=msg.name,
                    managementIp=msg.managementIp,
                    clusterUuid=msg.clusterUuid,
                    hypervisorType="KVM",
                    params=params,
                )
            )
        )


def _check(msg: AddKvmHost) -> None:
    if not msg.password and not msg.sshPrivateKey:
        raise InvalidArgument(
            "give password or sshPrivateKey to log in to the host",
            code="KVM.NO_CREDENTIALS",
            field="password",
        )
    if not 1 <= msg.sshPort <= 65535:
        raise InvalidArgument(f"sshPort must be 1-65535, got {msg.sshPort}", field="sshPort")
    if not msg.username or any(c.isspace() for c in msg.username):
        raise InvalidArgument(f"username {msg.username!r} is not a user name", field="username")
    if msg.sshPrivateKey and not os.access(msg.sshPrivateKey, os.R_OK):
        raise InvalidArgument(
            f"sshPrivateKey: cannot read {msg.sshPrivateKey} on the management node",
            code="KVM.BAD_SSH_KEY",
            field="sshPrivateKey",
        )
