"""A VM you can use, on namespaced KVM hosts with real libvirtd and QEMU (TCG).

The guest image (:mod:`tests.support.guestimage`, built once per run) goes in with
``AddImage url=file://``; zcli (a subprocess) creates a VM from it with ``--ssh-key-file``,
``--user-data-file`` and a ``hostname::`` tag. Then, from the host's namespace: SSH with the
injected key reaches the guest (dropbear) on the address the node allocated, which ran the
user data and took the seed's host name; a reboot shows the boot on the serial console (boot
loader, kernel banner, seed, login prompt) through ``virsh console``. A template is refused
while the VM runs, made once it is stopped, and a VM from it on the other host has the file
the first one wrote. New keys on a stopped VM rebuild its seed: the new key logs in.

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

from tests.integration.test_zcli import Zcli
from tests.support import guestimage
from tests.support.datacenter import Datacenter, NsHost
from tests.support.inproc import Api, running_node
from tests.support.kvmcloud import build_kvm_cloud, kvm_datacenter, kvm_node_conf

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
SSH = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR")  # fmt: skip
USER_DATA = "#cloud-config\nruncmd:\n  - echo from-user-data > /root/user-data.out\n"


@pytest.fixture(scope="module")
def dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Datacenter]:
    with kvm_datacenter(tmp_path_factory.mktemp("dcg")) as center:
        yield center


class Env:
    def __init__(self, api: Api, dc: Datacenter, zcli: Zcli, hosts: dict[str, Any]) -> None:
        self.api, self.dc, self.zcli, self.hosts = api, dc, zcli, hosts

    def ns(self, name: str) -> NsHost:
        return next(h for h in self.dc.hosts if h.name == name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(dc: Datacenter, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("guest-kvm")
    async with running_node(tmp / "home", conf=kvm_node_conf(dc, tmp)) as (node, server):
        api = Api(node)
        cloud = await build_kvm_cloud(api, dc)
        zcli = Zcli(tmp, node, server)
        zcli.env["ZMN_ENDPOINT"] = f"unix:{node.config.unix_path}"
        yield Env(api, dc, zcli, cloud["hosts"])


def keypair(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "guest", "-f", str(path)],
                   check=True)  # fmt: skip
    return path


async def guest_ssh(h: NsHost, ip: str, key: Path, command: str, timeout: float = 150) -> str:
    """Run ``command`` in the guest over SSH from host ``h``; retried until the guest is up."""
    deadline = time.monotonic() + timeout
    while True:
        out = await asyncio.to_thread(
            h.run, ["ssh", *SSH, "-i", str(key), f"root@{ip}", command], check=False
        )
        if out.returncode == 0:
            return out.stdout
        assert time.monotonic() < deadline, f"ssh {ip}: {out.returncode} {out.stderr}"
        await asyncio.sleep(2)


async def create(env: Env, name: str, *args: str) -> dict[str, Any]:
    run = await env.zcli.ok("-o", "json", "vm", "create", name, "instanceOfferingUuid=small",
                            "l3NetworkUuids=l3", *args)  # fmt: skip
    inv: dict[str, Any] = run.json()
    return inv


async def test_a_vm_from_the_guest_image_boots_takes_its_seed_and_makes_a_template(
    env: Env, tmp_path: Path
) -> None:
    import pexpect

    key = keypair(tmp_path / "id")
    ud = tmp_path / "user-data"
    ud.write_text(USER_DATA)
    kvm1, kvm2 = env.ns("kvm1"), env.ns("kvm2")
    vm = await create(env, "g1", "imageUuid=zguest", f"hostUuid={env.hosts['kvm1']['uuid']}",
                      "--ssh-key-file", f"{key}.pub", "--user-data-file", str(ud),
                      "systemTags=hostname::guest1")  # fmt: skip
    assert vm["state"] == "Running"
    ip = vm["vmNics"][0]["ip"]
    blk = kvm1.virsh("domblklist", vm["uuid"])
    assert f"/var/lib/zagent/seeds/{vm['uuid']}.iso" in blk  # the seed, as a CD-ROM
    out = await guest_ssh(kvm1, ip, key, "hostname; cat /root/user-data.out; ip -4 addr show eth0")
    assert out.splitlines()[:2] == ["guest1", "from-user-data"] and f"inet {ip}/" in out

    # the boot on the serial console: attach, reboot the guest, watch it come back
    console = pexpect.spawn(" ".join(kvm1.argv(["virsh", "console", "--force", vm["uuid"]])),
                            encoding="utf-8", timeout=120)  # fmt: skip
    try:
        console.expect("Escape character")
        await guest_ssh(kvm1, ip, key, "sync; reboot")
        for banner in ("SYSLINUX", "Linux version", "ZGUEST-SEED", "guest1 login:"):
            await asyncio.to_thread(console.expect, banner)
    finally:
        console.terminate(force=True)

    await guest_ssh(kvm1, ip, key, "echo made-in-g1 > /root/mark; sync")
    refused = await env.zcli("image", "create-template", "name=tpl",
                             f"rootVolumeUuid={vm['rootVolumeUuid']}")  # fmt: skip
    assert refused.rc == 4 and "IMAGE.VM_NOT_STOPPED" in refused.err, refused.err
    await env.zcli.ok("vm", "stop", "g1")
    tpl = (await env.zcli.ok("-o", "json", "image", "create-template", "name=tpl",
                             f"rootVolumeUuid={vm['rootVolumeUuid']}")).json()  # fmt: skip
    assert tpl["status"] == "Ready" and tpl["checksum"].startswith("sha256:")
    assert env.ns("store").exists(tpl["backupStorageRefs"][0]["installPath"])

    key2 = keypair(tmp_path / "id2")
    vm2 = await create(env, "g2", "imageUuid=tpl", f"hostUuid={env.hosts['kvm2']['uuid']}",
                       "--ssh-key-file", f"{key}.pub", "systemTags=hostname::guest2")  # fmt: skip
    ip2 = vm2["vmNics"][0]["ip"]
    out = await guest_ssh(kvm2, ip2, key, "hostname; cat /root/mark")
    assert out.split() == ["guest2", "made-in-g1"]

    # new keys on the stopped VM: a new seed (new instance ID), the new key logs in
    await env.zcli.ok("vm", "stop", "g2")
    await env.zcli.ok("vm", "update", "g2", "--ssh-key-file", f"{key2}.pub")
    await env.zcli.ok("vm", "start", "g2")
    out = await guest_ssh(kvm2, ip2, key2, "cat /var/lib/zguest/instance-id")
    assert out.strip().startswith("iid-")


async def test_isos_boot_first_attach_live_and_a_simulator_only_iso_is_refused(env: Env) -> None:
    api, kvm1, kvm2 = env.api, env.ns("kvm1"), env.ns("kvm2")
    iso = await asyncio.to_thread(guestimage.build_iso)
    await api("AddImage", name="ziso", url=f"file://{iso}", format="iso", mediaType="ISO",
              backupStorageUuids=["store"])  # fmt: skip
    await api("CreateDiskOffering", name="d64", diskSize=64 * MiB)
    # a VM from the ISO: its root disk is empty, so only the CD-ROM (first in the boot order)
    # can have booted the probe that takes the DHCP lease and powers off
    vm = await create(env, "from-iso", "imageUuid=ziso", "rootDiskOfferingUuid=d64",
                      f"hostUuid={env.hosts['kvm1']['uuid']}")  # fmt: skip
    nic = vm["vmNics"][0]
    leases = f"/var/lib/zagent/dnsmasq/{nic['l3NetworkUuid']}/leases"
    deadline = time.monotonic() + 120
    while f"{nic['mac']} {nic['ip']} " not in (kvm1.read(leases) if kvm1.exists(leases) else ""):
        assert time.monotonic() < deadline, "the ISO did not boot"
        await asyncio.sleep(1)

    # hot: into the running g2's CD-ROM drive and out again
    g2 = (await env.zcli.ok("-o", "json", "vm", "get", "g2")).json()
    cache = f"{LOCAL}/cache/{(await api('QueryImage', conditions=['name=ziso']))['inventories'][0]['uuid']}.iso"
    await env.zcli.ok("vm", "attach-iso", "g2", "isoUuid=ziso")
    assert cache in kvm2.virsh("domblklist", g2["uuid"])
    await env.zcli.ok("vm", "detach-iso", "g2")
    assert cache not in kvm2.virsh("domblklist", g2["uuid"])

    # an ISO only on a simulator backup storage cannot reach a KVM host: refused, not recorded
    await api("AddSimulatorBackupStorage", name="sim", url="/sim/bs", totalCapacity=1 << 40)
    await api("AttachBackupStorageToZone", backupStorageUuid="sim", zoneUuid="z1")
    await api("AddImage", name="sim-iso", url="http://example.invalid/x.iso", format="iso",
              mediaType="ISO", backupStorageUuids=["sim"])  # fmt: skip
    refused = await env.zcli("vm", "attach-iso", "g2", "isoUuid=sim-iso")
    assert refused.rc != 0 and "KVM.IMAGE_NOT_FETCHABLE" in refused.err, refused.err
    tags = await api("QuerySystemTag", conditions=[f"resourceUuid={g2['uuid']}", "tag~=iso::%"])
    assert tags["inventories"] == []
