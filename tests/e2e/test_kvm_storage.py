"""Host storage for real: local primary storage on namespaced KVM hosts, an image store
reached over SSH, images from file:// and http://, VMs whose root volume is a qcow2 overlay.

Three namespaced machines with sshd: ``kvm1`` and ``kvm2`` (libvirtd, agent deployed by
``AddKvmHost``) and ``store`` (the image store's machine). Their ``/var/lib/zagent`` is
private to each, so the local storage directory and the image store directory are really
per machine. A real node (in-process) drives them through the API.

Needs root, openssh-server, libvirt/QEMU and qemu-img (scripts/system-deps.sh).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import json
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.datacenter import Datacenter, NsHost
from tests.support.inproc import Api, running_node
from tests.support.kvmcloud import kvm_datacenter
from zmn.api.errors import ZmnError

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
    with kvm_datacenter(tmp_path_factory.mktemp("dcs"), image=False) as center:
        yield center


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A qcow2 image on the node's machine, also served by http.server on loopback."""
    root = tmp_path_factory.mktemp("images")
    img = root / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "48M"], check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield {
            "path": img,
            "sha256": hashlib.sha256(img.read_bytes()).hexdigest(),
            "http": f"http://127.0.0.1:{httpd.server_address[1]}",
        }
    finally:
        httpd.shutdown()
        httpd.server_close()


