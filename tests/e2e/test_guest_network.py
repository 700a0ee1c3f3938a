"""VMs reachable through the cloud's network, on a namespaced KVM host (libvirtd, QEMU TCG).

One KVM host ``kvm1`` with two private L2s (``eth1``, ``eth2``: one L3 each) and a public L2
(``eth3``) whose other end is a "public" network namespace outside every host (an address on
the public L3's subnet, no route to the private ones). Three guests from the guest image,
booted once for the module: ``a`` and ``b`` on L3 ``priv`` in security group ``web``
(ingress TCP 22 from the public subnet, and everything from the group's own members), ``c``
on L3 ``other`` without a group; ``a`` and ``c`` have EIPs.

Checked with real SSH logins (the key injected through the seed) and ``nc`` in the guests:
the public namespace logs into ``a`` through its EIP; with ``web``'s port 22 rule deleted the
same login is refused within seconds, and logs in again once the rule is back; ``a`` reaches
``b`` on the L3; ``c`` reaches neither ``a``'s private address nor, until ``web`` gets a rule
for ``other``'s subnet, ``a``'s EIP.

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

from tests.e2e.test_guest_kvm import LOCAL, STORE, MiB
from tests.integration.test_zcli import Zcli
from tests.support import guestimage
from tests.support.datacenter import Datacenter, sh
from tests.support.inproc import Api, running_node
from tests.support.kvmcloud import kvm_datacenter, ns_host

pytestmark = [
    pytest.mark.root,
    pytest.mark.sshd,
    pytest.mark.libvirt,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

PUBLIC_NS_IP = "198.51.100.2"
SSH = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=4", "-o", "LogLevel=ERROR")  # fmt: skip


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datacenter]:
    with kvm_datacenter(
        tmp_path_factory.mktemp("dcn"), kvm=("kvm1",), nics=("eth1", "eth2")
    ) as center:
        kvm1 = ns_host(center, "kvm1")
        # the public namespace: a veth whose other end is kvm1's eth3 (the public L2)
        public = f"{center.tag}-pub"
        sh("ip", "netns", "add", public)
        try:
            sh("ip", "-n", kvm1.netns, "link", "add", "eth3", "type", "veth", "peer", "name",
               "pub0", "netns", public)  # fmt: skip
            sh("ip", "-n", kvm1.netns, "link", "set", "eth3", "up")
            sh("ip", "-n", public, "addr", "add", f"{PUBLIC_NS_IP}/24", "dev", "pub0")
            sh("ip", "-n", public, "link", "set", "pub0", "up")
            sh("ip", "-n", public, "link", "set", "lo", "up")
            center.extra["public"] = public  # type: ignore[attr-defined]
            yield center
        finally:
            sh("ip", "netns", "del", public, check=False)


class Env:
    def __init__(self, api: Api, zcli: Zcli, public: str, key: Path) -> None:
        self.api, self.zcli, self.public, self.key = api, zcli, public, key
        self.vms: dict[str, dict[str, Any]] = {}
        self.vips: dict[str, str] = {}

    def ssh(self, ip: str, command: str) -> subprocess.CompletedProcess[str]:
        """One SSH login from the public namespace, running ``command`` in the guest."""
        argv = ["ip", "netns", "exec", self.public, "ssh", *SSH, "-i", str(self.key),
                f"root@{ip}", command]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    async def login(self, ip: str, command: str, timeout: float = 180) -> str:
        """``command``'s output once a login to ``ip`` works (guests boot slowly under TCG)."""
        deadline = time.monotonic() + timeout
        while True:
            out = await asyncio.to_thread(self.ssh, ip, command)
            if out.returncode == 0:
                return out.stdout
            assert time.monotonic() < deadline, f"ssh {ip}: {out.returncode} {out.stderr}"
            await asyncio.sleep(2)

    async def probe(self, via: str, ip: str) -> bool:
        """Whether the guest at EIP ``via`` reaches port 22 at ``ip`` (dropbear's banner)."""
        out = await self.login(via, f"nc -w 3 {ip} 22 </dev/null 2>/dev/null | head -c 8; true")
        return out.startswith("SSH-2.0")

    async def reaches(self, via: str, ip: str, timeout: float = 180) -> bool:
        """Whether ``probe`` turns true before ``timeout``: the target guest may still be
        booting (nothing else logs into ``b`` first) or a new rule still on its way."""
        deadline = time.monotonic() + timeout
        while not await self.probe(via, ip):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(2)
        return True


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(dc: Datacenter, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("guest-net")
    conf = {
        "agent.callback.listen": f"{dc.gateway}:0",
        "kvm.wheelhouse": str(tmp_path_factory.mktemp("wheelhouse")),
        "image.file.allowedDirs": str(guestimage.CACHE),
    }
    key = tmp / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "guest", "-f", str(key)],
                   check=True)  # fmt: skip
    async with running_node(tmp / "home", conf=conf) as (node, server):
        api = Api(node)
        kvm1, store = dc.hosts
        await api("CreateZone", name="z1")
        await api("CreateCluster", name="kvm", zoneUuid="z1", hypervisorType="KVM")
        host = (await api("AddKvmHost", name="kvm1", managementIp=kvm1.ip, clusterUuid="kvm",
                          sshPrivateKey=str(dc.client_key)))["inventory"]  # fmt: skip
        await api("AddLocalPrimaryStorage", name="local", zoneUuid="z1", url=LOCAL)
        await api("AttachPrimaryStorageToCluster", primaryStorageUuid="local", clusterUuid="kvm")
        await api("AddImageStoreBackupStorage", name="store", url=STORE, hostname=store.ip,
                  sshPrivateKey=str(dc.client_key))  # fmt: skip
        await api("AttachBackupStorageToZone", backupStorageUuid="store", zoneUuid="z1")
        await api("AddImage", name="zguest", url=f"file://{dc.extra['image']}",  # type: ignore[attr-defined]
                  format="qcow2", backupStorageUuids=["store"])  # fmt: skip
        await api("CreateInstanceOffering", name="small", cpuNum=1, memorySize=256 * MiB)
        for l2, nic, l3, net, category in (
            ("l2a", "eth1", "priv", "10.81.0", "Private"),
            ("l2b", "eth2", "other", "10.82.0", "Private"),
            ("l2p", "eth3", "pub", "198.51.100", "Public"),
        ):
            await api("CreateL2NoVlanNetwork", name=l2, zoneUuid="z1", physicalInterface=nic)
            await api("AttachL2NetworkToCluster", l2NetworkUuid=l2, clusterUuid="kvm")
            await api("CreateL3Network", name=l3, l2NetworkUuid=l2, category=category)
            await api("AddIpRange", name=f"r-{l3}", l3NetworkUuid=l3, startIp=f"{net}.10",
                      endIp=f"{net}.99", netmask="255.255.255.0", gateway=f"{net}.1")  # fmt: skip
        await api("CreateSecurityGroup", name="web")
        sg = (await api("QuerySecurityGroup", conditions=["name=web"]))["inventories"][0]
        await api("AddSecurityGroupRule", securityGroupUuid="web", rules=[
            {"type": "Ingress", "protocol": "TCP", "startPort": 22, "endPort": 22,
             "allowedCidr": "198.51.100.0/24"},
            {"type": "Ingress", "protocol": "ALL", "remoteSecurityGroupUuid": sg["uuid"]},
        ])  # fmt: skip
        await api("AttachSecurityGroupToL3Network", securityGroupUuid="web", l3NetworkUuid="priv")
        zcli = Zcli(tmp, node, server)
        zcli.env["ZMN_ENDPOINT"] = f"unix:{node.config.unix_path}"
        e = Env(api, zcli, str(dc.extra["public"]), key)  # type: ignore[attr-defined]
        for name, l3 in (("a", "priv"), ("b", "priv"), ("c", "other")):
            run = await zcli.ok("-o", "json", "vm", "create", name, "instanceOfferingUuid=small",
                                "imageUuid=zguest", f"l3NetworkUuids={l3}",
                                f"hostUuid={host['uuid']}", "--ssh-key-file", f"{key}.pub")  # fmt: skip
            e.vms[name] = run.json()
        for name in ("a", "c"):
            vip = (await api("CreateVip", name=f"vip-{name}", l3NetworkUuid="pub"))["inventory"]
            await api("CreateEip", name=f"eip-{name}", vipUuid=vip["uuid"],
                      vmNicUuid=e.vms[name]["vmNics"][0]["uuid"])  # fmt: skip
            e.vips[name] = vip["ip"]
        yield e


