"""Live migration and evacuating maintenance on three namespaced KVM hosts (libvirtd, QEMU TCG).

Shared primary storage (a SharedMountPoint directory every host sees) holds the guests'
volumes; the hosts' VM NICs are joined into one L2 with a *watcher* namespace on it
(:mod:`tests.support.migration`), so a process that runs on no host pings a guest while it
moves. The guests are in a security group that lets in only ICMP and SSH from the L3, so a
guest that answers on its new host proves that its firewall rules followed it.

Checked:

* a running guest live-migrates kvm1 -> kvm2 (libvirt peer to peer, tunnelled over SSH
  with the hosts' migration keys) while the watcher pings it every 20 ms: same address, same
  boot (boot id, uptime grew), the lost pings are counted and printed; the node's record,
  the domain (virsh on both hosts), the bridge, the DHCP reservation and the firewall rules
  (the agents' network state) are on the target and gone from the source;
* ``ChangeHostState maintain`` of a host with three running guests is a job with one step
  per VM; the guests run elsewhere (and answer), the host has no domain left;
* refusals and failures: a VM with a volume on local storage is refused with the way out
  named; a target that does not see the shared storage (its marker) is no candidate and is
  refused before anything is put there; a migration whose target libvirtd was killed fails
  and the guest keeps running on the source with its network (it answers, its reservation
  is there, the target has none).

Needs root, openssh-server (client too), libvirt/QEMU and qemu-img (scripts/system-deps.sh).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.datacenter import Datacenter, NsHost
from tests.support.inproc import Api, running_node
from tests.support.kvmcloud import (
    add_shared_storage,
    build_kvm_cloud,
    kvm_datacenter,
    kvm_hosts,
    kvm_node_conf,
    ns_host,
)
from tests.support.migration import Pinger, join_l2
from zmn.api.errors import ZmnError
from zmn.services.kvm import storage

pytestmark = [
    pytest.mark.root,
    pytest.mark.sshd,
    pytest.mark.libvirt,
    pytest.mark.slow,
    # guests boot under TCG on a machine shared with other suites: minutes, not seconds
    pytest.mark.timeout(1800),
    pytest.mark.asyncio(loop_scope="module"),
]

WATCHER = "10.79.0.250"  # the watcher's address on the L3 (10.79.0.0/24, VMs .10-.99)
SSH = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=4", "-o", "LogLevel=ERROR")  # fmt: skip


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datacenter]:
    with kvm_datacenter(tmp_path_factory.mktemp("dcm"), kvm=("kvm1", "kvm2", "kvm3")) as center:
        with join_l2(center, kvm_hosts(center), f"{WATCHER}/24") as watcher:
            center.extra["watcher"] = watcher  # type: ignore[attr-defined]
            yield center


class Env:
    def __init__(self, api: Api, dc: Datacenter, hosts: dict[str, Any], key: Path) -> None:
        self.api, self.dc, self.hosts, self.key = api, dc, hosts, key
        self.watcher = str(dc.extra["watcher"])  # type: ignore[attr-defined]
        self.shared = Path()  # the SharedMountPoint directory
        self.guest: dict[str, Any] | None = None  # a booted guest the tests pass on

    def uuid(self, name: str) -> str:
        return str(self.hosts[name]["uuid"])

    def name_of(self, uuid: str) -> str:
        return next(n for n, h in self.hosts.items() if h["uuid"] == uuid)

    def ssh(self, ip: str, command: str) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", self.watcher, "ssh", *SSH, "-i", str(self.key),
                f"root@{ip}", command]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    async def login(self, ip: str, command: str, timeout: float = 900) -> str:
        """``command``'s output once a login works (a TCG guest on a loaded machine boots in
        minutes)."""
        deadline = time.monotonic() + timeout
        while True:
            out = await asyncio.to_thread(self.ssh, ip, command)
            if out.returncode == 0:
                return out.stdout
            assert time.monotonic() < deadline, f"ssh {ip}: {out.returncode} {out.stderr}"
            await asyncio.sleep(2)

    async def boot(self, ip: str) -> tuple[str, float]:
        """The guest's boot id and uptime in seconds."""
        out = await self.login(ip, "cat /proc/sys/kernel/random/boot_id /proc/uptime")
        boot_id, uptime = out.split("\n")[:2]
        return boot_id.strip(), float(uptime.split()[0])

    async def net(self, host: str) -> dict[str, Any]:
        """The agent's network state on ``host`` (reservations, rules, L3s)."""
        ht = self.api.node.services["kvm"].host_type  # type: ignore[attr-defined]
        ref = storage.host_ref(ht, self.uuid(host))
        state: dict[str, Any] = await ht.client(ref, ht.record(ref.uuid)).get("/v1/network/state")
        return state

    def domains(self, host: str) -> str:
        return ns_host(self.dc, host).virsh("list", "--uuid", "--state-running")

    async def vm(self, uuid: str) -> dict[str, Any]:
        got = await self.api("QueryVmInstance", conditions=[f"uuid={uuid}"])
        inv: dict[str, Any] = got["inventories"][0]
        return inv

    async def create(self, name: str, host: str, **extra: Any) -> dict[str, Any]:
        pub = self.key.with_suffix(".pub").read_text().strip()
        args: dict[str, Any] = {
            "name": name, "imageUuid": "zguest", "instanceOfferingUuid": "small",
            "l3NetworkUuids": ["l3"], "hostUuid": self.uuid(host), "sshKeys": [pub],
            "primaryStorageUuidForRootVolume": "shared",
        }  # fmt: skip
        args.update(extra)
        vm: dict[str, Any] = (await self.api("CreateVmInstance", **args))["inventory"]
        await self.api("AddVmNicToSecurityGroup", securityGroupUuid="mig",
                       vmNicUuids=[vm["vmNics"][0]["uuid"]])  # fmt: skip
        return vm


