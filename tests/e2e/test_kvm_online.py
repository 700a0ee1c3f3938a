"""Online changes on a running KVM guest, seen from inside it over SSH (libvirtd, QEMU TCG).

One namespaced KVM host ``kvm1`` with two L2s (``eth1``: L3 ``l3``, ``eth2``: L3 ``l3b``),
local primary storage, the guest image. With ``vm/cpu.hotplugMax=2`` and
``vm/memory.hotplugMax=512 MiB`` set before it starts, one guest (1 vCPU, 256 MiB) is changed
while it runs:

* a NIC on ``l3b`` is hot-plugged: the host has its bridge and DHCP reservation, the guest
  sees the interface and leases the address the node allocated; detached, it is gone from
  the domain, the guest and the reservations;
* the root volume grows from 256 to 512 MiB: the guest's ``/sys/block/vda/size`` follows; a
  smaller size is refused;
* ``ChangeInstanceOffering`` to 2 vCPUs and 512 MiB: the guest's online CPUs and MemTotal
  grow (the guest image's ``/etc/zguest/hotplug`` onlines them, as udev would); 3 vCPUs is
  beyond the maximum fixed at start: a clear error naming ``vm/cpu.hotplugMax``, and neither
  the guest, the domain, the VM record nor the host's capacity changes;
* stopped, the root volume grows on the host (``qemu-img resize`` by the agent) and the VM
  boots with the bigger disk and the vCPUs and memory it grew to.

Needs root, openssh-server (client too), libvirt/QEMU and qemu-img (scripts/system-deps.sh).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.test_guest_kvm import MiB, guest_ssh
from tests.support.datacenter import Datacenter, NsHost
from tests.support.inproc import Api, running_node
from tests.support.kvmcloud import build_kvm_cloud, kvm_datacenter, kvm_node_conf, ns_host
from zmn.api.errors import InvalidArgument, InvalidState

pytestmark = [
    pytest.mark.root,
    pytest.mark.sshd,
    pytest.mark.libvirt,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    # the module's cloud (host deployment, a TCG guest's boot) is set up inside the first test
    pytest.mark.timeout(1200),
]

STATE = "/var/lib/zagent"


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datacenter]:
    with kvm_datacenter(
        tmp_path_factory.mktemp("dco"), kvm=("kvm1",), nics=("eth1", "eth2")
    ) as center:
        yield center


class Env:
    def __init__(self, api: Api, kvm1: NsHost, vm: dict[str, Any], key: Path) -> None:
        self.api, self.kvm1, self.vm, self.key = api, kvm1, vm, key

    @property
    def ip(self) -> str:
        return str(self.vm["vmNics"][0]["ip"])

    async def guest(self, command: str) -> str:
        try:
            return await guest_ssh(self.kvm1, self.ip, self.key, command, timeout=300)
        except AssertionError as exc:  # say what the guest's console shows
            seen = await asyncio.to_thread(console_diagnostics, self.kvm1, self.vm["uuid"])
            raise AssertionError(f"{exc}\n--- guest console ---\n{seen}") from None

    async def domain_state(self) -> str:
        uuid = self.vm["uuid"]
        log = f"/var/log/libvirt/qemu/{uuid}.log"
        tail = "\n".join(self.kvm1.read(log).splitlines()[-15:]) if self.kvm1.exists(log) else ""
        return f"{self.kvm1.virsh('domstate', uuid, '--reason', check=False)}\n{tail}"

    async def until(self, what: str, command: str, ok: Callable[[str], bool]) -> str:
        """``command``'s output in the guest once ``ok`` holds for it (generous deadline)."""
        deadline = time.monotonic() + 180
        while True:
            out = await self.guest(command)
            if ok(out):
                return out
            assert time.monotonic() < deadline, f"{what}: guest says {out!r}"
            await asyncio.sleep(2)

    async def record(self) -> dict[str, Any]:
        rows = await self.api("QueryVmInstance", conditions=[f"uuid={self.vm['uuid']}"])
        inv: dict[str, Any] = rows["inventories"][0]
        return inv