def ip_of(env: Env, name: str) -> str:
    return str(env.vms[name]["vmNics"][0]["ip"])


async def test_the_public_side_logs_in_through_the_eip_while_the_group_allows_it(
    env: Env,
) -> None:
    vip = env.vips["a"]
    out = await env.login(vip, "hostname; ip -4 addr show eth0")
    assert f"inet {ip_of(env, 'a')}/" in out  # a real login, in the guest behind the EIP
    rules = (await env.api("QuerySecurityGroup", conditions=["name=web"]))["inventories"][0]
    rule22 = next(r for r in rules["rules"] if r.get("startPort") == 22)
    await env.api("DeleteSecurityGroupRule", ruleUuids=[rule22["uuid"]])
    start = time.monotonic()
    refused = await asyncio.to_thread(env.ssh, vip, "true")
    assert refused.returncode != 0, refused.stdout
    assert time.monotonic() - start < 15  # ConnectTimeout: refused within seconds
    await env.api("AddSecurityGroupRule", securityGroupUuid="web", rules=[
        {"type": "Ingress", "protocol": "TCP", "startPort": 22, "endPort": 22,
         "allowedCidr": "198.51.100.0/24"}])  # fmt: skip
    back = await asyncio.to_thread(env.ssh, vip, "echo back")
    assert back.returncode == 0 and back.stdout.strip() == "back", back.stderr


async def test_vms_on_one_l3_reach_each_other_and_another_l3_only_by_a_rule(env: Env) -> None:
    a, b = ip_of(env, "a"), ip_of(env, "b")
    assert await env.reaches(env.vips["a"], b)  # same L3, same group: allowed
    via_c = env.vips["c"]
    await env.login(via_c, "true")
    assert not await env.probe(via_c, a)  # another L3: not routed to a private address
    assert not await env.probe(via_c, env.vips["a"])  # the EIP: the group does not allow it
    await env.api("AddSecurityGroupRule", securityGroupUuid="web", rules=[
        {"type": "Ingress", "protocol": "TCP", "startPort": 22, "endPort": 22,
         "allowedCidr": "10.82.0.0/24"}])  # fmt: skip
    assert await env.reaches(via_c, env.vips["a"])  # a rule for other's subnet: through the EIP
    assert not await env.probe(via_c, a)  # still never straight to the private address
