"""VM operations on a KVM host: the VM inventory turned into zagent commands.

``HypervisorOp`` (host service) calls :meth:`KvmHostType.vm_op`, which lands here. Start
makes sure each NIC's L2 bridge exists on the host (``/v1/network/bridge``), then sends the
VM description to ``/v1/vm/start`` as a long command answered through the callback. Stop
powers off (gracefully unless ``type=cold``) and undefines the domain, as ZStack keeps
KVM domains transient; destroy undefines it.

The L2 of each NIC is read through the resource registry (``L3Network`` -> ``L2Network``)
rather than by importing the network service. The bridge is named as ZStack does:
``br_<interface>`` for NoVlan, ``br_<interface>_<vlan>`` for Vlan networks.

Host networking (:mod:`zmn.services.kvm.hostnet`): before the domain starts, the VM's NICs
with their IPAM addresses go to ``/v1/network/vm`` (dnsmasq reservations, EIP NAT); stop and
destroy take them away again (``/v1/network/vm/remove``).

Volumes (:mod:`zmn.services.kvm.storage`): before the domain starts, volumes on local primary
storage are made by the agent (a root volume as a qcow2 overlay on its cached image); volumes
on other storage types are made empty by the deployer over SSH, which still gives a real
domain. attachVolume, detachVolume and takeSnapshot go there too.

Online changes (:mod:`zmn.services.kvm.online`): attachNic / detachNic hot-plug a NIC with
its bridge and network state; changeCpuMemory hot-adds vCPUs and memory up to the maxima the
start fixed (``maxCpuNum`` / ``maxMemorySize`` in the start body).

Migrate (:func:`migrate`): a VM with volumes on local storage is refused
(``KVM.MIGRATE_LOCAL_STORAGE``). Otherwise the target host gets what the VM needs before the
domain arrives (its L2 bridges, its volumes, its network state: reservations and EIPs), the
source agent live-migrates the domain (``/v1/vm/migrate``, long: libvirt peer-to-peer,
tunnelled through ``qemu+ssh://root@TARGET/system`` with the trust of
:mod:`zmn.services.kvm.migration`), and only then does the source forget the VM's network state.
A failed migration takes the state off the target again; the source keeps its own. The
security-group rules follow through the VM service's after-migrate hook (the security-group
service pushes them to the target and clears the source).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zmn.api.errors import OperationFailed, ZmnError
from zmn.services.host.hosttype import HostRef
from zmn.services.kvm import migration, online, storage
from zmn.services.kvm.agentclient import AgentBatch
from zmn.services.kvm.console import graphics_spec
from zmn.services.kvm.hostnet import nic_device
from zmn.services.kvm.iso import cdrom_for_start, change_media, iso_tag
from zmn.services.kvm.reads import reading, row_of, system_tags, tag_value
from zmn.services.kvm.seed import seed_body

if TYPE_CHECKING:
    from zmn.services.kvm.hosttype import KvmHostType
    from zmn.services.kvm.reads import Reader

log = logging.getLogger("zmn.kvm.vm")

SUPPORTED = ("start", "stop", "destroy", "reboot", "pause", "resume", "migrate", "attachIso",
             "detachIso", "attachNic", "detachNic", "changeCpuMemory", "locate")  # fmt: skip


def bridge_name(physical: str, vlan: int | None) -> str:
    name = f"br_{physical}" if vlan is None else f"br_{physical}_{vlan}"
    return name[:15]


def l2_of_nics(
    ht: KvmHostType, nics: list[Mapping[str, Any]], conn: Reader | None = None
) -> dict[str, dict[str, Any]]:
    """L3 UUID -> the agent's ``/v1/network/bridge`` body for its L2."""
    types = ht.node.resources.types
    l3_rt, l2_rt = types.get("L3Network"), types.get("L2Network")
    out: dict[str, dict[str, Any]] = {}
    if l3_rt is None or l2_rt is None:
        return out
    with reading(ht.node, conn) as s:
        for nic in nics:
            l3_uuid = str(nic.get("l3NetworkUuid") or "")
            l3 = row_of(s, l3_rt.model, l3_uuid)
            l2 = row_of(s, l2_rt.model, l3.l2NetworkUuid) if l3 is not None else None
            if l2 is None:
                raise OperationFailed(
                    f"NIC {nic.get('uuid')}: no L2 network for L3 {l3_uuid}",
                    code="KVM.NO_L2",
                )
            vlan = int(l2.vlan) if l2.vlan is not None else None
            out[l3_uuid] = {
                "bridgeName": bridge_name(l2.physicalInterface, vlan),
                "physicalInterface": l2.physicalInterface,
                **({"vlan": vlan} if vlan is not None else {}),
            }
    return out