def console_diagnostics(h: NsHost, uuid: str) -> str:
    """The domain's state and QEMU log; then a login on the serial console (the test image's
    root has no password there) showing the guest's addresses, network setup and processes."""
    import pexpect

    log = f"/var/log/libvirt/qemu/{uuid}.log"
    head = h.virsh("domstate", uuid, "--reason", check=False)
    if h.exists(log):
        head += "\n" + "\n".join(h.read(log).splitlines()[-15:])

    argv = " ".join(h.argv(["virsh", "console", "--force", uuid]))
    console = pexpect.spawn(argv, encoding="utf-8", timeout=30)
    try:
        console.expect("Escape character")
        console.sendline("")
        if console.expect(["login:", "# ", pexpect.TIMEOUT]) == 0:
            console.sendline("root")
            console.expect("# ")
        console.sendline("ip -4 addr; cat /var/lib/zguest/network.conf; ls /run/zguest; ps")
        console.expect(pexpect.TIMEOUT, timeout=5)
        return f"{head}\n{console.before}"
    except pexpect.ExceptionPexpect as exc:
        return f"{head}\n(console: {exc})"
    finally:
        console.terminate(force=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(dc: Datacenter, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("kvm-online")
    key = tmp / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "guest", "-f", str(key)],
                   check=True)  # fmt: skip
    async with running_node(tmp / "home", conf=kvm_node_conf(dc, tmp)) as (node, _server):
        api = Api(node)
        cloud = await build_kvm_cloud(api, dc)
        l2b = (await api("CreateL2NoVlanNetwork", name="l2b", zoneUuid="z1",
                         physicalInterface="eth2"))["inventory"]  # fmt: skip
        await api("AttachL2NetworkToCluster", l2NetworkUuid=l2b["uuid"], clusterUuid="kvm")
        l3b = (await api("CreateL3Network", name="l3b", l2NetworkUuid=l2b["uuid"]))["inventory"]
        await api("AddIpRange", name="rb", l3NetworkUuid=l3b["uuid"], startIp="10.78.0.10",
                  endIp="10.78.0.99", netmask="255.255.255.0", gateway="10.78.0.1")  # fmt: skip
        for name, cpu, memory in (("big", 2, 512 * MiB), ("huge", 3, 512 * MiB)):
            await api("CreateInstanceOffering", name=name, cpuNum=cpu, memorySize=memory)
        await api("UpdateGlobalConfig", category="vm", name="cpu.hotplugMax", value=2)
        await api("UpdateGlobalConfig", category="vm", name="memory.hotplugMax", value=512 * MiB)
        vm = (await api("CreateVmInstance", name="online", instanceOfferingUuid="small",
                        imageUuid="zguest", l3NetworkUuids=["l3"],
                        hostUuid=cloud["hosts"]["kvm1"]["uuid"],
                        sshKeys=[(tmp / "id.pub").read_text().strip()]))["inventory"]  # fmt: skip
        yield Env(api, ns_host(dc, "kvm1"), vm, key)


async def test_a_hot_plugged_nic_appears_in_the_guest_and_leases_its_address(env: Env) -> None:
    api, kvm1 = env.api, env.kvm1
    await env.guest("true")  # booted
    assert "running" in await env.domain_state()
    vm = (await api("AttachL3NetworkToVm", vmInstanceUuid=env.vm["uuid"], l3NetworkUuid="l3b"))[
        "inventory"
    ]
    nic = next(n for n in vm["vmNics"] if n["ip"].startswith("10.78.0."))
    assert nic["mac"] in kvm1.virsh("domiflist", vm["uuid"])
    assert "br_eth2" in kvm1.run(["ip", "-br", "link", "show", "type", "bridge"]).stdout
    hosts = f"{STATE}/dnsmasq/{nic['l3NetworkUuid']}/hosts"
    assert nic["mac"] in kvm1.read(hosts)  # the reservation came before the NIC
    out = await env.until(
        "the hot-plugged NIC's lease", "ip -4 -o addr show", lambda o: f" {nic['ip']}/" in o
    )
    assert "eth1" in out
    leases = f"{STATE}/dnsmasq/{nic['l3NetworkUuid']}/leases"
    assert f"{nic['mac']} {nic['ip']} " in kvm1.read(leases)

    await api("DetachL3NetworkFromVm", vmNicUuid=nic["uuid"])
    assert nic["mac"] not in kvm1.virsh("domiflist", vm["uuid"])
    await env.until(
        "the detached NIC leaving the guest",
        "cat /sys/class/net/*/address",
        lambda o: nic["mac"] not in o,
    )
    assert not kvm1.exists(hosts) or nic["mac"] not in kvm1.read(hosts)
    assert len((await env.record())["vmNics"]) == 1


