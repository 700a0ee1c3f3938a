"""KVM hosts for real: two namespaced hosts with sshd and libvirtd, the agent deployed over SSH.

A real node (in-process) adds both hosts with ``AddKvmHost``: the playbook runs over SSH
with the host key pinned, installs zagent from the node's wheelhouse into its own virtualenv
on each host, starts it, and the node takes echo and facts from it. Then: a redeployment
changes nothing; a killed agent makes its host Disconnected and ``ReconnectHost`` brings it
back; a changed SSH host key aborts a redeployment before any command runs on the host.

Needs root, openssh-server and libvirt/QEMU (scripts/system-deps.sh installs them): skipped
with the reason outside CI, failed under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import need
from tests.support.datacenter import Datacenter, NsHost, missing_libvirt, missing_tools
from tests.support.inproc import Api, running_node
from zmn.api.errors import ZmnError

pytestmark = [
    pytest.mark.root,
    pytest.mark.sshd,
    pytest.mark.libvirt,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datacenter]:
    need(os.geteuid() == 0, "needs root (network and mount namespaces)")
    need(not missing_tools(), f"missing: {', '.join(missing_tools())}")
    need(not missing_libvirt(), f"missing: {', '.join(missing_libvirt())}")
    with Datacenter(tmp_path_factory.mktemp("dc")) as center:
        hosts = [center.add_host("kvm1"), center.add_host("kvm2")]
        for h in hosts:
            h.start_sshd()
            h.add_nic("eth1")  # the VM network's interface
        start_libvirtd_all(hosts)
        yield center


def start_libvirtd_all(hosts: list[NsHost]) -> None:
    """Both hosts' libvirtd at once (each probes QEMU for several seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(hosts)) as pool:
        for f in [pool.submit(h.start_libvirtd) for h in hosts]:
            f.result()