def vm_bridges(
    ht: KvmHostType, vm: Mapping[str, Any], conn: Reader | None = None
) -> dict[str, dict[str, Any]]:
    """:func:`l2_of_nics` for the VM's NICs and for the VIPs of its EIPs (public side)."""
    with reading(ht.node, conn) as s:
        refs = list(vm.get("vmNics") or [])
        refs += [{"l3NetworkUuid": l3} for l3 in ht.planner.vip_l3s(vm, s)]
        return l2_of_nics(ht, refs, s)


async def ensure_bridges(client: Any, bridges: Mapping[str, Mapping[str, Any]]) -> None:
    for l2 in {b["bridgeName"]: b for b in bridges.values()}.values():
        await client.post("/v1/network/bridge", dict(l2))


def vm_spec(vm: Mapping[str, Any], bridges: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``/v1/vm/start`` body's ``vm`` from the VM inventory."""
    uuid = str(vm["uuid"])
    disks = [
        storage.disk_of(v)
        for v in sorted(vm.get("allVolumes") or [], key=lambda v: int(v.get("deviceId") or 0))
        if v.get("installPath") and v.get("deviceId") is not None
    ]
    nics = [
        {
            "mac": n["mac"],
            "bridge": bridges[str(n["l3NetworkUuid"])]["bridgeName"],
            "deviceName": nic_device(uuid, int(n.get("deviceId") or 0)),
        }
        for n in sorted(vm.get("vmNics") or [], key=lambda n: int(n.get("deviceId") or 0))
    ]
    return {
        "uuid": uuid,
        "name": str(vm.get("name") or uuid),
        "description": str(vm.get("description") or ""),
        "cpuNum": int(vm["cpuNum"]),
        "memorySize": int(vm["memorySize"]),
        "disks": disks,
        "nics": nics,
    }


async def vm_op(
    ht: KvmHostType, host: HostRef, op: str, vm: Mapping[str, Any], args: Mapping[str, Any]
) -> dict[str, Any]:
    if op in storage.STORAGE_OPS:
        row = ht.record(host.uuid)
        return await storage.vm_storage_op(ht, host, ht.client(host, row), op, vm, args)
    if op not in SUPPORTED:
        raise OperationFailed(
            f"VM operation {op} is not supported on KVM hosts yet",
            code="KVM.UNSUPPORTED_OPERATION",
            operation=op,
        )
    row = ht.record(host.uuid)
    client = ht.client(host, row)
    timeout = float(ht.node.global_config.get("kvm", "task.timeout"))
    uuid = str(vm["uuid"])
    if op == "start":
        volumes = [dict(v) for v in vm.get("allVolumes") or [] if v.get("deviceId") is not None]
        with ht.node.db.fast() as s:  # all the start reads, before the first agent command
            tags = system_tags(s, uuid)
            bridges = vm_bridges(ht, vm, s)
            network = ht.planner.vm_body(vm, bridges, s, tags)
            seed = seed_body(ht, vm, s, tags)
            roots = storage.volume_roots(ht, volumes, s)
        # bridges, volume files, network and the start go in one request (AgentBatch)
        ahead = AgentBatch()
        await ensure_bridges(ahead, bridges)
        await storage.prepare_volumes(ht, host, client, volumes, roots, creates=ahead)
        spec = vm_spec(vm, bridges)
        spec.update({k: int(args[k]) for k in ("maxCpuNum", "maxMemorySize") if args.get(k)})
        iso = tag_value(tags, "iso")
        cdrom, spec["bootDevices"] = await cdrom_for_start(ht, host, client, vm, iso)
        spec["disks"].append(cdrom)
        graphics = str(ht.node.global_config.get("kvm", "vm.graphics"))
        spec.update(graphics_spec(graphics, host.managementIp))
        if seed is not None:
            spec["seed"] = seed
        # reservations (and EIPs) before the start, so dnsmasq knows the guest before it asks
        await ahead.post("/v1/network/vm", network)
        try:
            result = await ht.endpoint.run_task(
                client, host.uuid, "/v1/vm/start", {"vm": spec}, timeout, before=ahead
            )
        except BaseException:
            await _forget_network(client, uuid)
            raise
        return {"state": result.get("state", "Running")}
    if op == "stop":
        cold = str(args.get("type") or "") == "cold"
        try:
            await ht.endpoint.run_task(
                client, host.uuid, "/v1/vm/stop", {"uuid": uuid, "force": cold}, timeout
            )
        except ZmnError as exc:
            if exc.kind != "NotFound":  # not on the host (any more): stopped is stopped
                raise
        await client.post("/v1/vm/destroy", {"uuid": uuid})  # transient, like ZStack
        await _forget_network(client, uuid)
        return {"state": "Stopped"}
    if op == "destroy":
        await client.post("/v1/vm/destroy", {"uuid": uuid})
        await _forget_network(client, uuid)
        return {"state": "Destroyed"}
    if op in ("attachIso", "detachIso"):
        iso = str(args["iso"]["uuid"]) if op == "attachIso" else None
        return await change_media(ht, host, client, vm, iso)
    if op in ("attachNic", "detachNic"):
        return await online.hotplug_nic(ht, client, op, vm, dict(args["nic"]))
    if op == "changeCpuMemory":
        body = {"uuid": uuid, "cpuNum": int(args["cpuNum"]), "memorySize": int(args["memorySize"])}
        return {"state": vm.get("state"), **await client.post("/v1/vm/set-cpu-memory", body)}
    if op == "locate":  # is the domain on this host (crash recovery of a migration)
        for dom in (await client.get("/v1/vm/list")).get("vms") or []:
            if str(dom.get("uuid") or "").replace("-", "") == uuid:
                return {"present": True, "state": dom.get("state")}
        return {"present": False, "state": None}
    if op == "migrate":
        return await migrate(ht, host, client, vm, str(args.get("targetHostUuid") or ""), timeout)
    if op == "reboot":
        result = await ht.endpoint.run_task(
            client, host.uuid, "/v1/vm/reboot", {"uuid": uuid}, timeout
        )
        return {"state": result.get("state", "Running")}
    result = await client.post(f"/v1/vm/{op}", {"uuid": uuid})  # pause, resume
    return {"state": result.get("state")}


async def migrate(
    ht: KvmHostType,
    host: HostRef,
    client: Any,
    vm: Mapping[str, Any],
    target_uuid: str,
    timeout: float,
) -> dict[str, Any]:
    """Live-migrate ``vm`` from ``host`` to ``target_uuid``, moving its network state."""
    storage.check_migratable(ht, vm)
    uuid = str(vm["uuid"])
    target = storage.host_ref(ht, target_uuid) if target_uuid else None
    if target is None or target.hypervisorType != "KVM" or target.uuid == host.uuid:
        raise OperationFailed(
            f"VM {vm.get('name')}: migration target {target_uuid or '(none)'} is not another"
            " KVM host",
            code="KVM.MIGRATE_TARGET",
            targetHostUuid=target_uuid,
        )
    tclient = ht.client(target, ht.record(target.uuid))
    # the storage first: a target that does not see the VM's shared storage is refused
    # (PRIMARY_STORAGE.HOST_NOT_CONNECTED, with its reason) before anything is put there
    volumes = [dict(v) for v in vm.get("allVolumes") or [] if v.get("deviceId") is not None]
    await storage.prepare_volumes(ht, target, tclient, volumes)
    bridges = vm_bridges(ht, vm)
    await ensure_bridges(tclient, bridges)
    # the files the domain names outside its volumes: its cloud-init seed (made per host,
    # at the same path) and an attached ISO (in the target's image cache)
    seed = seed_body(ht, vm)
    if seed is not None:
        await tclient.post("/v1/vm/seed", {"uuid": uuid, "seed": seed})
    await cdrom_for_start(ht, target, tclient, vm, iso_tag(ht, uuid))
    await tclient.post("/v1/network/vm", ht.planner.vm_body(vm, bridges))
    try:
        await migration.sync_trust(ht, host.clusterUuid, strict=(host.uuid, target.uuid))
        result = await ht.endpoint.run_task(
            client,
            host.uuid,
            "/v1/vm/migrate",
            {"uuid": uuid, "destHost": target.managementIp},
            timeout,
        )
    except BaseException:
        await _forget_network(tclient, uuid)
        if seed is not None:
            await _quiet(tclient.post("/v1/vm/seed", {"uuid": uuid, "seed": None}), "seed", uuid)
        raise
    await _forget_network(client, uuid)
    return {"state": "Running", "migrated": result}


async def _quiet(work: Any, what: str, uuid: str) -> None:
    try:
        await work
    except ZmnError as exc:
        log.warning("%s of VM %s not removed from the migration target: %s", what, uuid, exc)


async def _forget_network(client: Any, uuid: str) -> None:
    """The VM's reservations, rules and EIPs leave the host (logged when that fails: the
    next change on that host, or the VM's next start there, rewrites the state anyway)."""
    try:
        await client.post("/v1/network/vm/remove", {"uuid": uuid})
    except ZmnError as exc:
        log.warning("network state of VM %s not removed from %s: %s", uuid, client, exc)
