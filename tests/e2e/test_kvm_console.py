"""The serial console of a real VM, through the management node, from ``zcli`` in a
pseudo-terminal; the graphical console behind a password on the host's address.

One namespaced KVM host (libvirtd, agent deployed over SSH) and an image store; the VM boots
the project's guest image (:mod:`tests.support.guestimage`) under TCG. ``zcli vm console``
runs as a subprocess in a pty (pexpect) against the node's API socket: the login prompt, a
root login, a command's output, a reboot typed in the console shows the kernel's boot
banner, and ``Ctrl-]`` returns to the shell with exit status 0.

Needs root, openssh-server, libvirt/QEMU and qemu-img (scripts/system-deps.sh).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
import pytest_asyncio

from tests.support.datacenter import Datacenter
from tests.support.inproc import Api, running_node
from tests.support.kvmcloud import build_kvm_cloud, kvm_datacenter, kvm_node_conf, ns_host

pytestmark = [
    pytest.mark.root,
    pytest.mark.sshd,
    pytest.mark.libvirt,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

LOCAL = "/var/lib/zagent/local"
STORE = "/var/lib/zagent/images"
MiB = 1 << 20


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datacenter]:
    with kvm_datacenter(tmp_path_factory.mktemp("dcc"), kvm=("kvm1",)) as center:
        yield center


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(dc: Datacenter, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    tmp = tmp_path_factory.mktemp("home")
    async with running_node(tmp / "home", conf=kvm_node_conf(dc, tmp)) as (node, _server):
        api = Api(node)
        kvm = ns_host(dc, "kvm1")
        await build_kvm_cloud(api, dc)
        await api("UpdateGlobalConfig", category="kvm", name="vm.graphics", value="vnc")
        vm = (await api("CreateVmInstance", name="tty1", imageUuid="zguest",
                        instanceOfferingUuid="small", l3NetworkUuids=["l3"]))["inventory"]  # fmt: skip
        yield {"api": api, "node": node, "dc": dc, "vm": vm, "host": kvm}


def zcli_env(cloud: Any) -> dict[str, str]:
    home = cloud["dc"].root / "zcli-home"
    return {**os.environ, "ZMN_ENDPOINT": f"unix:{cloud['node'].config.unix_path}",
            "ZMN_HOME": str(home), "TERM": "vt100"}  # fmt: skip


def zcli() -> str:
    return str(Path(sys.executable).with_name("zcli"))


async def test_console_login_command_reboot_banner_and_detach(cloud: Any) -> None:
    def drive() -> tuple[int, str]:
        child = pexpect.spawn(zcli(), ["vm", "console", "tty1"], env=zcli_env(cloud),
                              timeout=480, encoding="utf-8", codec_errors="replace")  # fmt: skip
        seen = []
        try:
            child.expect("Escape character is")
            child.send("\r")  # the getty prints its prompt again
            child.expect("login: ")
            seen.append(child.before)
            child.send("root\r")
            child.expect("# ")
            child.send("echo console-$((6*7))\r")
            child.expect("console-42")
            child.send("reboot\r")  # QEMU restarts the guest in place: the console stays
            child.expect("Linux version [^\r\n]*cloud-amd64")
            child.expect("login: ")
            child.sendcontrol("]")
            child.expect("detached")
            child.expect(pexpect.EOF)
        finally:
            child.close()
        return int(child.exitstatus if child.exitstatus is not None else -1), "".join(seen)

    status, _ = await asyncio.to_thread(drive)
    assert status == 0


async def test_vm_wait_for_ip_and_ssh_then_get_shows_the_lease(cloud: Any) -> None:
    def run(*args: str) -> tuple[str, int]:
        out, status = pexpect.run(" ".join([zcli(), *args]), env=zcli_env(cloud),
                                  withexitstatus=True, timeout=500, encoding="utf-8")  # fmt: skip
        return str(out), int(status)

    out, status = await asyncio.to_thread(run, "vm", "wait", "tty1", "--for", "ssh",
                                          "--timeout", "480")  # fmt: skip
    assert status == 0, out
    out, status = await asyncio.to_thread(run, "-o", "json", "vm", "get", "tty1")
    assert status == 0, out
    data = json.loads(out)
    nic = data.get("inventory", data)["vmNics"][0]
    assert nic["ip"].startswith("10.79.0.") and nic["leaseDate"], nic
    # the address dnsmasq gave is the node's, as the agent saw it in the lease file
    leases = cloud["host"].read(f"/var/lib/zagent/dnsmasq/{nic['l3NetworkUuid']}/leases")
    assert f"{nic['mac']} {nic['ip']} " in leases


async def test_a_second_console_is_refused_unless_forced(cloud: Any) -> None:
    def drive() -> tuple[int, int, str]:
        env = zcli_env(cloud)
        first = pexpect.spawn(zcli(), ["vm", "console", "tty1"], env=env, timeout=60,
                              encoding="utf-8", codec_errors="replace")  # fmt: skip
        try:
            first.expect("Escape character is")
            second = pexpect.run(f"{zcli()} vm console tty1", env=env, withexitstatus=True,
                                 timeout=60, encoding="utf-8")  # fmt: skip
            out, busy = second
            assert "VM_INSTANCE.CONSOLE_BUSY" in out, out
            forced = pexpect.spawn(zcli(), ["vm", "console", "tty1", "--force"], env=env,
                                   timeout=60, encoding="utf-8", codec_errors="replace")  # fmt: skip
            forced.expect("Escape character is")
            first.expect("console closed")
            first.expect(pexpect.EOF)
            first.close()
            forced.sendcontrol("]")
            forced.expect(pexpect.EOF)
            forced.close()
            return int(busy), int(first.exitstatus or 0), str(forced.exitstatus)
        finally:
            first.close(force=True)

    busy, first_status, forced_status = await asyncio.to_thread(drive)
    assert busy == 4 and first_status == 1 and forced_status == "0"


async def test_vnc_listens_on_the_management_address_with_a_password(cloud: Any) -> None:
    api, vm, host = cloud["api"], cloud["vm"], cloud["host"]
    inv = (await api("RequestConsoleAccess", vmInstanceUuid=vm["uuid"]))["inventory"]
    assert inv["scheme"] == "vnc" and inv["hostname"] == host.ip and inv["port"] >= 5900
    assert len(inv["password"]) == 8
    listening = host.run(["ss", "-Hltn"]).stdout
    vnc = [line.split()[3] for line in listening.splitlines() if f":{inv['port']}" in line]
    assert vnc == [f"{host.ip}:{inv['port']}"], listening
    assert "0.0.0.0:59" not in listening and "[::]:59" not in listening

    def rfb_security_types() -> list[int]:
        with socket.create_connection((inv["hostname"], inv["port"]), timeout=10) as s:
            version = s.recv(12)
            assert version.startswith(b"RFB 003.")
            s.sendall(b"RFB 003.008\n")
            count = s.recv(1)[0]
            return list(s.recv(count))

    assert await asyncio.to_thread(rfb_security_types) == [2]  # VNC authentication only


async def test_console_of_a_stopped_vm_is_a_clear_error(cloud: Any) -> None:
    api, vm = cloud["api"], cloud["vm"]
    await api("StopVmInstance", uuid=vm["uuid"], type="cold")
    out, status = await asyncio.to_thread(
        pexpect.run, f"{zcli()} vm console tty1", env=zcli_env(cloud), withexitstatus=True,
        timeout=60, encoding="utf-8",
    )  # fmt: skip
    assert status == 4 and "VM_INSTANCE.NOT_RUNNING" in out and "zcli vm start tty1" in out
