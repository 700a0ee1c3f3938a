"""The KVM host type against real in-process agents (no root, no SSH).

A fake deployer stands in for the SSH playbook: "deploying" starts a real zagent
(``AgentServer`` with the fake driver) on the host's loopback address with the secret and
callback URL the node chose. Everything from there is real: signed echo, facts, system tags,
tracking with backoff, the callback endpoint (forged, stale and replayed reports refused
with nothing changed), long commands answered through callbacks.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from sqlalchemy import select, text

from agent.drivers.base import RUNNING
from agent.drivers.fake import FakeDriver, _Dom
from agent.network.executor import RecordingExecutor
from agent.server import AgentServer
from agent.spec import parse_vm
from tests.support import kvmagents
from tests.support.kvmagents import HOST_KEY, Env, build_kvm_cloud
from zmn.api import agentauth
from zmn.api.errors import OperationFailed, ZmnError
from zmn.api.ids import short_id
from zmn.core.service import Call
from zmn.services.host.ops import set_status
from zmn.services.kvm.agentclient import AgentClient
from zmn.services.kvm.models import KvmHostVO
from zmn.services.metrics.window import series

env = kvmagents.env  # the fixture


async def test_add_kvm_host_pins_the_key_makes_a_secret_and_takes_the_facts(env: Env) -> None:
    inv = await env.add("kvm1", "127.0.0.2")
    assert inv["status"] == "Connected" and inv["hypervisorType"] == "KVM"
    assert (inv["cpuNum"], inv["totalCpuCapacity"]) == (8, 8)
    assert inv["totalMemoryCapacity"] == 16 << 30
    row = env.row(inv["uuid"])
    assert row is not None and row.hostKey == HOST_KEY and env.deployer.key_contacts == 1
    assert len(row.agentSecret) == 64 and row.password == "pw-kvm1"
    req = env.deployer.requests[-1]
    assert req.full and req.secret == row.agentSecret
    assert req.agent_config["libvirt_uri"] == "qemu:///system"
    assert req.agent_config["callback_url"].startswith("http://127.0.0.1:")
    assert req.agent_config["callback_url"].endswith(f"/agent/v1/report/{inv['uuid']}")
    assert row.agentSecret not in repr(req) and "pw-kvm1" not in repr(req.target)
    tags = await env.api("QuerySystemTag", conditions=[f"resourceUuid={inv['uuid']}"], limit=50)
    assert {t["tag"] for t in tags["inventories"]} >= {
        "cpuModel::fake",
        "cpuModelName::Fake CPU",
        "libvirt::version::0.0.0",
    }
    # the SSH password is masked in the job record
    jobs = await env.api("QueryJob", conditions=["name=AddKvmHost"])
    with env.node.db.tx() as s:
        args = s.execute(text("SELECT args FROM job WHERE name='AddKvmHost'")).scalar_one()
    assert jobs["inventories"] and json.loads(args)["password"] == "*****"
    assert "pw-kvm1" not in args


async def test_add_kvm_host_refuses_bad_input_before_touching_the_host(env: Env) -> None:
    await env.api("CreateCluster", name="sim", zoneUuid="z1", hypervisorType="Simulator")
    cases = [
        ({"password": None}, "KVM.NO_CREDENTIALS"),
        ({"password": None, "sshPrivateKey": "/nonexistent/key"}, "KVM.BAD_SSH_KEY"),
        ({"clusterUuid": "sim"}, "HOST.HYPERVISOR_MISMATCH"),
        ({"sshPort": 70000}, "InvalidArgument"),
    ]
    for extra, code in cases:
        with pytest.raises(ZmnError) as caught:
            await env.add("bad", "127.0.0.9", **extra)
        assert code in (caught.value.code, caught.value.kind), caught.value
    assert env.deployer.requests == [] and env.deployer.key_contacts == 0
    assert (await env.api("QueryHost"))["inventories"] == []


async def test_a_failed_deployment_leaves_nothing_behind(env: Env) -> None:
    env.deployer.fail = OperationFailed("step failed", code="KVM.DEPLOY_FAILED")
    with pytest.raises(ZmnError) as caught:
        await env.add("kvm1", "127.0.0.2")
    assert caught.value.code == "HOST.CONNECT_FAILED"
    assert caught.value.details["cause"] == "KVM.DEPLOY_FAILED"
    assert (await env.api("QueryHost"))["inventories"] == []
    with env.node.db.tx() as s:
        assert s.scalars(select(KvmHostVO)).all() == []
    env.deployer.fail = None
    assert (await env.add("kvm1", "127.0.0.2"))["status"] == "Connected"


async def test_add_is_idempotent_on_resource_uuid(env: Env) -> None:
    first = await env.add("kvm1", "127.0.0.2", resourceUuid="c" * 32)
    again = await env.add("kvm1", "127.0.0.2", resourceUuid="c" * 32)
    assert first["uuid"] == again["uuid"] == "c" * 32
    assert len(env.deployer.requests) == 1


async def test_reconnect_uses_the_running_agent_and_redeploys_a_missing_one(env: Env) -> None:
    inv = await env.add("kvm1", "127.0.0.2")
    states: list[dict[str, Any]] = []
    sub = env.node.bus.subscribe("/host/vm/states", lambda e: states.append(e.data))
    await env.api("ReconnectHost", uuid="kvm1")
    sub.cancel()
    # the host's truth, for VM sync, with the time it was listed
    assert [(s["hostUuid"], s["vms"]) for s in states] == [(inv["uuid"], [])]
    assert abs(states[0]["time"] - time.time()) < 30
    assert len(env.deployer.requests) == 1  # the agent answered: no SSH at all
    env.deployer.kill(inv["uuid"])
    again = (await env.api("ReconnectHost", uuid="kvm1"))["inventory"]
    assert again["status"] == "Connected"
    assert len(env.deployer.requests) == 2 and not env.deployer.requests[-1].full
    assert env.deployer.key_contacts == 1  # the pinned key is reused, never re-learned
    # a changed libvirt URI is pushed to the agent at the next reconnect
    await env.api("UpdateGlobalConfig", category="kvm", name="libvirt.uri", value="test:///default")
    await env.api("ReconnectHost", uuid="kvm1")
    assert env.deployer.requests[-1].agent_config["libvirt_uri"] == "test:///default"
    assert len(env.deployer.requests) == 3
    # so is a new agent version (the node was upgraded)
    env.kvm.host_type._version = "0.0.0+other"
    await env.api("ReconnectHost", uuid="kvm1")
    assert len(env.deployer.requests) == 4


async def test_a_dead_agent_is_pinged_with_backoff_and_disconnected(env: Env) -> None:
    inv = await env.add("kvm1", "127.0.0.2")
    await env.api("UpdateGlobalConfig", category="host", name="ping.maxFailure", value=2)
    await env.api("UpdateGlobalConfig", category="host", name="ping.interval", value=5)
    tracker = env.node.services["host"].tracker  # type: ignore[attr-defined]
    env.deployer.kill(inv["uuid"])
    await tracker.ping_all()
    before = time.monotonic()  # the backoff is measured from the second miss, not from now
    await tracker.ping_all()
    after = time.monotonic()
    assert (await env.api("QueryHost"))["inventories"][0]["status"] == "Disconnected"
    ht = env.kvm.host_type
    health = ht._health[inv["uuid"]]
    assert health.failures == 2
    assert 2.5 <= health.next_try - before and health.next_try - after <= 5
    ref = tracker._hosts()[0]
    with pytest.raises(ZmnError) as caught:  # not even tried: backing off
        await ht.ping(ref)
    assert caught.value.code == "KVM.AGENT_BACKOFF" and health.failures == 2
    await env.api("ReconnectHost", uuid="kvm1")  # the operator does not wait for backoff
    assert inv["uuid"] not in ht._health
    assert (await env.api("QueryHost"))["inventories"][0]["status"] == "Connected"


async def test_delete_host_stops_its_agent_and_drops_its_record(env: Env) -> None:
    inv = await env.add("kvm1", "127.0.0.2")
    await env.api("DeleteHost", uuid="kvm1")
    assert env.row(inv["uuid"]) is None and inv["uuid"] not in env.deployer.agents


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


async def test_forged_stale_and_replayed_reports_are_refused_and_change_nothing(
    env: Env,
) -> None:
    inv = await env.add("kvm1", "127.0.0.2")
    other = await env.add("kvm2", "127.0.0.3")
    secret = env.row(inv["uuid"]).agentSecret  # type: ignore[union-attr]
    host, port = env.kvm.endpoint.server.address
    path = f"/agent/v1/report/{inv['uuid']}"
    url = f"http://{host}:{port}{path}"
    events: list[dict[str, Any]] = []
    sub = env.node.bus.subscribe("/host/vm/report", lambda e: events.append(e.data))
    report = {"type": "vm.lifecycle", "hostUuid": inv["uuid"], "seq": 1, "vmUuid": "d" * 32,
              "event": "stopped", "detail": "crashed", "state": "Crashed"}  # fmt: skip
    body = json.dumps(report).encode()
    before = env.snapshot()
    now = int(time.time())
    other_secret = env.row(other["uuid"]).agentSecret  # type: ignore[union-attr]
    attempts = {
        "unsigned": {},
        "forged": agentauth.sign("x" * 64, "POST", path, body),
        "another host's secret": agentauth.sign(other_secret, "POST", path, body),
        "stale": agentauth.sign(secret, "POST", path, body, timestamp=now - 3600),
        "body swapped": agentauth.sign(secret, "POST", path, body.replace(b"Crashed", b"Running")),
    }
    try:
        for what, headers in attempts.items():
            status = await asyncio.to_thread(_post, url, body, headers)
            assert status == 401, what
        # a report for a host signed by another host's agent, on the other host's path
        other_path = f"/agent/v1/report/{other['uuid']}"
        status = await asyncio.to_thread(
            _post,
            f"http://{host}:{port}{other_path}",
            body,
            agentauth.sign(other_secret, "POST", other_path, body),
        )
        assert status == 400  # signed, but it names another host
        assert events == [] and env.snapshot() == before
        good = agentauth.sign(secret, "POST", path, body)
        assert await asyncio.to_thread(_post, url, body, good) == 200
        assert await asyncio.to_thread(_post, url, body, good) == 401  # replayed
        assert [e["vmUuid"] for e in events] == ["d" * 32]
        assert events[0]["hostUuid"] == inv["uuid"] and events[0]["state"] == "Crashed"
        assert env.kvm.endpoint.server.refused[-1] == "AGENT.AUTH_REPLAYED"
        assert env.snapshot() == before
    finally:
        sub.cancel()


async def test_long_commands_are_answered_through_signed_callbacks(env: Env) -> None:
    inv = await env.add("kvm1", "127.0.0.2")
    ht = env.kvm.host_type
    ref = env.node.services["host"].tracker._hosts()[0]  # type: ignore[attr-defined]
    client = ht.client(ref, env.row(inv["uuid"]))
    vm = {"uuid": "e" * 32, "name": "vm1", "cpuNum": 1, "memorySize": 64 << 20}
    result = await env.kvm.endpoint.run_task(
        client, inv["uuid"], "/v1/vm/start", {"vm": vm}, timeout=10
    )
    assert result["uuid"] == "e" * 32 and result["state"] == "Running"
    assert env.kvm.endpoint.server.accepted >= 1
    with pytest.raises(ZmnError) as caught:  # the agent's error comes back as it was
        await env.kvm.endpoint.run_task(
            client, inv["uuid"], "/v1/vm/stop", {"uuid": "f" * 32}, timeout=10
        )
    assert caught.value.kind == "NotFound"


async def test_vm_life_cycle_on_a_kvm_host_goes_through_the_agent(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    u = await build_kvm_cloud(env)
    vm = (
        await env.api(
            "CreateVmInstance", name="vm1", imageUuid=u["image"],
            instanceOfferingUuid=u["offering"], l3NetworkUuids=[u["l3"]],
        )
    )["inventory"]  # fmt: skip
    assert vm["state"] == "Running" and vm["hostUuid"] == u["host"]
    agent = env.deployer.agents[u["host"]]
    dom = agent.driver.domains[vm["uuid"]]  # type: ignore[attr-defined]
    assert dom.state == "Running"
    root = vm["allVolumes"][0]
    assert root["installPath"] in dom.xml and vm["vmNics"][0]["mac"] in dom.xml
    assert "br_eth0" in dom.xml
    # the agent made the root volume's file (simulator storage: an empty qcow2 of its size)
    with open(root["installPath"], "rb") as made:
        assert made.read(4) == b"QFI\xfb"
    bridge_cmds = [c for c in agent.commands.executor.commands if "br_eth0" in c]  # type: ignore[attr-defined]
    assert bridge_cmds, agent.commands.executor.commands  # type: ignore[attr-defined]
    await env.api("StopVmInstance", uuid=vm["uuid"])
    assert vm["uuid"] not in agent.driver.domains  # type: ignore[attr-defined]
    sent: list[str] = []  # a start's bridge, volume file, network and start: one request
    request = AgentClient.request

    async def counted(self: AgentClient, method: str, path: str, *args: Any, **kw: Any) -> Any:
        sent.append(path)
        return await request(self, method, path, *args, **kw)

    monkeypatch.setattr(AgentClient, "request", counted)
    await env.api("StartVmInstance", uuid=vm["uuid"])
    assert agent.driver.domains[vm["uuid"]].state == "Running"  # type: ignore[attr-defined]
    assert sent.count("/v1/batch") == 1
    singles = {"/v1/network/bridge", "/v1/storage/volume/create", "/v1/network/vm", "/v1/vm/start"}
    assert not singles & set(sent), sent
    await env.api("DestroyVmInstance", uuid=vm["uuid"])
    assert vm["uuid"] not in agent.driver.domains  # type: ignore[attr-defined]


def _net_state(agent: AgentServer) -> dict[str, Any]:
    return agent.commands.hostnet.snapshot()


async def test_vm_networking_is_driven_by_the_node_and_leaves_with_the_vm(env: Env) -> None:
    """DHCP reservation with the node's address, SG rules and EIP NAT on the VM's host; a
    hostile VM name never reaches dnsmasq; stop and destroy take it all away."""
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    api = env.api
    u = await build_kvm_cloud(env)
    sg = (await api("CreateSecurityGroup", name="web"))["inventory"]
    await api("AddSecurityGroupRule", securityGroupUuid="web", type="Ingress", protocol="TCP",
              startPort=22, allowedCidr="192.0.2.0/24")  # fmt: skip
    await api("AttachSecurityGroupToL3Network", securityGroupUuid=sg["uuid"], l3NetworkUuid=u["l3"])
    pub = await api("CreateL3Network", name="pub", l2NetworkUuid="l2", category="Public")
    await api("AddIpRange", name="pr", l3NetworkUuid=pub["inventory"]["uuid"],
              startIp="203.0.113.10", endIp="203.0.113.20", netmask="255.255.255.0",
              gateway="203.0.113.1")  # fmt: skip
    vip = (await api("CreateVip", name="vip", l3NetworkUuid="pub"))["inventory"]
    hostile = "web-1\ndhcp-script=/bin/sh,$(reboot);'\"<x>"
    with pytest.raises(ZmnError):  # a newline in a name is refused at the API already
        await api("CreateVmInstance", name=hostile, imageUuid=u["image"],
                  instanceOfferingUuid=u["offering"], l3NetworkUuids=[u["l3"]])  # fmt: skip
    name = "web 1,dhcp-script=/bin/sh;$(reboot)'\"<x>"
    vm = (
        await api("CreateVmInstance", name=name, imageUuid=u["image"],
                  instanceOfferingUuid=u["offering"], l3NetworkUuids=[u["l3"]])
    )["inventory"]  # fmt: skip
    nic = vm["vmNics"][0]
    agent = env.deployer.agents[u["host"]]
    executor: RecordingExecutor = agent.commands.executor  # type: ignore[assignment]
    state = _net_state(agent)
    entry = state["vms"][vm["uuid"]]
    assert entry["nics"] == [{"mac": nic["mac"], "ip": nic["ip"], "l3Uuid": u["l3"],
                              "device": f"v{short_id(vm['uuid'])}.0"}]  # fmt: skip
    l3 = state["l3s"][u["l3"]]
    # the DHCP server takes the CIDR's top address: in no IP range, so never a VM's
    assert l3["serverIp"] == "10.9.0.254" and l3["gateway"] == "10.9.0.1"
    hosts_file = next(c for p, c in executor.files.items() if p.endswith(f"{u['l3']}/hosts"))
    assert hosts_file == f"{nic['mac']},{nic['ip']}\n"  # no host name from that VM name
    conf = next(c for p, c in executor.files.items() if p.endswith(f"{u['l3']}/dnsmasq.conf"))
    assert "interface=br_eth0" in conf and "dhcp-script" not in conf
    assert [
        "dnsmasq",
        f"--conf-file={next(p for p in executor.files if p.endswith('dnsmasq.conf'))}",
    ] in executor.commands
    # the SG rule reached the host's nftables document for that NIC
    assert state["rules"][nic["mac"]] == [
        {"type": "Ingress", "protocol": "TCP", "allowedCidr": "192.0.2.0/24",
         "startPort": 22, "endPort": 22}
    ]  # fmt: skip
    doc = json.loads(next(s for c, s in zip(executor.commands, executor.stdins, strict=True)
                          if c[:2] == ["nft", "-j"]) or "{}")  # fmt: skip
    text_doc = json.dumps(doc)
    assert nic["mac"] in text_doc and "192.0.2.0" in text_doc and nic["ip"] in text_doc
    # an EIP attached to the running VM is NATed and routed on its host: the VIP with its
    # L3's prefix on the VIP's bridge, the guest's gateway on the VM's
    await api("CreateEip", name="eip", vipUuid=vip["uuid"], vmNicUuid=nic["uuid"])
    await env.kvm.vmsync.idle()
    assert _net_state(agent)["vms"][vm["uuid"]]["eips"] == [
        {"vipIp": vip["ip"], "vmIp": nic["ip"], "bridgeName": "br_eth0", "prefixLen": 24}
    ]
    assert ["ip", "addr", "replace", f"{vip['ip']}/24", "dev", "br_eth0"] in executor.commands
    assert ["ip", "addr", "replace", "10.9.0.1/32", "dev", "br_eth0"] in executor.commands
    last_nft = [
        s for c, s in zip(executor.commands, executor.stdins, strict=True) if c[:2] == ["nft", "-j"]
    ][-1]
    assert f'"dnat": {{"addr": "{nic["ip"]}"}}' in (last_nft or "")
    # stop: the reservation, the rules and the EIP leave the host
    await api("StopVmInstance", uuid=vm["uuid"])
    state = _net_state(agent)
    assert vm["uuid"] not in state["vms"] and state["rules"] == {} and state["l3s"] == {}
    hosts_file = next(c for p, c in executor.files.items() if p.endswith(f"{u['l3']}/hosts"))
    assert hosts_file == ""
    await api("StartVmInstance", uuid=vm["uuid"])
    assert vm["uuid"] in _net_state(agent)["vms"]
    await api("DestroyVmInstance", uuid=vm["uuid"])
    assert _net_state(agent)["vms"] == {}


async def _wait_vm(env: Env, uuid: str, state: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = (await env.api("QueryVmInstance", conditions=[f"uuid={uuid}"]))["inventories"]
        if found and found[0]["state"] == state:
            return found[0]
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


async def test_vms_follow_the_agents_truth(env: Env) -> None:
    """Stopped behind the node's back (a lifecycle report), Unknown while the host is
    Disconnected and re-synced at reconnect, and unknown domains reported as events."""
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    api = env.api
    u = await build_kvm_cloud(env)
    make = {"imageUuid": u["image"], "instanceOfferingUuid": u["offering"],
            "l3NetworkUuids": [u["l3"]]}  # fmt: skip
    a = (await api("CreateVmInstance", name="a", **make))["inventory"]
    b = (await api("CreateVmInstance", name="b", **make))["inventory"]
    agent = env.deployer.agents[u["host"]]
    driver: FakeDriver = agent.driver  # type: ignore[assignment]
    host_before = (await api("QueryHost", conditions=[f"uuid={u['host']}"]))["inventories"][0]
    drift: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []
    subs = [env.node.bus.subscribe("/reconcile/drift", lambda e: drift.append(e.data)),
            env.node.bus.subscribe("/host/vm/unknown", lambda e: unknown.append(e.data))]  # fmt: skip
    try:
        # 1. a domain stopped directly on the host: the agent's report makes it Stopped
        driver.stop_behind_back(a["uuid"])
        got = await _wait_vm(env, a["uuid"], "Stopped")
        await env.kvm.vmsync.idle()
        assert got["hostUuid"] is None and got["lastHostUuid"] == u["host"]
        assert [d["uuid"] for d in drift] == [a["uuid"]] and drift[0]["fixed"]
        host = (await api("QueryHost", conditions=[f"uuid={u['host']}"]))["inventories"][0]
        assert host["availableMemoryCapacity"] == (
            host_before["availableMemoryCapacity"] + a["memorySize"]
        )  # its capacity came back
        assert a["uuid"] not in _net_state(agent)["vms"]  # and its reservation went
        # a late report about a VM running again changes nothing (the agent is asked)
        await api("StartVmInstance", uuid=a["uuid"])
        driver._emit(a["uuid"], "stopped", "destroyed")
        await asyncio.sleep(0.3)
        await env.kvm.vmsync.idle()
        assert (await _wait_vm(env, a["uuid"], "Running"))["hostUuid"] == u["host"]
        # 2. the agent dies: Disconnected makes its VMs Unknown
        ref = env.node.services["host"].tracker._hosts()[0]  # type: ignore[attr-defined]
        call = Call(env.node, env.node.admin_principal(), "PingHost")
        await set_status(call, ref.uuid, "disconnected")
        await env.kvm.vmsync.idle()
        for vm in (a, b):
            await _wait_vm(env, vm["uuid"], "Unknown")
        # meanwhile on the host: b stopped, a stranger appeared
        driver.stop_behind_back(b["uuid"])
        stranger = "5" * 32
        driver.define(parse_vm({"uuid": stranger, "cpuNum": 1, "memorySize": 64 << 20}))
        driver.start(stranger)
        await asyncio.sleep(0.2)
        await env.kvm.vmsync.idle()
        # 3. reconnect: a is Running again, b Stopped, the stranger reported
        await api("ReconnectHost", uuid=u["host"])
        await env.kvm.vmsync.idle()
        await _wait_vm(env, a["uuid"], "Running")
        await _wait_vm(env, b["uuid"], "Stopped")
        assert any(x["vmUuid"] == stranger and x["hostUuid"] == u["host"] for x in unknown)
    finally:
        for sub in subs:
            sub.cancel()


async def test_forged_stale_and_replayed_vm_reports_change_no_vm(env: Env) -> None:
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    u = await build_kvm_cloud(env)
    vm = (
        await env.api("CreateVmInstance", name="a", imageUuid=u["image"],
                      instanceOfferingUuid=u["offering"], l3NetworkUuids=[u["l3"]])
    )["inventory"]  # fmt: skip
    driver: FakeDriver = env.deployer.agents[u["host"]].driver  # type: ignore[assignment]
    secret = env.row(u["host"]).agentSecret  # type: ignore[union-attr]
    host, port = env.kvm.endpoint.server.address
    path = f"/agent/v1/report/{u['host']}"
    url = f"http://{host}:{port}{path}"
    report = {"type": "vm.lifecycle", "hostUuid": u["host"], "seq": 99, "vmUuid": vm["uuid"],
              "event": "stopped", "detail": "destroyed", "state": "Stopped"}  # fmt: skip
    body = json.dumps(report).encode()
    # the domain really is gone, so a report that got through would stop the VM
    with driver._lock:  # type: ignore[attr-defined]
        driver.domains[vm["uuid"]].state = "Stopped"
    before = env.snapshot()
    now = int(time.time())
    for headers in (
        {},
        agentauth.sign("x" * 64, "POST", path, body),
        agentauth.sign(secret, "POST", path, body, timestamp=now - 3600),
        agentauth.sign(secret, "POST", path, body.replace(b"99", b"98")),
    ):
        assert await asyncio.to_thread(_post, url, body, headers) == 401
    await asyncio.sleep(0.2)
    await env.kvm.vmsync.idle()
    assert env.snapshot() == before
    assert (await _wait_vm(env, vm["uuid"], "Running"))["hostUuid"] == u["host"]
    good = agentauth.sign(secret, "POST", path, body)
    assert await asyncio.to_thread(_post, url, body, good) == 200
    await _wait_vm(env, vm["uuid"], "Stopped")
    with env.node.db.tx() as s:  # put it back, then replay: nothing may change
        s.execute(text("UPDATE vm_instance SET state='Running', hostUuid=:h WHERE uuid=:u"),
                  {"h": u["host"], "u": vm["uuid"]})  # fmt: skip
    before = env.snapshot()
    assert await asyncio.to_thread(_post, url, body, good) == 401
    await asyncio.sleep(0.2)
    await env.kvm.vmsync.idle()
    assert env.snapshot() == before
    assert env.kvm.endpoint.server.refused[-1] == "AGENT.AUTH_REPLAYED"


async def test_agent_usage_reports_become_host_and_vm_rates(env: Env) -> None:
    await env.api("UpdateGlobalConfig", category="kvm", name="agent.metricsInterval", value="1")
    inv = await env.add("kvm1", "127.0.0.2")
    assert env.deployer.requests[-1].agent_config["metrics_interval"] == 1
    assert env.deployer.requests[-1].agent_config["kvm"] == "auto"  # kvm/host.virtualization
    agent = env.deployer.agents[inv["uuid"]]
    dom = "d" * 32  # a running domain of the agent's (fake) hypervisor
    agent.driver.domains[dom] = _Dom("<domain><name>x</name></domain>", RUNNING)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        host = await env.api("GetHostMetrics", uuid="kvm1")
        if (
            host["latest"] is not None
            and len(env.node.services["metrics"].window.samples(dom)) >= 2
        ):  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.3)
    latest = host["latest"]
    assert latest is not None, "no usage report arrived"
    # the agent's host is this machine: its /proc figures
    assert 0 <= latest["cpuPercent"] <= 100 and latest["cpuNum"] == os.cpu_count()
    assert 0 < latest["memoryUsed"] < latest["memoryTotal"] and latest["load1"] >= 0
    window = env.node.services["metrics"].window  # type: ignore[attr-defined]
    rates = series(window.samples(dom), "vm")
    assert rates and rates[-1]["cpuPercent"] > 0 and rates[-1]["diskWriteBytesPerSecond"] > 0
    assert window.samples(dom)[-1].host_uuid == inv["uuid"]


async def test_nic_hot_plug_and_hot_add_go_through_the_agent_and_a_refusal_leaves_nothing(
    env: Env,
) -> None:
    """A host whose hypervisor cannot hot-plug refuses: the NIC, its address and its DHCP
    reservation are gone again, the VM keeps its size and the host its capacity. One that
    can: the NIC reaches the domain and the host's reservations, and leaves both on detach;
    vCPUs grow up to the maximum fixed at start."""
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    from agent.drivers.features import QEMU_TCG

    api = env.api
    u = await build_kvm_cloud(env)
    l3b = (await api("CreateL3Network", name="l3b", l2NetworkUuid="l2"))["inventory"]
    await api("AddIpRange", name="rb", l3NetworkUuid=l3b["uuid"], startIp="10.19.0.10",
              endIp="10.19.0.20", netmask="255.255.255.0", gateway="10.19.0.1")  # fmt: skip
    await api("UpdateGlobalConfig", category="vm", name="cpu.hotplugMax", value=2)
    vm = (await api("CreateVmInstance", name="hp", imageUuid=u["image"],
                    instanceOfferingUuid=u["offering"], l3NetworkUuids=[u["l3"]]))["inventory"]  # fmt: skip
    agent = env.deployer.agents[u["host"]]
    driver: FakeDriver = agent.commands.driver  # type: ignore[assignment]
    # libvirt's test driver row has no CPU hot-add: the start's maximum is left out
    assert '<vcpu placement="static">1</vcpu>' in driver.xml(vm["uuid"])
    host = (await api("QueryHost", conditions=[f"uuid={u['host']}"]))["inventories"][0]

    with pytest.raises(ZmnError) as err:  # libvirt's test driver row: no hot-plug
        await api("AttachL3NetworkToVm", vmInstanceUuid=vm["uuid"], l3NetworkUuid=l3b["uuid"])
    assert err.value.code == "AGENT.HOTPLUG_UNSUPPORTED"
    assert len((await env.api("QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"]))[
        "inventories"]) == 1  # fmt: skip
    assert (await api("QueryUsedIp", conditions=[f"l3NetworkUuid={l3b['uuid']}"]))[
        "inventories"] == []  # fmt: skip
    assert [n["l3Uuid"] for n in _net_state(agent)["vms"][vm["uuid"]]["nics"]] == [u["l3"]]
    with pytest.raises(ZmnError):
        await api("UpdateVmInstance", uuid=vm["uuid"], cpuNum=2)
    after = (await api("QueryHost", conditions=[f"uuid={u['host']}"]))["inventories"][0]
    assert after["availableCpuCapacity"] == host["availableCpuCapacity"]
    assert (await api("QueryVmInstance", conditions=[f"uuid={vm['uuid']}"]))["inventories"][0][
        "cpuNum"] == 1  # fmt: skip

    driver.features = QEMU_TCG  # a hypervisor that hot-plugs (the domain is as it was)
    inv = (await api("AttachL3NetworkToVm", vmInstanceUuid=vm["uuid"],
                     l3NetworkUuid=l3b["uuid"]))["inventory"]  # fmt: skip
    nic = next(n for n in inv["vmNics"] if n["l3NetworkUuid"] == l3b["uuid"])
    assert nic["mac"] in driver.xml(vm["uuid"])
    assert {n["mac"] for n in _net_state(agent)["vms"][vm["uuid"]]["nics"]} == {
        vm["vmNics"][0]["mac"], nic["mac"]
    }  # fmt: skip
    await api("DetachL3NetworkFromVm", vmNicUuid=nic["uuid"])
    assert nic["mac"] not in driver.xml(vm["uuid"])
    assert [n["mac"] for n in _net_state(agent)["vms"][vm["uuid"]]["nics"]] == [
        vm["vmNics"][0]["mac"]
    ]
    await api("DestroyVmInstance", uuid=vm["uuid"])