def dashed(uuid: str) -> str:
    return f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"


def here(env: Env, host: str, uuid: str) -> bool:
    return dashed(uuid) in env.domains(host)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(dc: Datacenter, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("kvm-migration")
    key = tmp / "id_guest"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "guest", "-f", str(key)],
                   check=True)  # fmt: skip
    async with running_node(tmp / "home", conf=kvm_node_conf(dc, tmp)) as (node, _server):
        api = Api(node)
        # guests on TCG: KVM guests die at boot on this machine (PVM /dev/kvm)
        await api("UpdateGlobalConfig", category="kvm", name="host.virtualization", value="tcg")
        cloud = await build_kvm_cloud(api, dc)
        await add_shared_storage(api, dc, tmp)  # tmp / "shared-ps"
        await api("CreateSecurityGroup", name="mig")
        await api("AddSecurityGroupRule", securityGroupUuid="mig", rules=[
            {"type": "Ingress", "protocol": "ICMP", "allowedCidr": "10.79.0.0/24"},
            {"type": "Ingress", "protocol": "TCP", "startPort": 22, "endPort": 22,
             "allowedCidr": "10.79.0.0/24"},
        ])  # fmt: skip
        await api("AttachSecurityGroupToL3Network", securityGroupUuid="mig", l3NetworkUuid="l3")
        env = Env(api, dc, cloud["hosts"], key)
        env.shared = tmp / "shared-ps"
        yield env


async def test_a_guest_live_migrates_while_pinged_and_its_network_follows(env: Env) -> None:
    vm = await env.create("mover", "kvm1")
    uuid, ip, mac = vm["uuid"], vm["vmNics"][0]["ip"], vm["vmNics"][0]["mac"]
    boot_before, up_before = await env.boot(ip)
    source = await env.net("kvm1")
    entry, rules = source["vms"].get(uuid), source["rules"]
    assert entry and rules, source  # reservation and firewall rules here
    assert (await env.net("kvm2"))["vms"] == {}
    # the candidates the dashboard offers: the two other hosts
    cands = await env.api("GetVmMigrationCandidateHosts", vmInstanceUuid=uuid)
    assert sorted(h["name"] for h in cands["inventories"]) == ["kvm2", "kvm3"]

    pinger = Pinger(env.watcher, ip, interval=0.02)
    try:
        await asyncio.sleep(3)  # a steady stream before the move
        t0 = time.monotonic()
        moved = (await env.api("MigrateVm", vmInstanceUuid=uuid, hostUuid=env.uuid("kvm2")))[
            "inventory"
        ]
        took = time.monotonic() - t0
        await asyncio.sleep(3)  # and after it
    finally:
        report = pinger.stop()
    print(
        f"\nlive migration kvm1 -> kvm2: MigrateVm {took:.2f} s; pings every"
        f" {report.interval_ms:.0f} ms: {report.lost} of {report.sent} lost"
        f" ({report.lost_ms:.0f} ms), longest silence {report.longest_gap_ms:.0f} ms"
    )
    assert (moved["state"], moved["hostUuid"], moved["lastHostUuid"]) == (
        "Running", env.uuid("kvm2"), env.uuid("kvm1"),
    )  # fmt: skip
    assert report.sent > 100, report  # the watcher saw it before and after
    boot_after, up_after = await env.boot(ip)
    assert boot_after == boot_before and up_after > up_before  # the same boot, not a restart
    assert here(env, "kvm2", uuid) and not here(env, "kvm1", uuid)
    target, source = await env.net("kvm2"), await env.net("kvm1")
    assert target["vms"].get(uuid) == entry and mac in str(entry)  # the same reservation
    assert target["rules"] == rules, target  # the same firewall rules
    assert source["vms"] == {} and source["rules"] == {}, source
    kvm2 = ns_host(env.dc, "kvm2")
    assert "br_eth1" in kvm2.links()
    env.guest = moved  # booted already: the failure test below reuses it (a boot is minutes)


