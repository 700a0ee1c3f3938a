"""One way to stand up a KVM test cloud: namespaced hosts, a node, and its first resources.

Every KVM end-to-end test and the real-host benchmarks need the same things: a
:class:`~tests.support.datacenter.Datacenter` with some KVM hosts (sshd + libvirtd, a data NIC
for the L2), a store host for the image store, the guest image built once per run, a node
configured to reach them, and the usual zone/cluster/storage/image/offering/network records::

    with kvm_datacenter(tmp, kvm=("kvm1", "kvm2")) as dc:            # sync, module fixture
        async with running_node(home, conf=kvm_node_conf(dc, tmp)) as (node, server):
            api = Api(node)
            cloud = await build_kvm_cloud(api, dc)                      # records, by name

Names are fixed so tests read plainly: zone ``z1``, cluster ``kvm``, primary storage ``local``
(or the one the test adds), backup storage ``store``, image ``zguest``, offering ``small``
(1 vCPU, 256 MiB), L2 ``l2`` on ``eth1``, L3 ``l3`` with 10.79.0.10-99.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.conftest import need
from tests.support import guestimage
from tests.support.datacenter import Datacenter, NsHost, missing_libvirt, missing_tools
from tests.support.inproc import Api

LOCAL = "/var/lib/zagent/local"  # the local primary storage path on every host
STORE = "/var/lib/zagent/images"  # the image store's path on the store host
MiB = 1 << 20


def need_kvm_datacenter() -> None:
    """Skip (fail under CI=true) when this machine cannot make namespaced KVM hosts."""
    need(os.geteuid() == 0, "needs root (network and mount namespaces)")
    need(not missing_tools(), f"missing: {', '.join(missing_tools())}")
    need(not missing_libvirt(), f"missing: {', '.join(missing_libvirt())}")


@contextlib.contextmanager
def kvm_datacenter(
    root: Path,
    *,
    kvm: Sequence[str] = ("kvm1", "kvm2"),
    store: bool = True,
    nics: Sequence[str] = ("eth1",),
    image: bool = True,
) -> Iterator[Datacenter]:
    """A datacenter whose ``kvm`` hosts run sshd and libvirtd and have ``nics`` (for L2s),
    plus a ``store`` host (sshd only) when asked. ``dc.extra["image"]`` is the guest image's
    path when ``image`` is true (built once per run, in parallel with the libvirtds)."""
    need_kvm_datacenter()
    with Datacenter(root) as dc:
        hosts = [dc.add_host(n) for n in kvm]
        if store:
            dc.add_host("store")
        for h in dc.hosts:
            h.start_sshd()
        for h in hosts:
            for nic in nics:
                h.add_nic(nic)
        extra: dict[str, Any] = {}
        with ThreadPoolExecutor(len(hosts) + 1) as pool:
            built = pool.submit(guestimage.build) if image else None
            for f in [pool.submit(h.start_libvirtd) for h in hosts]:
                f.result()
            if built is not None:
                extra["image"] = built.result()
        dc.extra = extra  # type: ignore[attr-defined]
        yield dc


def kvm_node_conf(dc: Datacenter, tmp: Path, **extra: str) -> dict[str, str]:
    """The node's ``zmn.conf`` keys for a KVM test cloud: the agents' callback on the
    datacenter's bridge, a private wheelhouse, and ``file://`` images from the guest cache."""
    wheelhouse = tmp / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    conf = {
        "agent.callback.listen": f"{dc.gateway}:0",
        "kvm.wheelhouse": str(wheelhouse),
        "image.file.allowedDirs": str(guestimage.CACHE),
    }
    conf.update(extra)
    return conf


def kvm_hosts(dc: Datacenter) -> list[NsHost]:
    """The datacenter's KVM hosts (every host but the store)."""
    return [h for h in dc.hosts if h.name != "store"]


def ns_host(dc: Datacenter, name: str) -> NsHost:
    return next(h for h in dc.hosts if h.name == name)


async def build_kvm_cloud(
    api: Api,
    dc: Datacenter,
    *,
    local_storage: bool = True,
    network: bool = True,
    image: bool = True,
) -> dict[str, Any]:
    """Zone ``z1``, cluster ``kvm`` with every KVM host added (in parallel), local primary
    storage, the image store on the store host with the guest image, offering ``small`` and the
    ``l2``/``l3`` network. Returns ``{"hosts": {name: inventory}, "l3": inventory, ...}``."""
    key = str(dc.client_key)
    await api("CreateZone", name="z1")
    await api("CreateCluster", name="kvm", zoneUuid="z1", hypervisorType="KVM")
    added = await asyncio.gather(*(
        api("AddKvmHost", name=h.name, managementIp=h.ip, clusterUuid="kvm", sshPrivateKey=key)
        for h in kvm_hosts(dc)
    ))  # fmt: skip
    cloud: dict[str, Any] = {"hosts": {a["inventory"]["name"]: a["inventory"] for a in added}}
    if local_storage:
        await api("AddLocalPrimaryStorage", name="local", zoneUuid="z1", url=LOCAL)
        await api("AttachPrimaryStorageToCluster", primaryStorageUuid="local", clusterUuid="kvm")
    if image:
        store = ns_host(dc, "store")
        await api("AddImageStoreBackupStorage", name="store", url=STORE, hostname=store.ip,
                  sshPrivateKey=key)  # fmt: skip
        await api("AttachBackupStorageToZone", backupStorageUuid="store", zoneUuid="z1")
        cloud["image"] = (await api("AddImage", name="zguest", url=f"file://{dc.extra['image']}",  # type: ignore[attr-defined]
                                    format="qcow2", backupStorageUuids=["store"]))["inventory"]  # fmt: skip
    cloud["offering"] = (
        await api("CreateInstanceOffering", name="small", cpuNum=1, memorySize=256 * MiB)
    )["inventory"]
    if network:
        l2 = (await api("CreateL2NoVlanNetwork", name="l2", zoneUuid="z1",
                        physicalInterface="eth1"))["inventory"]  # fmt: skip
        await api("AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid="kvm")
        l3 = (await api("CreateL3Network", name="l3", l2NetworkUuid=l2["uuid"]))["inventory"]
        await api("AddIpRange", name="r", l3NetworkUuid=l3["uuid"], startIp="10.79.0.10",
                  endIp="10.79.0.99", netmask="255.255.255.0", gateway="10.79.0.1")  # fmt: skip
        cloud["l2"], cloud["l3"] = l2, l3
    return cloud


async def add_shared_storage(api: Api, dc: Datacenter, root: Path) -> dict[str, Any]:
    """A SharedMountPoint primary storage ``shared`` on cluster ``kvm``: a directory under the
    test's ``root`` (the hosts share the machine's file system but for their private dirs, so
    every namespaced host sees this one directory). Added and attached; its inventory (every
    KVM host of ``dc`` has checked the marker and sees it: ``status`` Connected)."""
    shared = root / "shared-ps"
    shared.mkdir(parents=True, exist_ok=True)
    await api("AddSharedMountPointPrimaryStorage", name="shared", zoneUuid="z1", url=str(shared))
    inv: dict[str, Any] = (
        await api("AttachPrimaryStorageToCluster", primaryStorageUuid="shared", clusterUuid="kvm")
    )["inventory"]
    return inv