class Env:
    def __init__(self, api: Api, dc: Datacenter, hosts: dict[str, dict[str, Any]]) -> None:
        self.api = api
        self.node = api.node
        self.dc = dc
        self.hosts = hosts  # name -> inventory
        self.vms: dict[str, str] = {}  # host name -> UUID of the VM made on it

    def ns(self, name: str) -> NsHost:
        return next(h for h in self.dc.hosts if h.name == name)

    async def host(self, name: str) -> dict[str, Any]:
        found = await self.api("QueryHost", conditions=[f"name={name}"])
        return found["inventories"][0]

    async def wait_vm(self, uuid: str, state: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.api("QueryVmInstance", conditions=[f"uuid={uuid}"])
            vm = found["inventories"][0]
            if vm["state"] == state:
                return vm
            assert time.monotonic() < deadline, f"VM {uuid} stayed {vm['state']}, not {state}"
            await asyncio.sleep(0.2)

    async def wait_status(self, name: str, status: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (now := (await self.host(name))["status"]) != status:
            assert time.monotonic() < deadline, f"{name} stayed {now}, expected {status}"
            await asyncio.sleep(0.2)


async def restart_tracker(env: Env) -> None:
    tracker = env.node.services["host"].tracker  # type: ignore[attr-defined]
    await tracker.stop()
    tracker.start()
    await asyncio.sleep(2)  # its first round reconnects every host (agents answer: quick)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(dc: Datacenter, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    conf = {
        "agent.callback.listen": f"{dc.gateway}:0",
        "kvm.wheelhouse": str(tmp_path_factory.mktemp("wheelhouse")),
        "metrics.listen": "127.0.0.1:0",
    }
    async with running_node(tmp_path_factory.mktemp("home"), conf=conf) as (node, _server):
        api = Api(node)
        await api("UpdateGlobalConfig", category="kvm", name="agent.metricsInterval", value="1")
        await api("CreateZone", name="z1")
        await api("CreateCluster", name="kvm", zoneUuid="z1", hypervisorType="KVM")
        added = await asyncio.gather(
            *(
                api(
                    "AddKvmHost",
                    name=h.name,
                    managementIp=h.ip,
                    clusterUuid="kvm",
                    sshPrivateKey=str(dc.client_key),
                )
                for h in dc.hosts
            )
        )
        yield Env(api, dc, {a["inventory"]["name"]: a["inventory"] for a in added})


async def test_add_kvm_host_deploys_the_agent_over_ssh_and_takes_its_facts(env: Env) -> None:
    uuids = set()
    for name, inv in env.hosts.items():
        h = env.ns(name)
        assert inv["hypervisorType"] == "KVM" and inv["status"] == "Connected"
        assert inv["cpuNum"] >= 1 and inv["totalMemoryCapacity"] > 0
        assert inv["availableMemoryCapacity"] == inv["totalMemoryCapacity"]
        # installed into its own virtualenv on this host only, running, with its own config
        assert h.exists("/opt/zagent/venv/bin/zagent") and h.agent_pid() is not None
        config = h.read("/etc/zagent/zagent.yaml")
        assert f"host_uuid: {inv['uuid']}" in config
        assert f"/agent/v1/report/{inv['uuid']}" in config and "qemu:///system" in config
        assert h.run(["stat", "-c", "%a", "/etc/zagent/secret"]).stdout.strip() == "600"
        secret = h.read("/etc/zagent/secret").strip()
        assert len(secret) == 64
        uuids.add(inv["uuid"])
        tags = await env.api(
            "QuerySystemTag", conditions=[f"resourceUuid={inv['uuid']}"], limit=100
        )
        found = {t["tag"].split("::")[0] for t in tags["inventories"]}
        assert {"cpuModel", "libvirt", "qemu", "kvm"} <= found, found
    assert len(uuids) == 2
    # the two hosts' secrets differ, and neither is in the node's log-facing job record
    secrets = {env.ns(n).read("/etc/zagent/secret").strip() for n in env.hosts}
    assert len(secrets) == 2
    jobs = await env.api("QueryJob", conditions=["name=AddKvmHost"], limit=10)
    assert jobs["inventories"] and all(
        s not in str(j) for j in jobs["inventories"] for s in secrets
    )


async def test_a_vm_runs_on_each_kvm_host_in_libvirt_with_its_bridge(env: Env) -> None:
    api = env.api
    if "CreateVmInstance" not in env.node.apis.apis:
        pytest.skip("the VM service is not installed")
    ps = await api("AddSimulatorPrimaryStorage", name="ps", zoneUuid="z1",
                   url=str(env.dc.root / "ps"), totalCapacity=1 << 40)  # fmt: skip
    await api("AttachPrimaryStorageToCluster", primaryStorageUuid=ps["inventory"]["uuid"],
              clusterUuid="kvm")  # fmt: skip
    bs = await api("AddSimulatorBackupStorage", name="bs", url="/bs", totalCapacity=1 << 40,
                   availableCapacity=1 << 40)  # fmt: skip
    await api("AttachBackupStorageToZone", backupStorageUuid=bs["inventory"]["uuid"], zoneUuid="z1")
    await api("AddImage", name="empty", url="http://images.example/empty.qcow2", format="qcow2",
              backupStorageUuids=[bs["inventory"]["uuid"]])  # fmt: skip
    await api("CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=64 << 20)
    l2 = await api("CreateL2NoVlanNetwork", name="l2", zoneUuid="z1", physicalInterface="eth1")
    await api("AttachL2NetworkToCluster", l2NetworkUuid=l2["inventory"]["uuid"], clusterUuid="kvm")
    l3 = await api("CreateL3Network", name="l3", l2NetworkUuid=l2["inventory"]["uuid"])
    await api("AddIpRange", name="r", l3NetworkUuid=l3["inventory"]["uuid"], startIp="10.77.0.10",
              endIp="10.77.0.99", netmask="255.255.255.0", gateway="10.77.0.1")  # fmt: skip
    l3_uuid = l3["inventory"]["uuid"]
    # a security group on the L3 (its rule goes to the hosts' nftables) and a public L3 for EIPs
    sg = (await api("CreateSecurityGroup", name="ssh-in"))["inventory"]
    await api("AddSecurityGroupRule", securityGroupUuid=sg["uuid"], type="Ingress",
              protocol="TCP", startPort=2222, allowedCidr="198.51.100.0/24")  # fmt: skip
    await api("AttachSecurityGroupToL3Network", securityGroupUuid=sg["uuid"], l3NetworkUuid=l3_uuid)
    pub = await api("CreateL3Network", name="pub", l2NetworkUuid=l2["inventory"]["uuid"],
                    category="Public")  # fmt: skip
    await api("AddIpRange", name="pr", l3NetworkUuid=pub["inventory"]["uuid"],
              startIp="203.0.113.10", endIp="203.0.113.20", netmask="255.255.255.0",
              gateway="203.0.113.1")  # fmt: skip
    vms: dict[str, str] = {}
    nics: dict[str, dict[str, Any]] = {}
    for name, inv in env.hosts.items():
        hostile = f"vm-{name} $(reboot);'\"<x>,dhcp-script=/bin/sh"  # never reaches dnsmasq
        vm = (
            await api("CreateVmInstance", name=hostile, imageUuid="empty",
                      instanceOfferingUuid="tiny", l3NetworkUuids=["l3"], hostUuid=inv["uuid"])
        )["inventory"]  # fmt: skip
        assert vm["state"] == "Running" and vm["hostUuid"] == inv["uuid"]
        nics[name] = vm["vmNics"][0]
        h = env.ns(name)
        assert h.virsh("domstate", vm["uuid"]).strip() == "running"
        assert vm["vmNics"][0]["mac"] in h.virsh("dumpxml", vm["uuid"])
        links = h.links()
        assert links["br_eth1"]["linkinfo"]["info_kind"] == "bridge"
        assert links["eth1"]["master"] == "br_eth1"
        taps = [n for n, link in links.items() if link.get("master") == "br_eth1" and n != "eth1"]
        assert taps, links  # the VM's NIC is on the bridge, in this host's namespace only
        other = env.ns(next(n for n in env.hosts if n != name))
        assert vm["uuid"] not in other.virsh("list", "--all", "--name")
        vms[name] = vm["uuid"]
    vip = (await api("CreateVip", name="vip", l3NetworkUuid="pub"))["inventory"]
    await api("CreateEip", name="eip", vipUuid=vip["uuid"], vmNicUuid=nics["kvm2"]["uuid"])
    await env.node.services["kvm"].vmsync.idle()  # type: ignore[attr-defined]
    for name in env.hosts:
        h, nic = env.ns(name), nics[name]
        other = nics[next(n for n in env.hosts if n != name)]
        # DHCP: the node's address for this VM, reserved in this host's dnsmasq only
        hosts_file = h.read(f"/var/lib/zagent/dnsmasq/{l3_uuid}/hosts")
        assert hosts_file == f"{nic['mac']},{nic['ip']}\n", hosts_file
        assert other["mac"] not in hosts_file
        conf = h.read(f"/var/lib/zagent/dnsmasq/{l3_uuid}/dnsmasq.conf")
        assert "interface=br_eth1" in conf and "dhcp-script" not in conf
        pid = h.read(f"/var/lib/zagent/dnsmasq/{l3_uuid}/dnsmasq.pid").strip()
        assert int(pid) in h.pids()  # running inside this host's namespace
        addrs = h.run(["ip", "-j", "addr", "show", "dev", "br_eth1"]).stdout
        assert '"local":"10.77.0.254"' in addrs.replace(" ", "")  # the DHCP server's address
        # the security group's rule and the NIC's anti-spoofing guard in this host's nftables
        ruleset = h.run(["nft", "list", "ruleset"]).stdout
        assert "198.51.100.0/24" in ruleset and "2222" in ruleset, ruleset
        assert nic["mac"] in ruleset and nic["ip"] in ruleset and other["ip"] not in ruleset
        nat = h.run(["nft", "list", "table", "ip", "zagent_nat"]).stdout
        if name == "kvm2":  # the EIP: DNAT and SNAT between the VIP and the VM, on its host
            assert f"dnat to {nic['ip']}" in nat and f"snat to {vip['ip']}" in nat, nat
        else:
            assert "dnat" not in nat
    # a domain stopped behind the node's back: the agent pushes the libvirt event, signed
    reports: list[dict[str, Any]] = []
    drift: list[dict[str, Any]] = []
    sub = env.node.bus.subscribe("/host/vm/report", lambda e: _append(reports, e))
    drift_sub = env.node.bus.subscribe("/reconcile/drift", lambda e: _append(drift, e))
    try:
        env.ns("kvm1").virsh("destroy", vms["kvm1"])
        deadline = time.monotonic() + 15
        while not any(r["vmUuid"] == vms["kvm1"] and r["event"] == "stopped" for r in reports):
            assert time.monotonic() < deadline, reports
            await asyncio.sleep(0.1)
        report = next(r for r in reports if r["event"] == "stopped")
        assert report["hostUuid"] == env.hosts["kvm1"]["uuid"] and report["state"] == "Stopped"
        assert report["detail"] == "destroyed"
        # ...and the node follows: the VM is Stopped, its capacity and reservation released
        vm = await env.wait_vm(vms["kvm1"], "Stopped")
        assert vm["hostUuid"] is None and vm["lastHostUuid"] == env.hosts["kvm1"]["uuid"]
        await env.node.services["kvm"].vmsync.idle()  # type: ignore[attr-defined]
        assert any(d["uuid"] == vms["kvm1"] for d in drift)
        h = env.ns("kvm1")
        assert h.read(f"/var/lib/zagent/dnsmasq/{l3_uuid}/hosts") == ""
        assert nics["kvm1"]["mac"] not in h.run(["nft", "list", "ruleset"]).stdout
    finally:
        sub.cancel()
        drift_sub.cancel()
    env.vms = vms


async def test_a_guest_kernel_leases_the_address_the_node_allocated(env: Env) -> None:
    """Debian's cloud kernel with a busybox initrd, booted under TCG next to the node's VM
    with that VM's MAC on the host's bridge: dnsmasq gives it the node's address."""
    from tests.support import guest as tiny

    vm_uuid = env.vms.get("kvm2")
    if not vm_uuid:
        pytest.skip("no VM on kvm2 (the VM test did not run)")
    try:
        built = await asyncio.to_thread(tiny.build)
    except Exception as exc:  # no package source: say so
        need(False, f"no guest kernel from Debian packages: {exc}")
    vm = (await env.api("QueryVmInstance", conditions=[f"uuid={vm_uuid}"]))["inventories"][0]
    nic = vm["vmNics"][0]
    h = env.ns("kvm2")
    console = h.root / "guest-console.log"
    console.unlink(missing_ok=True)
    xml = h.root / "guest.xml"
    xml.write_text(tiny.domain_xml("zguest-probe", built, nic["mac"], "br_eth1", console))
    h.virsh("create", str(xml))
    leases = f"/var/lib/zagent/dnsmasq/{vm['vmNics'][0]['l3NetworkUuid']}/leases"
    try:
        deadline = time.monotonic() + 90
        while True:
            text = h.read(leases) if h.exists(leases) else ""
            out = console.read_text(errors="replace") if console.exists() else ""
            if nic["mac"] in text and f"ZGUEST-LEASED {nic['ip']}" in out:
                break
            assert time.monotonic() < deadline, (text, out[-2000:])
            await asyncio.sleep(0.5)
        assert f"{nic['mac']} {nic['ip']} " in text  # dnsmasq's lease: the node's address
    finally:
        h.virsh("destroy", "zguest-probe", check=False)


async def test_usage_of_a_real_domain_reaches_the_api_and_prometheus(env: Env) -> None:
    """libvirt's counters of the running VM on kvm2, through the agent's reports, as rates
    and as Prometheus samples parsed by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    vm_uuid = env.vms.get("kvm2")
    if not vm_uuid:
        pytest.skip("no VM on kvm2 (the VM test did not run)")
    deadline = time.monotonic() + 30
    while True:
        got = await env.api("GetVmMetrics", uuid=vm_uuid)
        if len(got["samples"]) >= 2:
            break
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.5)
    latest = got["latest"]
    assert got["hostUuid"] == env.hosts["kvm2"]["uuid"]
    assert 0 <= latest["cpuPercent"] <= 100 and latest["cpuNum"] == 1
    assert latest["memoryTotal"] == 64 << 20  # the offering's memory, as libvirt reports it
    assert "diskReadBytesPerSecond" in latest and "netRxBytesPerSecond" in latest
    host = await env.api("GetHostMetrics", uuid="kvm2")
    assert host["latest"] is not None and 0 <= host["latest"]["cpuPercent"] <= 100
    port = env.node.services["metrics"].port  # type: ignore[attr-defined]

    def scrape() -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    families = {f.name: f for f in text_string_to_metric_families(await asyncio.to_thread(scrape))}
    cpu = [s for s in families["zmn_vm_cpu_seconds"].samples if s.labels["vm_uuid"] == vm_uuid]
    assert cpu and cpu[0].value > 0 and cpu[0].labels["host_uuid"] == env.hosts["kvm2"]["uuid"]
    hosts = {s.labels["host_uuid"] for s in families["zmn_host_load1"].samples}
    assert {env.hosts["kvm1"]["uuid"], env.hosts["kvm2"]["uuid"]} <= hosts


async def test_redeployment_is_idempotent(env: Env) -> None:
    kvm = env.node.services["kvm"]
    ht = kvm.host_type  # type: ignore[attr-defined]
    inv = env.hosts["kvm1"]
    row = ht._row(inv["uuid"])
    from zmn.services.host.hosttype import HostRef
    from zmn.services.kvm.deploy import DeployRequest

    ref = HostRef(inv["uuid"], "kvm1", inv["managementIp"], inv["clusterUuid"], "KVM")
    pid = env.ns("kvm1").agent_pid()
    request = DeployRequest(
        inv["uuid"], ht._target(ref, row), row.hostKey, row.agentSecret, ht._agent_config(ref), True
    )
    outcome = await ht.deployer.deploy(request)
    assert outcome.deployed
    assert not [line for line in outcome.log if ": changed" in line], outcome.log
    assert env.ns("kvm1").agent_pid() == pid  # nothing changed, so no restart


async def test_killed_agent_makes_the_host_disconnected_and_reconnect_brings_it_back(
    env: Env,
) -> None:
    api = env.api
    await api("UpdateGlobalConfig", category="host", name="ping.interval", value=1)
    await api("UpdateGlobalConfig", category="host", name="ping.maxFailure", value=2)
    await restart_tracker(env)  # the running tracker sleeps out its old 60 s interval first
    try:
        h = env.ns("kvm2")
        old = h.agent_pid()
        h.kill_agent()
        await env.wait_status("kvm2", "Disconnected")
        assert (await env.host("kvm1"))["status"] == "Connected"
        vm = env.vms.get("kvm2")
        if vm:  # its VM is Unknown while nobody can tell, and still runs in libvirt
            await env.wait_vm(vm, "Unknown")
            assert h.virsh("domstate", vm).strip() == "running"
        inv = (await api("ReconnectHost", uuid="kvm2"))["inventory"]
        assert inv["status"] == "Connected"
        new = h.agent_pid()
        assert new is not None and new != old
        if vm:  # re-synced from the agent's truth at reconnect
            assert (await env.wait_vm(vm, "Running"))["hostUuid"] == env.hosts["kvm2"]["uuid"]
    finally:
        await api("UpdateGlobalConfig", category="host", name="ping.interval", value=60)
        await api("UpdateGlobalConfig", category="host", name="ping.maxFailure", value=3)
        await restart_tracker(env)


async def test_changed_host_key_aborts_deployment_before_any_command(env: Env) -> None:
    api, h = env.api, env.ns("kvm1")
    old_key = h.host_key
    assert old_key is not None
    # the agent is gone from the host, so a reconnect has to deploy it again over SSH
    h.kill_agent()
    h.run(["find", "/opt/zagent", "/var/log/zagent", "-mindepth", "1", "-delete"])
    saved = (old_key.read_bytes(), old_key.with_suffix(".pub").read_bytes())
    h.stop_sshd()
    h.new_host_key()
    h.start_sshd()
    log_before = len(h.sshd_log())
    with pytest.raises(ZmnError) as caught:
        await api("ReconnectHost", uuid="kvm1")
    err = caught.value
    assert err.details.get("cause") == "KVM.HOST_KEY_CHANGED", err
    assert "changed" in err.message and "Nothing was run" in err.message
    # no command ran: the deployment's first steps would have recreated these
    for path in ("/opt/zagent/bin", "/opt/zagent/wheelhouse", "/var/log/zagent/zagent.log"):
        assert not h.exists(path), path
    assert "Accepted" not in h.sshd_log()[log_before:]  # never even logged in
    assert (await env.host("kvm1"))["status"] == "Disconnected"
    # the operator restores the host's real key: the reconnect redeploys the agent
    h.stop_sshd()
    old_key.write_bytes(saved[0])
    old_key.with_suffix(".pub").write_bytes(saved[1])
    h.start_sshd()
    inv = (await api("ReconnectHost", uuid="kvm1"))["inventory"]
    assert inv["status"] == "Connected"
    assert h.exists("/opt/zagent/venv/bin/zagent") and h.agent_pid() is not None


async def test_agent_reports_are_signed_and_forgeries_change_nothing(env: Env) -> None:
    """A lifecycle report from a host's agent arrives; a forged one for it is refused."""
    from agent.reporter import Reporter

    events: list[dict[str, Any]] = []
    sub = env.node.bus.subscribe("/host/vm/report", lambda e: _append(events, e))
    try:
        inv = env.hosts["kvm2"]
        h = env.ns("kvm2")
        url = h.read("/etc/zagent/zagent.yaml").split("callback_url: ", 1)[1].split()[0]
        real = h.read("/etc/zagent/secret").strip().encode()
        good = Reporter(url, real, inv["uuid"], attempts=1)
        await asyncio.to_thread(
            good.post,
            {"type": "vm.lifecycle", "hostUuid": inv["uuid"], "seq": 1, "vmUuid": "v" * 32,
             "event": "stopped", "detail": "destroyed", "state": "Stopped"},
        )  # fmt: skip
        forged = Reporter(url, b"f" * 64, inv["uuid"], attempts=1)
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(
                forged.post,
                {"type": "vm.lifecycle", "hostUuid": inv["uuid"], "seq": 2, "vmUuid": "w" * 32,
                 "event": "stopped", "state": "Stopped"},
            )  # fmt: skip
        assert refused.value.code == 401
        refused.value.close()
        await asyncio.sleep(0.2)
        # only the two reports of this test: a real VM the test before stopped may still be
        # reporting (the agent's reporter waits a few ms for a burst's next report)
        mine = [e for e in events if e["vmUuid"] in ("v" * 32, "w" * 32)]
        assert [e["vmUuid"] for e in mine] == ["v" * 32]
        assert mine[0]["hostUuid"] == inv["uuid"] and mine[0]["state"] == "Stopped"
    finally:
        sub.cancel()


def _append(events: list[dict[str, Any]], event: Any) -> None:
    events.append(event.data)
