"""VM HA on namespaced KVM hosts with real libvirtd and QEMU (TCG): a host killed hard.

Three KVM hosts and the image store, the guest image, a SharedMountPoint storage every host
sees (:func:`tests.support.kvmcloud.add_shared_storage`) and the hosts' local storage. An
``ha::NeverStop`` VM on shared storage and one on local storage run on kvm1; then kvm1 is
killed hard: every process in its namespaces but the namespace holder (agent, libvirtd,
virtlogd, sshd, QEMU) gets SIGKILL and its link goes down. Checked:

* the HA VM runs on another host within ``detectTimeout + heartbeatTimeout + 30 s`` of the
  kill, and the guest boots again there (SSH login; a file written before the kill is there:
  the same disk);
* a poller runs ``virsh list`` in every host's namespaces every ~0.5 s in a thread and never
  sees two running domains of the VM;
* the NeverStop VM on local storage is not restarted (``Skipped``, still placed on kvm1);
* kvm1 comes back (link up, sshd and libvirtd restarted, ReconnectHost starts its agent) with
  the VM's domain still defined: it is destroyed and undefined (``/host/vm/stale``), never
  resumed, and the VM keeps running where HA put it.

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

from tests.support.datacenter import Datacenter, NsHost, sh
from tests.support.hostfault import (
    DomainPoller,
    dashed,
    kill_host,
    revive_host,
    veth_of,
)
from tests.support.inproc import Api, running_node
from tests.support.kvmcloud import (
    add_shared_storage,
    build_kvm_cloud,
    kvm_datacenter,
    kvm_hosts,
    kvm_node_conf,
    ns_host,
)

pytestmark = [
    pytest.mark.timeout(1500),  # a guest boots twice under TCG on a loaded machine
    pytest.mark.root,
    pytest.mark.sshd,
    pytest.mark.libvirt,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

SSH = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR")  # fmt: skip
DETECT, HEARTBEAT, INTERVAL = 10, 8, 2  # short HA timeouts (seconds) for the test


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datacenter]:
    with kvm_datacenter(tmp_path_factory.mktemp("dcha"), kvm=("kvm1", "kvm2", "kvm3")) as center:
        yield center


class Env:
    def __init__(
        self, api: Api, dc: Datacenter, cloud: dict[str, Any], shared: dict[str, Any], key: Path
    ) -> None:
        self.api, self.dc, self.cloud, self.shared, self.key = api, dc, cloud, shared, key
        self.hosts: dict[str, Any] = cloud["hosts"]
        self.by_uuid = {h["uuid"]: n for n, h in self.hosts.items()}

    def ns(self, name: str) -> NsHost:
        return ns_host(self.dc, name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(dc: Datacenter, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("ha-kvm")
    key = tmp / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    async with running_node(tmp / "home", conf=kvm_node_conf(dc, tmp)) as (node, _server):
        api = Api(node)
        # guests on TCG whatever /dev/kvm does, so timings compare across machines
        await api("UpdateGlobalConfig", category="kvm", name="host.virtualization", value="tcg")
        cloud = await build_kvm_cloud(api, dc)
        shared = await add_shared_storage(api, dc, tmp)
        for name, value in (("host.detectTimeout", DETECT),
                            ("storage.heartbeatTimeout", HEARTBEAT),
                            ("storage.heartbeatInterval", INTERVAL)):  # fmt: skip
            await api("UpdateGlobalConfig", category="ha", name=name, value=str(value))
        yield Env(api, dc, cloud, shared, key)


async def guest_ssh(
    h: NsHost, ip: str, key: Path, command: str, vm: str, timeout: float = 600
) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = await asyncio.to_thread(
            h.run, ["ssh", *SSH, "-i", str(key), f"root@{ip}", command], check=False
        )
        if out.returncode == 0:
            return str(out.stdout)
        if time.monotonic() > deadline:
            state = h.virsh("domstate", "--reason", dashed(vm), check=False)
            log = h.sh("tail -n 20 /var/log/libvirt/qemu/*.log", check=False).stdout
            raise AssertionError(f"ssh {ip}: {out.returncode} {out.stderr}; {state}; {log}")
        await asyncio.sleep(2)


async def create_vm(env: Env, name: str, ps: str) -> dict[str, Any]:
    inv: dict[str, Any] = (
        await env.api(
            "CreateVmInstance", name=name, imageUuid="zguest", instanceOfferingUuid="small",
            l3NetworkUuids=["l3"], hostUuid=env.hosts["kvm1"]["uuid"],
            primaryStorageUuidForRootVolume=ps,
            sshKeys=[env.key.with_suffix(".pub").read_text().strip()],
        )
    )["inventory"]  # fmt: skip
    await env.api("UpdateVmInstance", uuid=inv["uuid"], ha="NeverStop")
    return inv


async def vm_inv(env: Env, uuid: str) -> dict[str, Any]:
    got: dict[str, Any] = (await env.api("QueryVmInstance", conditions=[f"uuid={uuid}"]))[
        "inventories"
    ][0]
    return got


async def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out ({timeout:g} s) waiting for {what}"
        await asyncio.sleep(0.5)


async def test_a_killed_hosts_ha_vm_runs_once_elsewhere_and_its_stale_domain_dies(
    env: Env,
) -> None:
    api, kvm1 = env.api, env.ns("kvm1")
    ha_vm = await create_vm(env, "ha-1", env.shared["uuid"])
    pinned = await create_vm(env, "pinned-1", "local")
    assert "<domain type='qemu'" in kvm1.virsh("dumpxml", ha_vm["uuid"])  # TCG, as configured
    ip = ha_vm["vmNics"][0]["ip"]
    await guest_ssh(kvm1, ip, env.key, "echo before-the-kill > /root/mark; sync", ha_vm["uuid"])
    beat = Path(env.shared["url"]) / "zmn-heartbeat" / env.hosts["kvm1"]["uuid"]
    assert beat.exists(), "kvm1 writes no heartbeat on the shared storage"
    events: list[tuple[str, dict[str, Any]]] = []
    bus = api.node.bus
    subs = [bus.subscribe(p, lambda e, p=p: events.append((p, dict(e.data))))
            for p in ("/ha/host/dead", "/vm/ha/restarted", "/vm/ha/skipped", "/host/vm/stale")]  # fmt: skip
    try:
        with DomainPoller(kvm_hosts(env.dc), ha_vm["uuid"]) as poller:
            await wait_for("a poller round", _rounds(poller, 2), 60)
            assert poller.seen_on[-1] == {"kvm1"}

            t_kill = time.monotonic()
            killed = await asyncio.to_thread(kill_host, kvm1)
            assert killed, "nothing ran in kvm1's namespaces"
            budget = DETECT + HEARTBEAT + 30
            moved = await wait_for(
                "the HA VM Running on another host", _moved(env, ha_vm["uuid"]), budget
            )
            t_running = time.monotonic() - t_kill
            target = env.ns(env.by_uuid[moved["hostUuid"]])
            out = await guest_ssh(
                target, ip, env.key, "cat /root/mark; cat /proc/uptime", ha_vm["uuid"]
            )
            t_login = time.monotonic() - t_kill
            assert out.splitlines()[0] == "before-the-kill"  # the same disk, booted again
            await wait_for("the poller to see it", _on(poller, target.name), 60)
        assert poller.max_running == 1, poller.seen_on
        print(f"HA restart: Running after {t_running:.1f} s, SSH login after {t_login:.1f} s;"
              f" poller rounds {poller.rounds}, hosts seen {poller.seen_on}")  # fmt: skip

        paths = [p for p, _ in events]
        assert paths.count("/ha/host/dead") == 1 and paths.count("/vm/ha/restarted") == 1
        assert [d["vmUuid"] for p, d in events if p == "/vm/ha/skipped"] == [pinned["uuid"]]
        assert (await vm_inv(env, pinned["uuid"]))["hostUuid"] == env.hosts["kvm1"]["uuid"]
        status = (await api("QueryVmHaStatus", conditions=[f"uuid={ha_vm['uuid']}"]))[
            "inventories"
        ][0]
        assert status["state"] == "Restarted" and status["hostUuid"] == moved["hostUuid"]
        audit = await api("QueryAuditLog", conditions=["apiName=HaRestartVmInstance"])
        assert [a["resourceUuid"] for a in audit["inventories"]] == [ha_vm["uuid"]]

        # kvm1 comes back with the HA VM's domain still defined: destroyed, not resumed
        domain = dashed(ha_vm["uuid"])
        await asyncio.to_thread(revive_host, kvm1)
        assert domain in kvm1.virsh("list", "--all", "--uuid")  # the stale definition
        with DomainPoller(kvm_hosts(env.dc), ha_vm["uuid"]) as poller2:
            await api("ReconnectHost", uuid=env.hosts["kvm1"]["uuid"])
            await wait_for(
                "the stale domain undefined on kvm1",
                _gone(kvm1, domain),
                120,
            )
            await wait_for("/host/vm/stale", _event(events, "/host/vm/stale"), 60)
        assert poller2.max_running == 1, poller2.seen_on
        stale = [d for p, d in events if p == "/host/vm/stale"]
        assert [(d["hostUuid"], d["vmUuid"]) for d in stale] == [
            (env.hosts["kvm1"]["uuid"], ha_vm["uuid"])
        ]
        again = await vm_inv(env, ha_vm["uuid"])
        assert again["state"] == "Running" and again["hostUuid"] == moved["hostUuid"]
        assert domain in target.virsh("list", "--uuid")
    finally:
        for sub in subs:
            sub.cancel()


def _event(events: list[tuple[str, dict[str, Any]]], path: str) -> Any:
    async def check() -> bool:
        return any(p == path for p, _ in events)

    return check


def _rounds(poller: DomainPoller, n: int) -> Any:
    async def check() -> bool:
        return poller.rounds >= n

    return check


def _on(poller: DomainPoller, name: str) -> Any:
    async def check() -> bool:
        return bool(poller.seen_on) and poller.seen_on[-1] == {name}

    return check


def _moved(env: Env, uuid: str) -> Any:
    dead = env.hosts["kvm1"]["uuid"]

    async def check() -> dict[str, Any] | None:
        vm = await vm_inv(env, uuid)
        return vm if vm["state"] == "Running" and vm["hostUuid"] not in (None, dead) else None

    return check


def _gone(h: NsHost, dashed: str) -> Any:
    async def check() -> bool:
        out = await asyncio.to_thread(h.virsh, "list", "--all", "--uuid", check=False)
        return dashed not in out

    return check


async def test_a_host_cut_off_from_node_and_storage_fences_its_ha_vm_first(env: Env) -> None:
    """kvm1 keeps running but loses the node (link down) and its storage (the shared directory
    remounted read-only in its mount namespace): its agent destroys the HA VM itself, and only
    then does the node start it elsewhere; two copies never run."""
    api, kvm1 = env.api, env.ns("kvm1")
    await wait_for("kvm1 Connected", _connected(env, "kvm1"), 180)
    vm = await create_vm(env, "ha-fence", env.shared["uuid"])
    ip, domain = vm["vmNics"][0]["ip"], dashed(vm["uuid"])
    await guest_ssh(kvm1, ip, env.key, "echo before-the-cut > /root/mark; sync", vm["uuid"])
    url = env.shared["url"]
    with DomainPoller(kvm_hosts(env.dc), vm["uuid"]) as poller:
        await wait_for("a poller round", _rounds(poller, 2), 60)
        kvm1.sh(f"mount --bind {url} {url} && mount -o remount,bind,ro {url}")
        sh("ip", "link", "set", veth_of(kvm1), "down")
        try:
            moved = await wait_for("the VM running elsewhere", _moved(env, vm["uuid"]),
                                   DETECT + HEARTBEAT + 60)  # fmt: skip
            target = env.ns(env.by_uuid[moved["hostUuid"]])
            out = await guest_ssh(target, ip, env.key, "cat /root/mark", vm["uuid"])
            assert out.strip() == "before-the-cut"
            # the agent on kvm1 lives and destroyed the domain itself (fenced)
            assert kvm1.agent_pid() is not None
            assert domain not in kvm1.virsh("list", "--uuid")
            log = kvm1.sh("cat /var/log/zagent/*.log", check=False).stdout
            assert f"destroying HA VM {vm['uuid']}" in log
        finally:
            sh("ip", "link", "set", veth_of(kvm1), "up")
            kvm1.sh(f"umount {url}", check=False)
    assert poller.max_running == 1, poller.seen_on
    await api("ReconnectHost", uuid=env.hosts["kvm1"]["uuid"])
    await wait_for("the stale definition gone from kvm1", _gone(kvm1, domain), 120)
    again = await vm_inv(env, vm["uuid"])
    assert again["state"] == "Running" and again["hostUuid"] == moved["hostUuid"]


def _connected(env: Env, name: str) -> Any:
    async def check() -> bool:
        got = await env.api("QueryHost", conditions=[f"uuid={env.hosts[name]['uuid']}"])
        return bool(got["inventories"][0]["status"] == "Connected")

    return check
