"""VM HA's decision logic against a real node and real in-process agents (fake driver).

Three KVM hosts share a directory as their "shared" primary storage (a simulator primary
storage whose url is that directory; the monitor is told to treat its type as shared). The
agents write real heartbeat files there; the node reads them through the live peers.

* an agent that stops answering while its heartbeat goes on: never declared dead;
* then its heartbeat stops too: dead, its NeverStop VM started on another host (event, audit
  row, ``vm_ha_status``), its VM on local storage left alone (``Skipped``);
* the host comes back with the VM's domain running: destroyed and undefined, not resumed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from agent.drivers.fake import FakeDriver
from agent.spec import parse_vm
from tests.conftest import need
from tests.integration.test_zcli import Zcli
from tests.support.kvmagents import Env, kvm_node
from zmn.api.errors import ZmnError
from zmn.services.ha.models import VmHaStatusVO
from zmn.services.vm.models import VmInstanceVO


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with kvm_node(tmp_path) as made:
        made.node.services["ha"].monitor.shared_types = frozenset({"Simulator"})  # type: ignore[attr-defined]
        made.zcli = Zcli(tmp_path, made.node, made.server)  # type: ignore[attr-defined]
        yield made


async def _until(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _cloud(env: Env, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """Hosts kvm-a..c, storages "shared" (a directory, HA's shared storage) and "local", an
    image, an L3; HA timings short. Returns the UUIDs and the shared directory."""
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    need(shutil.which("qemu-img") is not None, "needs qemu-img (the agents make volume files)")
    shared = tmp_path / "shared"
    shared.mkdir()
    api, u = env.api, {}
    for i, name in enumerate(("kvm-a", "kvm-b", "kvm-c")):
        u[name] = (await env.add(name, f"127.0.0.{i + 2}"))["uuid"]
    ps = await api("AddSimulatorPrimaryStorage", name="shared", zoneUuid="z1", url=str(shared),
                   totalCapacity=1 << 40)  # fmt: skip
    u["ps"] = ps["inventory"]["uuid"]
    local = await api("AddSimulatorPrimaryStorage", name="local", zoneUuid="z1",
                      url=str(shared.parent / "local"), totalCapacity=1 << 40)  # fmt: skip
    u["local"] = local["inventory"]["uuid"]
    for p in (u["ps"], u["local"]):
        await api("AttachPrimaryStorageToCluster", primaryStorageUuid=p, clusterUuid="kvm")
    bs = await api("AddSimulatorBackupStorage", name="bs", url="/bs", totalCapacity=1 << 40,
                   availableCapacity=1 << 40)  # fmt: skip
    await api("AttachBackupStorageToZone", backupStorageUuid=bs["inventory"]["uuid"], zoneUuid="z1")
    img = await api("AddImage", name="img", url="http://images.example/x.qcow2", format="qcow2",
                    backupStorageUuids=[bs["inventory"]["uuid"]])  # fmt: skip
    off = await api("CreateInstanceOffering", name="small", cpuNum=1, memorySize=256 << 20)
    l2 = await api("CreateL2NoVlanNetwork", name="l2", zoneUuid="z1", physicalInterface="eth0")
    await api("AttachL2NetworkToCluster", l2NetworkUuid=l2["inventory"]["uuid"], clusterUuid="kvm")
    l3 = await api("CreateL3Network", name="l3", l2NetworkUuid=l2["inventory"]["uuid"])
    await api("AddIpRange", name="r", l3NetworkUuid=l3["inventory"]["uuid"], startIp="10.9.0.10",
              endIp="10.9.0.20", netmask="255.255.255.0", gateway="10.9.0.1")  # fmt: skip
    u["make"] = {"imageUuid": img["inventory"]["uuid"],
                 "instanceOfferingUuid": off["inventory"]["uuid"],
                 "l3NetworkUuids": [l3["inventory"]["uuid"]], "hostUuid": u["kvm-a"]}  # fmt: skip
    for name, value in (("host.detectTimeout", 4), ("storage.heartbeatTimeout", 3),
                        ("storage.heartbeatInterval", 1), ("restart.retryInterval", 1)):  # fmt: skip
        await api("UpdateGlobalConfig", category="ha", name=name, value=str(value))
    return u, shared


async def _vm(env: Env, uuid: str) -> dict[str, Any]:
    found = (await env.api("QueryVmInstance", conditions=[f"uuid={uuid}"]))["inventories"]
    return dict(found[0])


def _status(env: Env, uuid: str) -> VmHaStatusVO | None:
    with env.node.db.tx() as s:
        row = s.get(VmHaStatusVO, uuid)
        if row is not None:
            s.expunge(row)
        return row


async def test_a_dead_host_needs_both_signs_and_its_ha_vm_runs_once_elsewhere(
    env: Env, tmp_path: Path
) -> None:
    u, shared = await _cloud(env, tmp_path)
    api, monitor = env.api, env.node.services["ha"].monitor  # type: ignore[attr-defined]
    ha_vm = (await api("CreateVmInstance", name="ha-vm", **u["make"],
                       primaryStorageUuidForRootVolume=u["ps"]))["inventory"]  # fmt: skip
    pinned = (await api("CreateVmInstance", name="pinned", **u["make"],
                        primaryStorageUuidForRootVolume=u["local"]))["inventory"]  # fmt: skip
    plain = (await api("CreateVmInstance", name="plain", **u["make"],
                       primaryStorageUuidForRootVolume=u["ps"]))["inventory"]  # fmt: skip
    for vm in (ha_vm, pinned):
        got = (await api("UpdateVmInstance", uuid=vm["uuid"], ha="NeverStop"))["inventory"]
        assert got["hostUuid"] == u["kvm-a"]
    ps_rt = env.node.resources.get("PrimaryStorage")
    with env.node.db.tx() as s:  # "local" plays local storage from now on
        s.execute(
            update(ps_rt.model).where(ps_rt.model.uuid == u["local"]).values(type="LocalStorage")
        )
    events: list[tuple[str, dict[str, Any]]] = []
    subs = [
        env.node.bus.subscribe(path, lambda e, p=path: events.append((p, dict(e.data))))
        for path in ("/ha/host/dead", "/vm/ha/restarted", "/vm/ha/skipped", "/host/vm/stale")
    ]
    try:
        beat = shared / "zmn-heartbeat" / u["kvm-a"]
        await _until("host A's heartbeat file", beat.exists)
        agent_a = env.deployer.agents[u["kvm-a"]]
        assert agent_a.ha.state()["haVms"] == sorted([ha_vm["uuid"], pinned["uuid"]])

        # 1. the node loses A's agent, but A keeps writing its heartbeat: not dead
        agent_a.httpd.shutdown()
        agent_a.httpd.server_close()
        lost_at = monitor.rounds
        await _until("12 HA rounds", lambda: monitor.rounds >= lost_at + 12)
        assert monitor.watches[u["kvm-a"]].lost_for(monitor.clock()) >= 4  # > detectTimeout
        assert events == [] and _status(env, ha_vm["uuid"]) is None
        assert (await _vm(env, ha_vm["uuid"]))["hostUuid"] == u["kvm-a"]
        driver_a: FakeDriver = agent_a.driver  # type: ignore[assignment]
        assert driver_a.domains[ha_vm["uuid"]].state == "Running"  # and A did not fence it

        # 2. A's heartbeat stops too: dead; the HA VM restarts on B or C, exactly once
        agent_a.ha.stop()
        moved = await _until(
            "the HA VM running on another host",
            lambda: _moved(env, ha_vm["uuid"], u["kvm-a"]),
        )
        assert moved["hostUuid"] in (u["kvm-b"], u["kvm-c"])
        await monitor.idle()
        status = _status(env, ha_vm["uuid"])
        assert status is not None and status.state == "Restarted" and status.attempts == 1
        assert status.deadHostUuid == u["kvm-a"] and status.hostUuid == moved["hostUuid"]
        target = env.deployer.agents[moved["hostUuid"]].driver
        assert target.domains[ha_vm["uuid"]].state == "Running"  # type: ignore[attr-defined]
        paths = [p for p, _ in events]
        assert paths.count("/ha/host/dead") == 1 and paths.count("/vm/ha/restarted") == 1
        # the VM on local storage stays on A (Unknown: its host is Disconnected), skipped once
        skipped = [d for p, d in events if p == "/vm/ha/skipped"]
        assert [d["vmUuid"] for d in skipped] == [pinned["uuid"]]
        assert (await _vm(env, pinned["uuid"]))["hostUuid"] == u["kvm-a"]
        pinned_status = _status(env, pinned["uuid"])
        assert pinned_status is not None and pinned_status.state == "Skipped"
        assert "local storage" in (pinned_status.lastError or "")
        # a VM without ha::NeverStop is not restarted either
        assert (await _vm(env, plain["uuid"]))["hostUuid"] == u["kvm-a"]
        # capacity moved: A has the HA VM's back, the new host took it
        hosts = {h["uuid"]: h for h in (await api("QueryHost"))["inventories"]}
        assert hosts[u["kvm-a"]]["status"] == "Disconnected"
        used = {h: sum(v["cpuNum"] for v in (await api("QueryVmInstance", conditions=[
            f"hostUuid={h}"]))["inventories"]) for h in hosts}  # fmt: skip
        for h, inv in hosts.items():
            assert inv["totalCpuCapacity"] - inv["availableCpuCapacity"] == used[h], inv["name"]
        # the audit trail has the restart
        audit = await api("QueryAuditLog", conditions=["apiName=HaRestartVmInstance"])
        assert [a["resourceUuid"] for a in audit["inventories"]] == [ha_vm["uuid"]]
        assert audit["inventories"][0]["result"] == "ok"
        shown = await api("QueryVmHaStatus", conditions=[f"uuid={ha_vm['uuid']}"])
        assert shown["inventories"][0]["state"] == "Restarted"
        joined = await api("QueryVmInstance", conditions=["haStatus.state=Restarted"])
        assert [v["uuid"] for v in joined["inventories"]] == [ha_vm["uuid"]]

        # 3. A comes back with the HA VM's domain running: destroyed, never resumed
        env.deployer.kill(u["kvm-a"])
        await api("ReconnectHost", uuid=u["kvm-a"])
        new_a: FakeDriver = env.deployer.agents[u["kvm-a"]].driver  # type: ignore[assignment]
        new_a.define(parse_vm({"uuid": ha_vm["uuid"], "cpuNum": 1, "memorySize": 256 << 20}))
        new_a.start(ha_vm["uuid"])
        await _until("the stale domain gone", lambda: ha_vm["uuid"] not in new_a.domains)
        await _until("/host/vm/stale", lambda: any(p == "/host/vm/stale" for p, _ in events))
        stale = [d for p, d in events if p == "/host/vm/stale"]
        assert stale and stale[0]["hostUuid"] == u["kvm-a"] and stale[0]["vmUuid"] == ha_vm["uuid"]
        assert stale[0]["vmHostUuid"] == moved["hostUuid"]
        assert ("undefine", ha_vm["uuid"]) in new_a.calls
        again = await _vm(env, ha_vm["uuid"])
        assert again["state"] == "Running" and again["hostUuid"] == moved["hostUuid"]
        assert target.domains[ha_vm["uuid"]].state == "Running"  # type: ignore[attr-defined]
    finally:
        for sub in subs:
            sub.cancel()


async def _moved(env: Env, uuid: str, dead: str) -> dict[str, Any] | None:
    vm = await _vm(env, uuid)
    return vm if vm["state"] == "Running" and vm["hostUuid"] not in (None, dead) else None


async def test_a_failed_restart_is_retried_with_backoff_and_says_why(
    env: Env, tmp_path: Path
) -> None:
    u, shared = await _cloud(env, tmp_path)
    api, monitor = env.api, env.node.services["ha"].monitor  # type: ignore[attr-defined]
    vm = (await api("CreateVmInstance", name="ha-vm", **u["make"],
                    primaryStorageUuidForRootVolume=u["ps"]))["inventory"]  # fmt: skip
    await api("UpdateVmInstance", uuid=vm["uuid"], ha="NeverStop")
    for other in ("kvm-b", "kvm-c"):  # no other host can take it
        await api("ChangeHostState", uuid=u[other], stateEvent="disable")
    await _until("host A's heartbeat", (shared / "zmn-heartbeat" / u["kvm-a"]).exists)
    env.deployer.kill(u["kvm-a"])
    failed = await _until(
        "two failed attempts",
        lambda: (st := _status(env, vm["uuid"])) is not None and st.attempts >= 2 and st,
    )
    assert failed.state in ("RestartFailed", "Restarting") and failed.lastError
    assert "host" in failed.lastError.lower()
    await api("ChangeHostState", uuid=u["kvm-b"], stateEvent="enable")
    got = await _until("the VM running on B", lambda: _moved(env, vm["uuid"], u["kvm-a"]))
    assert got["hostUuid"] == u["kvm-b"]
    await monitor.idle()
    status = _status(env, vm["uuid"])
    assert status is not None and status.state == "Restarted" and status.lastError is None
    with env.node.db.tx() as s:
        assert s.scalar(select(VmHaStatusVO.attempts).where(VmHaStatusVO.uuid == vm["uuid"])) >= 3
    # the VM expunged: its HA status goes with it
    await api("DestroyVmInstance", uuid=vm["uuid"])
    if _state(env, vm["uuid"]) is not None:  # a Delay deletion policy: expunge it too
        await api("ExpungeVmInstance", uuid=vm["uuid"])
    await _until("the HA status row gone", lambda: _status(env, vm["uuid"]) is None)


def _state(env: Env, uuid: str) -> str | None:
    with env.node.db.tx() as s:
        return s.scalar(select(VmInstanceVO.state).where(VmInstanceVO.uuid == uuid))


async def test_the_ha_level_is_a_tag_set_and_cleared_by_update_and_checked(
    env: Env, tmp_path: Path
) -> None:
    u, _ = await _cloud(env, tmp_path)
    api = env.api
    vm = (await api("CreateVmInstance", name="v", **u["make"], systemTags=["ha::NeverStop"],
                    primaryStorageUuidForRootVolume=u["ps"]))["inventory"]  # fmt: skip

    async def tags() -> list[str]:
        got = await api("QuerySystemTag", conditions=[f"resourceUuid={vm['uuid']}", "tag~=ha::%"])
        return [t["tag"] for t in got["inventories"]]

    assert await tags() == ["ha::NeverStop"]
    await env.zcli.ok("vm", "update", "v", "--ha", "None")  # type: ignore[attr-defined]
    assert await tags() == []
    await api("UpdateVmInstance", uuid=vm["uuid"], ha="NeverStop")
    await api("UpdateVmInstance", uuid=vm["uuid"], ha="NeverStop")  # idempotent: one tag
    assert await tags() == ["ha::NeverStop"]
    with pytest.raises(ZmnError) as err:
        await api("UpdateVmInstance", uuid=vm["uuid"], ha="Always")
    assert err.value.details.get("field") == "ha", err.value
    with pytest.raises(ZmnError) as err:
        await api("CreateVmInstance", name="w", **u["make"], systemTags=["ha::Always"])
    assert "NeverStop" in err.value.message


async def test_a_vm_whose_disk_a_qemu_still_holds_waits_until_it_is_free(
    env: Env, tmp_path: Path
) -> None:
    """The agent died but its QEMU runs on: no second copy until the disk is released."""
    need(bool(shutil.which("qemu-img") and shutil.which("qemu-system-x86_64")),
         "qemu-img and qemu-system-x86_64 (qemu-utils, qemu-system-x86)")  # fmt: skip
    u, shared = await _cloud(env, tmp_path)
    api = env.api
    vm = (await api("CreateVmInstance", name="held", **u["make"],
                    primaryStorageUuidForRootVolume=u["ps"]))["inventory"]  # fmt: skip
    await api("UpdateVmInstance", uuid=vm["uuid"], ha="NeverStop")
    disk = shared / "held.qcow2"  # the fake driver makes no files: give the root volume one
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    vol = env.node.resources.get("Volume").model
    with env.node.db.tx() as s:
        s.execute(update(vol).where(vol.uuid == vm["rootVolumeUuid"]).values(installPath=str(disk)))
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-S", "-machine", "none",
         "-blockdev", f"driver=qcow2,node-name=d0,file.driver=file,file.filename={disk}",
         "-qmp", "stdio"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await _until("host A's heartbeat", (shared / "zmn-heartbeat" / u["kvm-a"]).exists)
        env.deployer.kill(u["kvm-a"])  # agent and heartbeat gone; "its QEMU" runs on
        waiting = await _until(
            "the VM waiting",
            lambda: (st := _status(env, vm["uuid"])) and st.state == "Waiting" and st,
        )
        assert str(disk) in (waiting.lastError or "")
        monitor = env.node.services["ha"].monitor  # type: ignore[attr-defined]
        seen = monitor.rounds
        await _until("3 more rounds", lambda: monitor.rounds >= seen + 3)
        still = await _vm(env, vm["uuid"])
        assert still["hostUuid"] == u["kvm-a"], still  # not restarted while the disk is held
    finally:
        qemu.kill()
        qemu.wait(10)
        assert qemu.stdin is not None
        qemu.stdin.close()
    moved = await _until("the VM restarted", lambda: _moved(env, vm["uuid"], u["kvm-a"]))
    assert moved["hostUuid"] in (u["kvm-b"], u["kvm-c"])


async def test_a_round_retries_only_due_failed_restarts_of_stopped_neverstop_vms(
    env: Env, tmp_path: Path
) -> None:
    """The retry pass reads the HA table first; the VM conditions still hold: a failed
    restart is tried again only when due, for a VM still Stopped and still NeverStop."""
    import datetime as dt

    from zmn.core.db import utcnow

    u, _ = await _cloud(env, tmp_path)
    api, monitor = env.api, env.node.services["ha"].monitor  # type: ignore[attr-defined]
    uuids: dict[str, str] = {}
    for name in ("due", "later", "running", "no-ha"):
        vm = (await api("CreateVmInstance", name=name, **u["make"],
                        primaryStorageUuidForRootVolume=u["ps"]))["inventory"]  # fmt: skip
        if name != "running":
            await api("StopVmInstance", uuid=vm["uuid"])
        if name != "no-ha":
            await api("UpdateVmInstance", uuid=vm["uuid"], ha="NeverStop")
        else:  # a tag, but not HA's
            await api("CreateUserTag", resourceType="VmInstance", resourceUuid=vm["uuid"],
                      tag="team::web")  # fmt: skip
        uuids[name] = vm["uuid"]
    now = utcnow()
    with env.node.db.tx() as s:
        for name, uuid in uuids.items():
            due = now + dt.timedelta(hours=1) if name == "later" else now - dt.timedelta(minutes=1)
            s.add(VmHaStatusVO(uuid=uuid, name=name, deadHostUuid=u["kvm-a"],
                               state="RestartFailed", nextAttemptDate=due))  # fmt: skip
    retried: list[str] = []

    async def start(vm_uuid: str, dead_uuid: str | None) -> None:
        retried.append(vm_uuid)
        assert dead_uuid == u["kvm-a"]

    monitor._start = start
    await monitor._retry_due()
    await monitor.idle()
    assert retried == [uuids["due"]]
    assert _status(env, uuids["due"]).state == "Restarting"  # type: ignore[union-attr]
    for name in ("later", "running", "no-ha"):
        assert _status(env, uuids[name]).state == "RestartFailed", name  # type: ignore[union-attr]
