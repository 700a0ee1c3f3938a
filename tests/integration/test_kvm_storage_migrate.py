"""MigrateVm between KVM hosts, node side, against two real in-process agents (no root).

The hypervisor is the fake driver with QEMU's features (it can migrate and hot-plug); a
migration hands the domain to the driver of the agent at the destination URI's address, as
libvirt's peer-to-peer migration does. Everything else is real: the signed agent commands,
the long ``/v1/vm/migrate`` answered through the callback endpoint, the agents' merged
network state (dnsmasq reservations, security-group rules, EIP NAT) and local storage files.

Checked: the VM's network state moves from the source host to the target (the target is
programmed before the domain arrives, the source forgets it after), a failed migration
leaves it on the source only, and a VM with a volume on local storage is refused
(``KVM.MIGRATE_LOCAL_STORAGE``) with nothing moved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest

from agent.drivers.fake import FakeDriver
from agent.drivers.features import QEMU_TCG
from agent.network.executor import RecordingExecutor
from tests.support.kvmagents import Env, LocalDeployer, build_kvm_cloud, kvm_node
from zmn.api.errors import OperationFailed, ZmnError
from zmn.services.kvm.deploy import DeployRequest

MiB = 1 << 20


class MigratingDriver(FakeDriver):
    """Fake QEMU whose migrate hands the domain to the driver at the destination address."""

    def __init__(self, ip: str, peers: dict[str, MigratingDriver]) -> None:
        super().__init__(QEMU_TCG)
        self.peers = peers
        self.uris: list[str] = []
        peers[ip] = self

    def migrate(self, uuid: str, dest_uri: str) -> None:
        self.uris.append(dest_uri)
        peer = self.peers.get(urlsplit(dest_uri).hostname or "")
        if peer is None:
            raise OperationFailed(f"cannot connect to {dest_uri}", code="AGENT.MIGRATE_FAILED")
        with self._lock:
            dom = self._get(uuid)
            xml, state = dom.xml, dom.state
            super().migrate(uuid, dest_uri)
        with peer._lock:
            peer.domains[uuid] = type(dom)(xml, state)
            peer._emit(uuid, "started", "migrated")


class MigratingDeployer(LocalDeployer):
    def __init__(self, state: Path) -> None:
        super().__init__(state)
        self.drivers: dict[str, MigratingDriver] = {}

    def driver(self, req: DeployRequest) -> FakeDriver:
        return MigratingDriver(req.target.host, self.drivers)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with kvm_node(tmp_path, MigratingDeployer(tmp_path / "agents")) as made:
        yield made


def net(env: Env, host_uuid: str) -> dict[str, Any]:
    return env.deployer.agents[host_uuid].commands.hostnet.snapshot()  # type: ignore[attr-defined]


async def test_migration_moves_the_vms_network_state_to_the_target(
    env: Env, tmp_path: Path
) -> None:
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    api = env.api
    u = await build_kvm_cloud(env)  # kvm1 (127.0.0.2), a simulator primary storage, l3
    src = u["host"]
    dst = (await env.add("kvm2", "127.0.0.3"))["uuid"]
    await api("CreateSecurityGroup", name="web")
    await api("AddSecurityGroupRule", securityGroupUuid="web", type="Ingress", protocol="TCP",
              startPort=22, allowedCidr="192.0.2.0/24")  # fmt: skip
    await api("AttachSecurityGroupToL3Network", securityGroupUuid="web", l3NetworkUuid=u["l3"])
    pub = await api("CreateL3Network", name="pub", l2NetworkUuid="l2", category="Public")
    await api("AddIpRange", name="pr", l3NetworkUuid=pub["inventory"]["uuid"],
              startIp="203.0.113.10", endIp="203.0.113.20", netmask="255.255.255.0",
              gateway="203.0.113.1")  # fmt: skip
    vip = (await api("CreateVip", name="vip", l3NetworkUuid="pub"))["inventory"]
    vm = (
        await api("CreateVmInstance", name="web1", imageUuid=u["image"],
                  instanceOfferingUuid=u["offering"], l3NetworkUuids=[u["l3"]], hostUuid=src)
    )["inventory"]  # fmt: skip
    nic = vm["vmNics"][0]
    await api("CreateEip", name="eip", vipUuid=vip["uuid"], vmNicUuid=nic["uuid"])
    await env.kvm.vmsync.idle()
    before = net(env, src)
    entry = before["vms"][vm["uuid"]]
    assert entry["eips"] == [
        {"vipIp": vip["ip"], "vmIp": nic["ip"], "bridgeName": "br_eth0", "prefixLen": 24}
    ]
    assert before["rules"][nic["mac"]] and net(env, dst)["vms"] == {}
    drivers = env.deployer.drivers  # type: ignore[attr-defined]

    # 1. a volume on local storage keeps the VM on its host: refused, nothing moved
    await api("AddLocalPrimaryStorage", name="local", zoneUuid="z1", url=str(tmp_path / "ls"))
    await api("AttachPrimaryStorageToCluster", primaryStorageUuid="local", clusterUuid="kvm")
    data = (
        await api("CreateDataVolume", name="d1", diskSize=16 * MiB, primaryStorageUuid="local")
    )["inventory"]
    await api("AttachDataVolumeToVm", volumeUuid=data["uuid"], vmInstanceUuid=vm["uuid"])
    with pytest.raises(ZmnError) as refused:
        await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=dst)
    assert refused.value.code == "KVM.MIGRATE_LOCAL_STORAGE", refused.value
    assert net(env, src) == before and net(env, dst)["vms"] == {}
    assert drivers["127.0.0.2"].uris == []
    await api("DetachDataVolumeFromVm", uuid=data["uuid"])

    # 2. the migration itself fails (the target's libvirt cannot be reached): the VM stays
    # Running on the source with its state there, and the target keeps nothing of it
    peer = drivers.pop("127.0.0.3")
    with pytest.raises(ZmnError):
        await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=dst)
    drivers["127.0.0.3"] = peer
    got = (await api("QueryVmInstance", conditions=[f"uuid={vm['uuid']}"]))["inventories"][0]
    assert (got["state"], got["hostUuid"]) == ("Running", src)
    assert net(env, src)["vms"][vm["uuid"]] == entry
    assert net(env, src)["rules"] == before["rules"]
    assert net(env, dst)["vms"] == {} and net(env, dst)["rules"] == {}

    # 3. a successful migration: reservation, EIP NAT and SG rules are on the target only
    moved = (await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=dst))["inventory"]
    assert (moved["state"], moved["hostUuid"], moved["lastHostUuid"]) == ("Running", dst, src)
    # tunnelled over SSH as root with the source's own migration key; the two hosts trust
    # each other's key (authorized from the peer's address only) and pinned host key
    key = f"{tmp_path}/agents/{src}/migration/id_ed25519"
    assert drivers["127.0.0.2"].uris[-1] == (
        f"qemu+ssh://root@127.0.0.3/system?keyfile={key}&no_tty=1"
    )
    src_key = env.deployer.agents[src].commands.trust.public_key()
    auth = Path(f"{tmp_path}/agents/{dst}/migration/ssh/authorized_keys").read_text()
    assert f'from="127.0.0.2",restrict {src_key} zmn-migration' in auth
    assert vm["uuid"] in drivers["127.0.0.3"].domains
    assert vm["uuid"] not in drivers["127.0.0.2"].domains
    there, here = net(env, dst), net(env, src)
    assert there["vms"][vm["uuid"]] == entry and there["l3s"].keys() == before["l3s"].keys()
    assert there["rules"] == before["rules"]
    assert here["vms"] == {} and here["rules"] == {} and here["l3s"] == {}
    target_exec = cast(RecordingExecutor, env.deployer.agents[dst].commands.executor)
    hosts_file = next(c for p, c in target_exec.files.items() if p.endswith(f"{u['l3']}/hosts"))
    assert f"{nic['mac']},{nic['ip']}" in hosts_file
    assert any("br_eth0" in c for c in target_exec.commands)  # the bridge came first
    await env.kvm.vmsync.idle()  # the lifecycle reports of both hosts change nothing
    got = (await api("QueryVmInstance", conditions=[f"uuid={vm['uuid']}"]))["inventories"][0]
    assert (got["state"], got["hostUuid"]) == ("Running", dst)

    # 4. and back again
    await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=src)
    assert net(env, src)["vms"][vm["uuid"]] == entry and net(env, dst)["vms"] == {}
    assert net(env, src)["rules"] == before["rules"] and net(env, dst)["rules"] == {}