async def test_a_resized_root_volume_is_bigger_in_the_guest(env: Env) -> None:
    root = env.vm["rootVolumeUuid"]
    sectors = int(await env.guest("cat /sys/block/vda/size"))
    assert sectors * 512 == 256 * MiB
    inv = (await env.api("ResizeRootVolume", volumeUuid=root, size=512 * MiB))["inventory"]
    assert inv["size"] == 512 * MiB
    await env.until(
        "the bigger disk", "cat /sys/block/vda/size", lambda o: int(o) * 512 == 512 * MiB
    )
    with pytest.raises(InvalidArgument) as err:
        await env.api("ResizeRootVolume", volumeUuid=root, size=256 * MiB)
    assert err.value.code == "VOLUME.SHRINK"
    assert int(await env.guest("cat /sys/block/vda/size")) * 512 == 512 * MiB


def mem_total_kib(meminfo: str) -> int:
    line = next(x for x in meminfo.splitlines() if x.startswith("MemTotal:"))
    return int(line.split()[1])


async def test_cpus_and_memory_grow_online_and_beyond_the_maximum_nothing_changes(
    env: Env,
) -> None:
    api, kvm1, uuid = env.api, env.kvm1, env.vm["uuid"]
    cpus = "grep -c ^processor /proc/cpuinfo"
    assert (await env.guest(cpus)).strip() == "1"
    mem_before = mem_total_kib(await env.guest("cat /proc/meminfo"))
    vm = (await api("ChangeInstanceOffering", vmInstanceUuid=uuid, instanceOfferingUuid="big"))[
        "inventory"
    ]
    assert (vm["state"], vm["cpuNum"], vm["memorySize"]) == ("Running", 2, 512 * MiB)
    await env.until("a second vCPU online", cpus, lambda o: o.strip() == "2")
    out = await env.until(
        "the hot-added memory online",
        "cat /proc/meminfo",
        lambda o: mem_total_kib(o) - mem_before >= 200 * 1024,
    )
    grown_kib = mem_total_kib(out)
    assert "<memory model='dimm'" in kvm1.virsh("dumpxml", uuid).replace('"', "'")

    host_before = (await api("QueryHost", conditions=["name=kvm1"]))["inventories"][0]
    with pytest.raises(InvalidState) as err:
        await api("ChangeInstanceOffering", vmInstanceUuid=uuid, instanceOfferingUuid="huge")
    assert err.value.code == "VM_INSTANCE.HOTPLUG_LIMIT"
    assert "vm/cpu.hotplugMax" in err.value.message and "stop" in err.value.message
    record = await env.record()
    assert (record["cpuNum"], record["memorySize"], record["state"]) == (2, 512 * MiB, "Running")
    host_after = (await api("QueryHost", conditions=["name=kvm1"]))["inventories"][0]
    for key in ("availableCpuCapacity", "availableMemoryCapacity"):
        assert host_after[key] == host_before[key], key
    assert "2" in kvm1.virsh("vcpucount", uuid, "--live", "--active")
    assert (await env.guest(cpus)).strip() == "2"
    assert mem_total_kib(await env.guest("cat /proc/meminfo")) == grown_kib


async def test_a_stopped_vms_volume_grows_on_the_host_and_it_boots_with_its_new_size(
    env: Env,
) -> None:
    api, uuid = env.api, env.vm["uuid"]
    await api("StopVmInstance", uuid=uuid)
    root = env.vm["rootVolumeUuid"]
    inv = (await api("ResizeRootVolume", volumeUuid=root, size=640 * MiB))["inventory"]
    assert inv["size"] == 640 * MiB  # qemu-img resize by the agent holding the file
    await api("StartVmInstance", uuid=uuid)
    assert int(await env.guest("cat /sys/block/vda/size")) * 512 == 640 * MiB
    # the size it grew to while running is the size it starts with
    assert (await env.guest("grep -c ^processor /proc/cpuinfo")).strip() == "2"
    assert mem_total_kib(await env.guest("cat /proc/meminfo")) > 400 * 1024