class Env:
    def __init__(self, api: Api, dc: Datacenter, hosts: dict[str, dict[str, Any]]) -> None:
        self.api, self.dc, self.hosts = api, dc, hosts

    def ns(self, name: str) -> NsHost:
        return next(h for h in self.dc.hosts if h.name == name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(
    dc: Datacenter, images: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    conf = {
        "agent.callback.listen": f"{dc.gateway}:0",
        "kvm.wheelhouse": str(tmp_path_factory.mktemp("wheelhouse")),
        # the test's images: a directory on the node's machine and a loopback http server
        "image.file.allowedDirs": str(images["path"].parent),
        "image.url.allowedHosts": "127.0.0.1",
    }
    async with running_node(tmp_path_factory.mktemp("home"), conf=conf) as (node, _server):
        api = Api(node)
        await api("CreateZone", name="z1")
        await api("CreateCluster", name="kvm", zoneUuid="z1", hypervisorType="KVM")
        names = ("kvm1", "kvm2")
        key = str(dc.client_key)
        added = await asyncio.gather(
            *(
                api("AddKvmHost", name=n, managementIp=h.ip, clusterUuid="kvm", sshPrivateKey=key)
                for n, h in zip(names, dc.hosts, strict=False)
            )
        )
        yield Env(api, dc, {a["inventory"]["name"]: a["inventory"] for a in added})


def qemu_info(h: NsHost, path: str) -> dict[str, Any]:
    return json.loads(h.run(["qemu-img", "info", "-U", "--output=json", path]).stdout)


def snapshot_list(h: NsHost, path: str) -> list[str]:
    """Names from ``qemu-img snapshot -l`` run in the host's namespaces."""
    out = h.run(["qemu-img", "snapshot", "-U", "-l", path]).stdout
    return [line.split()[1] for line in out.splitlines()[2:] if line.strip()]


async def test_local_storage_images_and_volumes_on_kvm_hosts(env: Env, images: dict) -> None:
    api = env.api
    kvm1, kvm2, store = env.ns("kvm1"), env.ns("kvm2"), env.ns("store")
    # --- local primary storage: a directory on each host, capacity from the agents
    ps = (await api("AddLocalPrimaryStorage", name="local", zoneUuid="z1", url=LOCAL))["inventory"]
    assert ps["type"] == "LocalStorage" and ps["totalCapacity"] == 0
    ps = (await api("AttachPrimaryStorageToCluster", primaryStorageUuid="local",
                    clusterUuid="kvm"))["inventory"]  # fmt: skip
    sizes = []
    for h in (kvm1, kvm2):
        assert h.exists(f"{LOCAL}/cache") and h.exists(f"{LOCAL}/volumes")
        blocks, frsize = h.run(["stat", "-f", "-c", "%b %S", LOCAL]).stdout.split()
        sizes.append(int(blocks) * int(frsize))
    assert ps["totalCapacity"] == sum(sizes) == ps["availableCapacity"]
    assert 0 < ps["availablePhysicalCapacity"] <= ps["totalPhysicalCapacity"] == sum(sizes)
    with pytest.raises(ZmnError) as bad:
        await api("AddLocalPrimaryStorage", name="rel", zoneUuid="z1", url="relative/dir")
    assert bad.value.field == "url"

    # --- image store over SSH, host key pinned
    bs = (await api("AddImageStoreBackupStorage", name="store", url=STORE, hostname=store.ip,
                    sshPrivateKey=str(env.dc.client_key)))["inventory"]  # fmt: skip
    assert bs["type"] == "ImageStoreBackupStorage" and bs["status"] == "Connected"
    assert bs["totalCapacity"] > 0 and store.exists(f"{STORE}/images")
    await api("AttachBackupStorageToZone", backupStorageUuid="store", zoneUuid="z1")

    # --- AddImage from file:// and http://, size and checksum recorded
    size = images["path"].stat().st_size
    by_file = (await api("AddImage", name="img-file", url=f"file://{images['path']}",
                         format="qcow2", backupStorageUuids=["store"]))["inventory"]  # fmt: skip
    by_http = (await api("AddImage", name="img-http", url=f"{images['http']}/tiny.qcow2",
                         format="qcow2", backupStorageUuids=["store"]))["inventory"]  # fmt: skip
    for img in (by_file, by_http):
        assert img["status"] == "Ready" and img["size"] == 48 * MiB
        assert img["actualSize"] == size and img["checksum"] == "sha256:" + images["sha256"]
        path = img["backupStorageRefs"][0]["installPath"]
        assert path == f"{STORE}/images/{img['uuid']}.qcow2"
        assert store.run(["sha256sum", path]).stdout.split()[0] == images["sha256"]
    bs = (await api("QueryBackupStorage", conditions=["name=store"]))["inventories"][0]
    for url, why in ((f"file://{images['path']}.missing", "no such file"),
                     (f"{images['http']}/missing.qcow2", "404")):  # fmt: skip
        with pytest.raises(ZmnError) as bad:
            await api("AddImage", name="bad", url=url, format="qcow2", backupStorageUuids=["store"])
        assert bad.value.field == "url" and why in bad.value.message, bad.value
    assert not (await api("QueryImage", conditions=["name=bad"]))["inventories"]

    # --- a VM on kvm1: its root volume is an overlay on the image cached on kvm1
    await api("CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=64 * MiB)
    l2 = await api("CreateL2NoVlanNetwork", name="l2", zoneUuid="z1", physicalInterface="eth1")
    await api("AttachL2NetworkToCluster", l2NetworkUuid=l2["inventory"]["uuid"], clusterUuid="kvm")
    l3 = await api("CreateL3Network", name="l3", l2NetworkUuid=l2["inventory"]["uuid"])
    await api("AddIpRange", name="r", l3NetworkUuid=l3["inventory"]["uuid"], startIp="10.78.0.10",
              endIp="10.78.0.99", netmask="255.255.255.0", gateway="10.78.0.1")  # fmt: skip
    vm = (await api("CreateVmInstance", name="vm1", imageUuid="img-http",
                    instanceOfferingUuid="tiny", l3NetworkUuids=["l3"],
                    hostUuid=env.hosts["kvm1"]["uuid"]))["inventory"]  # fmt: skip
    assert vm["state"] == "Running"
    root = next(v for v in vm["allVolumes"] if v["type"] == "Root")
    assert root["primaryStorageUuid"] == ps["uuid"] and root["installPath"].startswith(LOCAL)
    cache = f"{LOCAL}/cache/{by_http['uuid']}.qcow2"
    assert kvm1.run(["sha256sum", cache]).stdout.split()[0] == images["sha256"]
    meta = qemu_info(kvm1, root["installPath"])
    assert meta["format"] == "qcow2" and meta["backing-filename"] == cache
    assert meta["virtual-size"] == 48 * MiB
    assert root["installPath"] in kvm1.virsh("domblklist", vm["uuid"])
    assert not kvm2.exists(root["installPath"]) and not kvm2.exists(cache)

    # --- data volume: made on kvm1 at attach, hot-plugged, unplugged
    await api("CreateDiskOffering", name="d16", diskSize=16 * MiB)
    data = (await api("CreateDataVolume", name="data1", diskOfferingUuid="d16"))["inventory"]
    data = (await api("AttachDataVolumeToVm", volumeUuid=data["uuid"],
                      vmInstanceUuid=vm["uuid"]))["inventory"]  # fmt: skip
    assert qemu_info(kvm1, data["installPath"])["virtual-size"] == 16 * MiB
    assert data["installPath"] in kvm1.virsh("domblklist", vm["uuid"])
    await api("DetachDataVolumeFromVm", uuid=data["uuid"])
    # gone from the domain's definition at once; the live unplug completes when the guest
    # acknowledges it (ACPI), which this guest without an OS never does
    assert data["installPath"] not in kvm1.virsh("domblklist", "--inactive", vm["uuid"])

    # --- a snapshot of the running VM's root volume: an internal qcow2 snapshot
    snap = (await api("CreateVolumeSnapshot", volumeUuid=root["uuid"], name="s1"))["inventory"]
    names = [s["name"] for s in qemu_info(kvm1, root["installPath"]).get("snapshots") or []]
    assert snap["uuid"] in names

    # --- migration with local storage is refused, saying why
    with pytest.raises(ZmnError) as refused:
        await api("MigrateVm", vmInstanceUuid=vm["uuid"], hostUuid=env.hosts["kvm2"]["uuid"])
    assert "local" in refused.value.message, refused.value
    assert kvm1.virsh("domstate", vm["uuid"]).strip() == "running"

    # --- VM stopped (its transient domain gone), data volume detached: snapshots, revert
    # and delete go to kvm1's agent, which runs qemu-img on the files
    await api("StopVmInstance", uuid=vm["uuid"])
    assert vm["uuid"] not in kvm1.virsh("list", "--all", "--name")
    s2 = (await api("CreateVolumeSnapshot", volumeUuid=root["uuid"], name="s2"))["inventory"]
    assert snapshot_list(kvm1, root["installPath"]) == [snap["uuid"], s2["uuid"]]
    d1 = (await api("CreateVolumeSnapshot", volumeUuid=data["uuid"], name="d1"))["inventory"]
    # the running VM's snapshot (QEMU savevm) covered every disk QEMU still had, the data
    # volume whose unplug the guest never acknowledged included
    assert snapshot_list(kvm1, data["installPath"]) == [snap["uuid"], d1["uuid"]]
    assert not kvm2.exists(data["installPath"])
    await api("RevertVolumeFromSnapshot", uuid=snap["uuid"])
    await api("DeleteVolumeSnapshot", uuid=s2["uuid"])
    assert snapshot_list(kvm1, root["installPath"]) == [snap["uuid"]]
    # started again, the running VM's snapshot is deleted through QEMU's monitor
    await api("StartVmInstance", uuid=vm["uuid"])
    assert kvm1.virsh("domstate", vm["uuid"]).strip() == "running"
    await api("DeleteVolumeSnapshot", uuid=snap["uuid"])
    assert snapshot_list(kvm1, root["installPath"]) == []

    # --- capacity: volumes take their bytes; a reconnect reports again, nothing drifts
    ps = (await api("QueryPrimaryStorage", conditions=["name=local"]))["inventories"][0]
    assert ps["availableCapacity"] == ps["totalCapacity"] - root["size"] - data["size"]
    await api("ReconnectHost", uuid=env.hosts["kvm1"]["uuid"])
    again = (await api("QueryPrimaryStorage", conditions=["name=local"]))["inventories"][0]
    assert again["totalCapacity"] - again["availableCapacity"] == root["size"] + data["size"]

    # --- expunge deletes the root volume's file; deleting the data volume deletes its file
    await api("DestroyVmInstance", uuid=vm["uuid"])
    if (await api("QueryVmInstance", conditions=[f"uuid={vm['uuid']}"]))["inventories"]:
        await api("ExpungeVmInstance", uuid=vm["uuid"])
    assert not kvm1.exists(root["installPath"]) and kvm1.exists(cache)
    await api("DeleteDataVolume", uuid=data["uuid"])
    assert not kvm1.exists(data["installPath"])
    await api("DeleteImage", uuid="img-file")
    assert not store.exists(by_file["backupStorageRefs"][0]["installPath"])
