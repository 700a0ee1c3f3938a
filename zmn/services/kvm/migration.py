"""SSH trust between a cluster's KVM hosts for live migration (agent side: agent/migration.py).

Each host's agent owns a migration key whose private half never leaves the host
(``GET /v1/migration/key`` gives the public half). :func:`sync_trust` collects the public keys
of the cluster's reachable KVM hosts and pushes to each of them the others' keys (allowed
only from that peer's management address) with the SSH host keys the node pinned at
AddKvmHost (so the source's libvirtd verifies the target, never trusting on first use).

It runs after every connect (AddKvmHost, ReconnectHost, node boot) and again right before a
migration for the cluster of the two hosts, so a host that connected while its peers were
unreachable is trusted by the time a VM moves. Why not one key per cluster made by the node:
a private key the node holds and copies to every host is one more secret in the database
and on the wire; per-host keys keep each private key where it was made.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from zmn.api.errors import ZmnError
from zmn.services.host.hosttype import HostRef
from zmn.services.kvm.models import KvmHostVO

if TYPE_CHECKING:
    from zmn.services.kvm.hosttype import KvmHostType

log = logging.getLogger("zmn.kvm.migration")

REACHABLE = ("Connected", "Connecting")


def cluster_hosts(ht: KvmHostType, cluster_uuid: str) -> list[tuple[HostRef, KvmHostVO]]:
    """The cluster's KVM hosts the node talks to (connected, or connecting now)."""
    model = ht.node.resources.get("Host").model
    with ht.node.db.tx() as s:
        rows = s.execute(
            select(model, KvmHostVO)
            .join(KvmHostVO, KvmHostVO.uuid == model.uuid)
            .where(model.clusterUuid == cluster_uuid, model.status.in_(REACHABLE))
            .order_by(model.uuid)
        ).all()
        out = []
        for h, k in rows:
            s.expunge(k)
            ref = HostRef(h.uuid, h.name, h.managementIp, h.clusterUuid, h.hypervisorType)
            out.append((ref, k))
        return out


async def sync_trust(ht: KvmHostType, cluster_uuid: str, *, strict: tuple[str, ...] = ()) -> None:
    """Give every reachable host of the cluster the migration keys of the others.

    A host in ``strict`` that cannot be reached or configured raises (a migration between
    them would fail anyway, with a worse message); others are logged and skipped.
    """
    hosts = [(ref, row) for ref, row in cluster_hosts(ht, cluster_uuid) if row.hostKey]

    async def key(ref: HostRef, row: KvmHostVO) -> str | None:
        try:
            return str((await ht.client(ref, row).get("/v1/migration/key"))["publicKey"])
        except (ZmnError, KeyError) as exc:
            if ref.uuid in strict:
                raise
            log.info("migration key of host %s not read (%s); skipped", ref.name, exc)
            return None

    keys = await asyncio.gather(*(key(ref, row) for ref, row in hosts))
    peers: list[dict[str, Any]] = [
        {"ip": ref.managementIp, "publicKey": k, "hostKey": _key_only(str(row.hostKey))}
        for (ref, row), k in zip(hosts, keys, strict=True)
        if k is not None
    ]

    async def push(ref: HostRef, row: KvmHostVO) -> None:
        others = [p for p in peers if p["ip"] != ref.managementIp]
        try:
            await ht.client(ref, row).post("/v1/migration/peers", {"peers": others})
        except ZmnError as exc:
            if ref.uuid in strict:
                raise
            log.info("migration peers of host %s not set (%s); skipped", ref.name, exc)

    await asyncio.gather(
        *(push(ref, row) for (ref, row), k in zip(hosts, keys, strict=True) if k is not None)
    )


def _key_only(host_key: str) -> str:
    """``<type> <base64>`` of a pinned host key (a comment, if any, dropped)."""
    return " ".join(host_key.split()[:2])
