"""``WaitVmInstance`` / ``zcli vm wait``: running, the guest's DHCP lease as the agent sees
it in dnsmasq's lease file, SSH; exit status 124 on timeout. Real node, in-process agents
with the fake driver (their lease files are written here, as dnsmasq would)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration import test_vm_console
from tests.integration.test_vm_console import endpoint, make_vm
from tests.support.kvmagents import Env, build_kvm_cloud
from zmn.api.errors import ZmnError

env = test_vm_console.env  # the fixture


async def make_loopback_vm(cloud: Env) -> dict[str, Any]:
    """A VM whose address is on the loopback network, so that "its port 22" is a listener
    this test opens (the test machine talks to nothing but loopback and its namespaces)."""
    u = await build_kvm_cloud(cloud)
    l2 = (await cloud.api("QueryL2Network", conditions=["name=l2"]))["inventories"][0]
    await cloud.api("CreateL3Network", name="loop", l2NetworkUuid=l2["uuid"])
    await cloud.api("AddIpRange", name="lr", l3NetworkUuid="loop", startIp="127.77.0.10",
                  endIp="127.77.0.20", netmask="255.255.255.0", gateway="127.77.0.1")  # fmt: skip
    reply = await cloud.api("CreateVmInstance", name="vm1", imageUuid=u["image"],
                          instanceOfferingUuid=u["offering"], l3NetworkUuids=["loop"])  # fmt: skip
    return dict(reply["inventory"])


def lease_file(cloud: Env, vm: dict[str, Any]) -> Path:
    nic = vm["vmNics"][0]
    return cloud.deployer.state / vm["hostUuid"] / "dnsmasq" / nic["l3NetworkUuid"] / "leases"


def take_lease(cloud: Env, vm: dict[str, Any]) -> None:
    nic = vm["vmNics"][0]
    path = lease_file(cloud, vm)
    path.parent.mkdir(parents=True, exist_ok=True)
    expiry = int(time.time()) + 86400 + int(time.monotonic() * 1000) % 1000
    path.write_text(f"{expiry} {nic['mac']} {nic['ip']} guest *\n")


async def nic_of(cloud: Env, vm: dict[str, Any]) -> dict[str, Any]:
    found = await cloud.api("QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    return dict(found["inventories"][0])


async def test_wait_for_running_ip_and_ssh(env: Env) -> None:
    vm = await make_loopback_vm(env)
    done = await env.api("WaitVmInstance", uuids=[vm["uuid"]], **{"for": "running"})
    assert [v["uuid"] for v in done["inventories"]] == [vm["uuid"]]
    assert (await nic_of(env, vm))["leaseDate"] is None

    with pytest.raises(ZmnError) as late:
        await env.api("WaitVmInstance", uuids=["vm1"], timeout=0.6, **{"for": "ip"})
    assert late.value.code == "VM_INSTANCE.WAIT_TIMEOUT" and late.value.kind == "Timeout"
    assert "not leased yet" in late.value.message

    waiter = asyncio.create_task(env.api("WaitVmInstance", uuids=["vm1"], timeout=15,
                                         **{"for": "ip"}))  # fmt: skip
    await asyncio.sleep(0.3)
    assert not waiter.done()
    take_lease(env, vm)
    got = await asyncio.wait_for(waiter, 15)
    nic = got["inventories"][0]["vmNics"][0]
    assert nic["ip"] == vm["vmNics"][0]["ip"] and nic["leaseDate"] is not None

    # ssh: nothing answers on the guest's port 22 yet, then something does
    with pytest.raises(ZmnError) as no_ssh:
        await env.api("WaitVmInstance", uuids=["vm1"], timeout=0.5, **{"for": "ssh"})
    assert "port 22" in no_ssh.value.message
    with socket.create_server((nic["ip"], 22)):
        await env.api("WaitVmInstance", uuids=["vm1"], timeout=10, **{"for": "ssh"})

    # the lease is per start: stopping forgets it, a new lease after the start counts
    await env.api("StopVmInstance", uuid=vm["uuid"])
    assert (await nic_of(env, vm))["leaseDate"] is None
    await env.api("StartVmInstance", uuid=vm["uuid"])
    with pytest.raises(ZmnError):
        await env.api("WaitVmInstance", uuids=["vm1"], timeout=0.6, **{"for": "ip"})
    take_lease(env, vm)
    await env.api("WaitVmInstance", uuids=["vm1"], timeout=15, **{"for": "ip"})


async def test_zcli_vm_wait_several_vms_and_exit_124(env: Env, tmp_path: Path) -> None:
    vm = await make_vm(env)
    zcli = str(Path(sys.executable).with_name("zcli"))
    envvars = {**os.environ, "ZMN_ENDPOINT": endpoint(env), "ZMN_HOME": str(tmp_path / "zh")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([zcli, *args], env=envvars, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip

    ok = await asyncio.to_thread(run, "vm", "wait", "vm1", vm["uuid"], "--for", "running")
    assert ok.returncode == 0, ok.stderr
    assert "vm1" in ok.stdout
    late = await asyncio.to_thread(run, "vm", "wait", "vm1", "--for", "ip", "--timeout", "0.5")
    assert late.returncode == 124, late.stderr
    assert "VM_INSTANCE.WAIT_TIMEOUT" in late.stderr
    bad = await asyncio.to_thread(run, "vm", "wait", "vm1", "--for", "pingable")
    assert bad.returncode == 2 and "for" in bad.stderr


async def test_a_host_speaks_only_for_its_own_vms(env: Env) -> None:
    vm = await make_vm(env)
    nic = vm["vmNics"][0]
    lease = {"mac": nic["mac"], "ip": nic["ip"]}
    await env.node.bus.publish("/host/nic/leased", {"hostUuid": "f" * 32, "leases": [lease]})
    assert (await nic_of(env, vm))["leaseDate"] is None
    await env.node.bus.publish("/host/nic/leased", {"hostUuid": vm["hostUuid"], "leases": [lease]})
    assert (await nic_of(env, vm))["leaseDate"] is not None