async def test_maintenance_evacuates_three_running_guests(env: Env) -> None:
    vms = [await env.create(f"evac{i}", "kvm3") for i in range(3)]
    for vm in vms:
        await env.boot(vm["vmNics"][0]["ip"])  # each one is up before the maintenance
    job_texts: list[str] = []
    sub = env.api.node.bus.subscribe(
        "/job/*", lambda e: job_texts.append(str(e.data.get("text") or ""))
    )
    try:
        inv = (await env.api("ChangeHostState", uuid=env.uuid("kvm3"), stateEvent="maintain"))[
            "inventory"
        ]
    finally:
        sub.cancel()
    assert inv["state"] == "Maintenance"
    steps = [t for t in job_texts if t.startswith("VM ") and "migrated to" in t]
    assert len(steps) == 3, job_texts
    assert env.domains("kvm3").strip() == ""
    for vm in vms:
        got = await env.vm(vm["uuid"])
        assert got["state"] == "Running" and got["hostUuid"] != env.uuid("kvm3")
        assert here(env, env.name_of(got["hostUuid"]), vm["uuid"])
        await env.boot(vm["vmNics"][0]["ip"])  # and answers there
    await env.api("ChangeHostState", uuid=env.uuid("kvm3"), stateEvent="enable")
    assert env.domains("kvm3").strip() == ""  # nothing comes back by itself
    for vm in vms:
        await env.api("DestroyVmInstance", uuid=vm["uuid"])


async def test_refusals_and_a_failed_migration_leave_the_guest_running(env: Env) -> None:
    local = await env.create("on-local", "kvm1", primaryStorageUuidForRootVolume="local")
    with pytest.raises(ZmnError) as refused:
        await env.api("MigrateVm", vmInstanceUuid=local["uuid"], hostUuid=env.uuid("kvm2"))
    assert refused.value.code == "KVM.MIGRATE_LOCAL_STORAGE"
    assert "LocalStorageMigrateVolume" in refused.value.message
    assert (await env.api("GetVmMigrationCandidateHosts", vmInstanceUuid=local["uuid"]))[
        "inventories"
    ] == []
    assert here(env, "kvm1", local["uuid"])
    await env.api("DestroyVmInstance", uuid=local["uuid"])

    # the guest of the first test (running on kvm2 since), or a new one when run alone
    vm = env.guest or await env.create("stays", "kvm1")
    uuid, ip = vm["uuid"], vm["vmNics"][0]["ip"]
    source = env.name_of(vm["hostUuid"])
    target_name = "kvm1" if source != "kvm1" else "kvm2"
    boot_before, _ = await env.boot(ip)
    target: NsHost = ns_host(env.dc, target_name)
    pid = target.read("/run/libvirtd.pid").strip()
    target.run(["kill", "-9", pid])
    try:
        with pytest.raises(ZmnError):
            await env.api("MigrateVm", vmInstanceUuid=uuid, hostUuid=env.uuid(target_name))
        got = await env.vm(uuid)
        assert (got["state"], got["hostUuid"]) == ("Running", env.uuid(source))
        assert here(env, source, uuid)
        assert (await env.boot(ip))[0] == boot_before  # still the same boot, reachable
        assert uuid in (await env.net(source))["vms"]
        assert uuid not in (await env.net(target_name))["vms"]
    finally:
        target.run(["rm", "-f", "/run/libvirtd.pid"], check=False)
        target.run(["libvirtd", "-d"])
        deadline = time.monotonic() + 60
        while target.run(["virsh", "-c", "qemu:///system", "version"], check=False).returncode:
            assert time.monotonic() < deadline, f"libvirtd of {target_name} did not come back"
            await asyncio.sleep(0.5)
    await env.api("DestroyVmInstance", uuid=uuid)
    env.guest = None


async def test_a_target_that_does_not_see_the_storage_is_refused(env: Env) -> None:
    """kvm3 stops seeing the shared directory (an empty one mounted over it in its mount
    namespace): after its reconnect it is not a candidate, and a migration to it is refused
    before anything is put there."""
    kvm3 = ns_host(env.dc, "kvm3")
    empty = kvm3.root / "empty-mount"
    empty.mkdir(exist_ok=True)
    vm = await env.create("pinned", "kvm1")
    uuid = vm["uuid"]
    kvm3.run(["mount", "--bind", str(empty), str(env.shared)])
    try:
        await env.api("ReconnectHost", uuid=env.uuid("kvm3"))
        cands = await env.api("GetVmMigrationCandidateHosts", vmInstanceUuid=uuid)
        assert [h["name"] for h in cands["inventories"]] == ["kvm2"]
        with pytest.raises(ZmnError) as refused:
            await env.api("MigrateVm", vmInstanceUuid=uuid, hostUuid=env.uuid("kvm3"))
        assert refused.value.code == "PRIMARY_STORAGE.HOST_NOT_CONNECTED", refused.value
        got = await env.vm(uuid)
        assert (got["state"], got["hostUuid"]) == ("Running", env.uuid("kvm1"))
        assert here(env, "kvm1", uuid) and not here(env, "kvm3", uuid)
        assert uuid in (await env.net("kvm1"))["vms"]
        assert uuid not in (await env.net("kvm3"))["vms"]
    finally:
        kvm3.run(["umount", str(env.shared)], check=False)
        await env.api("ReconnectHost", uuid=env.uuid("kvm3"))
    await env.api("DestroyVmInstance", uuid=uuid)
