"""The HA monitor: heartbeat config to every KVM agent, death decisions, restarts.

Every ``ha.storage.heartbeatInterval`` seconds, for the KVM hosts this node owns:

1. ``POST /v1/ha/config`` to each agent: its shared primary storages (where it writes its
   heartbeat), its ``ha::NeverStop`` VMs (what it fences) and the fencing timeouts. An answer
   is the "agent answered" sign of :mod:`zmn.services.ha.judge`; the push is also the
   contact that keeps the agent from fencing itself.
2. For each host whose agent did not answer: its heartbeat on each of its shared storages,
   read by a peer host that answered and uses the same storage (``POST /v1/ha/heartbeat``).
3. A host judged dead: each of its NeverStop VMs whose volumes are all on shared storage is
   stopped in the database (capacity given back to the dead host) and started through
   ``StartVmInstance`` (the allocator picks a Connected host). VMs with a volume on local
   storage stay where they are, with a ``/vm/ha/skipped`` event. A failed start is retried
   with exponential backoff (``ha.restart.retryInterval`` doubling up to
   ``ha.restart.maxBackoff``); ``vm_ha_status`` (``zcli vm-ha list``) shows the reason.

Every restart publishes ``/vm/ha/restarted`` or ``/vm/ha/restart-failed`` and writes an audit
row (API ``HaRestartVmInstance``, peer ``ha``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import column, select, table

from zmn.api.errors import ZmnError
from zmn.core import crud
from zmn.core.audit import ApiCallRecord, notify
from zmn.core.db import in_slices, utcnow
from zmn.core.models import TagVO
from zmn.core.service import Call
from zmn.services.ha.judge import HostWatch
from zmn.services.ha.models import VmHaStatusVO
from zmn.services.host.hosttype import HostRef, HostType
from zmn.services.host.ops import set_status

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.ha")

NEVER_STOP = "ha::NeverStop"
# primary storage types every host of a cluster sees at one path (SharedMountPoint: its url;
# NFS: where the agents mount it, mountPath)
SHARED_TYPES = frozenset({"SharedMountPoint", "NFS"})
PLACED = ("Running", "Paused", "Unknown")
DEAD_EVENT = "/ha/host/dead"
RESTARTED_EVENT = "/vm/ha/restarted"
FAILED_EVENT = "/vm/ha/restart-failed"
SKIPPED_EVENT = "/vm/ha/skipped"

_PS_CLUSTER = table(
    "primary_storage_cluster_ref", column("primaryStorageUuid"), column("clusterUuid")
)


@dataclass(frozen=True)
class SharedStorage:
    uuid: str
    path: str


def storage_path(
    ps_type: str, url: str, mount_path: str | None, shared: frozenset[str] = SHARED_TYPES
) -> str | None:
    """Where hosts see a shared primary storage (None: not shared, or no absolute path)."""
    if ps_type not in shared:
        return None
    path = mount_path or url
    return path if path.startswith("/") else None


class HaMonitor:
    def __init__(self, node: Node, clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.clock = clock
        self.shared_types = SHARED_TYPES  # tests add "Simulator" (a directory they share)
        self.watches: dict[str, HostWatch] = {}
        self.dead: dict[str, str] = {}  # host uuid -> the verdict's reason (until it answers)
        self.rounds = 0
        self._task: asyncio.Task[None] | None = None
        self._restarts: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- settings

    def _cfg(self, name: str) -> float:
        return float(self.node.global_config.get("ha", name))

    @property
    def interval(self) -> float:
        return self._cfg("storage.heartbeatInterval")

    def agent_settings(self) -> dict[str, float]:
        """Fencing comes first: half the node's timeouts (docs/ha.md, "Timing")."""
        return {
            "interval": self.interval,
            "fenceTimeout": self._cfg("host.detectTimeout") / 2,
            "writeGrace": self._cfg("storage.heartbeatTimeout") / 2,
        }

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._restarts) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("HA round failed")
            await asyncio.sleep(self.interval)

    # ----------------------------------------------------------------- reading

    def _kvm(self) -> Any:
        return self.node.extensions.first(HostType, hypervisor_type="KVM")  # type: ignore[type-abstract]

    def _hosts(self) -> list[HostRef]:
        rt = self.node.resources.types.get("Host")
        if rt is None:
            return []
        m = rt.model
        with self.node.db.tx() as s:
            rows = s.execute(
                select(m.uuid, m.name, m.managementIp, m.clusterUuid).where(
                    m.hypervisorType == "KVM"
                )
            ).all()
        return [
            HostRef(r[0], r[1], r[2], r[3], "KVM") for r in rows if self.node.owns_resource(r[0])
        ]

    def _storages(self, cluster_uuid: str) -> list[SharedStorage]:
        rt = self.node.resources.types.get("PrimaryStorage")
        if rt is None:
            return []
        m = rt.model
        with self.node.db.tx() as s:
            rows = s.execute(
                select(m.uuid, m.type, m.url, m.mountPath)
                .join(_PS_CLUSTER, _PS_CLUSTER.c.primaryStorageUuid == m.uuid)
                .where(_PS_CLUSTER.c.clusterUuid == cluster_uuid)
            ).all()
        out = []
        for uuid, ps_type, url, mount in rows:
            path = storage_path(ps_type, url, mount, self.shared_types)
            if path is not None:
                out.append(SharedStorage(uuid, path))
        return sorted(out, key=lambda p: p.uuid)

    def _ha_vms(self, host_uuid: str) -> list[str]:
        vm = self.node.resources.get("VmInstance").model
        with self.node.db.tx() as s:
            return list(
                s.scalars(
                    select(vm.uuid)
                    .join(TagVO, TagVO.resourceUuid == vm.uuid)
                    .where(
                        vm.hostUuid == host_uuid,
                        TagVO.type == "System",
                        TagVO.tag == NEVER_STOP,
                    )
                    .order_by(vm.uuid)
                )
            )

    # ----------------------------------------------------------------- a round

    async def round(self) -> None:
        kvm = self._kvm()
        if kvm is None:
            return
        now = self.clock()
        hosts = self._hosts()
        per_cluster = {c: self._storages(c) for c in {h.clusterUuid for h in hosts}}
        storages = {h.uuid: per_cluster[h.clusterUuid] for h in hosts}
        for h in hosts:
            watch = self.watches.setdefault(h.uuid, HostWatch(h.uuid, now))
            watch.use_storages({p.uuid for p in storages[h.uuid]})
        for gone in set(self.watches) - {h.uuid for h in hosts}:
            del self.watches[gone]
        answers = await asyncio.gather(
            *(self._push(kvm, h, storages[h.uuid]) for h in hosts), return_exceptions=True
        )
        now = self.clock()
        alive = [h for h, ok in zip(hosts, answers, strict=True) if ok is True]
        for h in alive:
            self.watches[h.uuid].answered(now)
            if self.dead.pop(h.uuid, None) is not None:
                log.warning("HA: host %s answers again", h.name)
        lost = [h for h in hosts if h not in alive]
        for h in lost:
            await self._read_heartbeats(kvm, h, storages[h.uuid], alive, storages)
        detect = self._cfg("host.detectTimeout")
        hb_timeout = self._cfg("storage.heartbeatTimeout")
        for h in lost:
            verdict = self.watches[h.uuid].verdict(self.clock(), detect, hb_timeout)
            if not verdict.dead:
                continue
            if h.uuid not in self.dead:
                self.dead[h.uuid] = verdict.reason
                log.error("HA: host %s is dead: %s", h.name, verdict.reason)
                await self._disconnect(h)
                await self.node.bus.publish(
                    DEAD_EVENT, {"hostUuid": h.uuid, "hostName": h.name, "reason": verdict.reason}
                )
            peer = next((p for p in alive if set(storages[p.uuid]) & set(storages[h.uuid])), None)
            for vm_uuid in self._ha_vms(h.uuid):
                self._spawn(self.restart(vm_uuid, h, peer))
        await self._retry_due()
        self.rounds += 1

    async def _disconnect(self, host: HostRef) -> None:
        """A dead host is Disconnected before its VMs restart, so that the allocator (which
        prefers a VM's last host) cannot pick it; the tracker reconnects it when it answers."""
        rt = self.node.resources.get("Host")
        with self.node.db.tx() as s:
            row = s.get(rt.model, host.uuid)
            status = None if row is None else row.status
        if status != "Connected":
            return
        call = Call(self.node, self.node.admin_principal(), "HaHostDead")
        try:
            async with self.node.queues.slot(f"host:{host.uuid}", 1, "HaHostDead"):
                await set_status(call, host.uuid, "disconnected")
        except ZmnError as exc:
            log.warning("HA: host %s not marked Disconnected: %s", host.name, exc)

    async def _push(self, kvm: Any, host: HostRef, storages: list[SharedStorage]) -> bool:
        body = {
            **self.agent_settings(),
            "storage": [{"uuid": p.uuid, "path": p.path} for p in storages],
            "haVms": self._ha_vms(host.uuid),
        }
        try:
            # short: a dead host must not stretch the round, whose pushes are every other
            # agent's contact (their fenceTimeout runs between two of them)
            timeout = max(1.0, min(self.interval, self._cfg("host.detectTimeout") / 8))
            client = kvm.client(host, kvm.record(host.uuid), timeout=timeout)
            await client.post("/v1/ha/config", body)
        except ZmnError as exc:
            log.info("HA: no answer from the agent of host %s: %s", host.name, exc.message)
            return False
        return True

    async def _read_heartbeats(
        self,
        kvm: Any,
        host: HostRef,
        mine: list[SharedStorage],
        alive: list[HostRef],
        storages: dict[str, list[SharedStorage]],
    ) -> None:
        watch = self.watches[host.uuid]
        for ps in mine:
            peers = [p for p in alive if ps in storages[p.uuid]]
            for peer in peers:  # the first peer that can read it
                try:
                    client = kvm.client(
                        peer, kvm.record(peer.uuid), timeout=max(2.0, self.interval)
                    )
                    beat = await client.post(
                        "/v1/ha/heartbeat", {"path": ps.path, "hostUuid": host.uuid}
                    )
                except ZmnError as exc:
                    log.info("HA: host %s cannot read %s: %s", peer.name, ps.path, exc.message)
                    continue
                counter = None if beat.get("missing") else int(beat.get("counter", -1))
                watch.heartbeat(ps.uuid, counter, self.clock())
                break

    # ----------------------------------------------------------------- restarts

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def idle(self, timeout: float = 60.0) -> None:
        """Wait for the restarts started so far (tests)."""
        deadline = time.monotonic() + timeout
        while self._restarts and time.monotonic() < deadline:
            await asyncio.gather(*list(self._restarts), return_exceptions=True)

    def _status(self, vm_uuid: str) -> VmHaStatusVO | None:
        with self.node.db.tx() as s:
            row = s.get(VmHaStatusVO, vm_uuid)
            if row is not None:
                s.expunge(row)
            return row

    def _save(self, vm_uuid: str, **values: Any) -> None:
        with self.node.db.tx() as s:
            row = s.get(VmHaStatusVO, vm_uuid)
            if row is None:
                row = VmHaStatusVO(uuid=vm_uuid)
                s.add(row)
            for k, v in values.items():
                setattr(row, k, v)
            row.lastOpDate = utcnow()

    def _volumes_shared(self, vm_uuid: str) -> bool:
        vol = self.node.resources.get("Volume").model
        ps = self.node.resources.get("PrimaryStorage").model
        with self.node.db.tx() as s:
            rows = s.execute(
                select(ps.type, ps.url, ps.mountPath)
                .join(vol, vol.primaryStorageUuid == ps.uuid)
                .where(vol.vmInstanceUuid == vm_uuid)
            ).all()
        return bool(rows) and all(
            storage_path(t, u, m, self.shared_types) is not None for t, u, m in rows
        )

    async def _in_use(self, vm_uuid: str, peer: HostRef | None) -> list[str]:
        """The VM's volume files a running QEMU still holds, as a live peer sees them."""
        kvm = self._kvm()
        if peer is None or kvm is None:
            return []
        vol = self.node.resources.get("Volume").model
        with self.node.db.tx() as s:
            paths = [
                p
                for p in s.scalars(select(vol.installPath).where(vol.vmInstanceUuid == vm_uuid))
                if p and p.startswith("/")
            ]
        if not paths:
            return []
        try:
            client = kvm.client(peer, kvm.record(peer.uuid), timeout=30.0)
            answer = await client.post("/v1/ha/volume-lock", {"paths": paths})
        except ZmnError as exc:
            log.info("HA: host %s could not check the disks of VM %s: %s", peer.name, vm_uuid, exc)
            return []
        return [str(p) for p in answer.get("locked") or []]

    async def restart(self, vm_uuid: str, dead: HostRef, peer: HostRef | None = None) -> None:
        """Take the VM off the dead host and start it elsewhere (once per death)."""
        call = Call(self.node, self.node.admin_principal(), "HaRestartVmInstance")
        rt = self.node.resources.get("VmInstance")
        async with self.node.queues.vm(vm_uuid, "HaRestartVmInstance"):
            with self.node.db.tx() as s:
                row = s.get(rt.model, vm_uuid)
                if row is None or row.hostUuid != dead.uuid or row.state not in PLACED:
                    return  # moved or settled meanwhile
                name = row.name
            if not self._volumes_shared(vm_uuid):
                if (self._status(vm_uuid) or VmHaStatusVO(state="")).state != "Skipped":
                    reason = "a volume is on local storage: never restarted elsewhere"
                    self._save(vm_uuid, name=name, deadHostUuid=dead.uuid, state="Skipped",
                               lastError=reason)  # fmt: skip
                    await call.publish(
                        SKIPPED_EVENT, {"vmUuid": vm_uuid, "hostUuid": dead.uuid, "reason": reason}
                    )
                    log.warning(
                        "HA: VM %s on dead host %s not restarted: %s", name, dead.name, reason
                    )
                return
            locked = await self._in_use(vm_uuid, peer)
            if locked:  # its QEMU still runs (the agent died, not the host): never a 2nd copy
                reason = f"volume {locked[0]} is still in use by a running QEMU; not restarted"
                if (self._status(vm_uuid) or VmHaStatusVO(lastError="")).lastError != reason:
                    self._save(vm_uuid, name=name, deadHostUuid=dead.uuid, state="Waiting",
                               lastError=reason)  # fmt: skip
                    await call.publish(
                        SKIPPED_EVENT, {"vmUuid": vm_uuid, "hostUuid": dead.uuid, "reason": reason}
                    )
                    log.warning("HA: VM %s on dead host %s: %s", name, dead.name, reason)
                return  # checked again next round
            with self.node.db.tx() as s:
                row = s.get(rt.model, vm_uuid)
                if row is None:  # deleted meanwhile (DestroyVmInstance does not wait on us)
                    return
                old, cpu, memory = row.state, int(row.cpuNum), int(row.memorySize)
                row.state = "Stopped"
                row.lastHostUuid = dead.uuid
                row.hostUuid = None
                row.lastOpDate = utcnow()
                s.flush()
                inv = rt.inventories(s, [row])[0]
            release = self.node.apis.get("ReleaseHostCapacity")
            await call.call(release(hostUuid=dead.uuid, cpuNum=cpu, memorySize=memory))
            await crud.publish_state_change(call, rt, inv, old, "Stopped")
            self._save(vm_uuid, name=name, deadHostUuid=dead.uuid, hostUuid=None,
                       state="Restarting", attempts=0, lastError=None, nextAttemptDate=None)  # fmt: skip
        await self._start(vm_uuid, dead.uuid)

    async def _start(self, vm_uuid: str, dead_uuid: str | None) -> None:
        status = self._status(vm_uuid)
        attempt = (status.attempts if status else 0) + 1
        start = self.node.apis.get("StartVmInstance")
        msg = start(uuid=vm_uuid)
        record = ApiCallRecord("HaRestartVmInstance", "ha", "", None)
        record.spec, record.principal, record.message = (
            type(msg).__api__,
            self.node.admin_principal(),
            msg,
        )
        t0 = time.monotonic()
        call = Call(self.node, self.node.admin_principal(), "HaRestartVmInstance")
        try:
            result = await call.call(msg)
        except ZmnError as exc:
            record.error, record.seconds = exc.code, time.monotonic() - t0
            notify(self.node, record)
            base = self._cfg("restart.retryInterval")
            delay = min(self._cfg("restart.maxBackoff"), base * 2 ** (attempt - 1))
            nxt = utcnow() + dt.timedelta(seconds=delay)
            self._save(vm_uuid, state="RestartFailed", attempts=attempt,
                       lastError=f"{exc.code}: {exc.message}", nextAttemptDate=nxt)  # fmt: skip
            log.error(
                "HA: restart %d of VM %s failed (%s); next in %g s", attempt, vm_uuid, exc, delay
            )
            await call.publish(
                FAILED_EVENT,
                {"vmUuid": vm_uuid, "fromHostUuid": dead_uuid, "attempt": attempt,
                 "error": exc.code, "message": exc.message, "retryInSeconds": delay},
            )  # fmt: skip
            return
        record.result, record.seconds = result, time.monotonic() - t0
        notify(self.node, record)
        inv = result.get("inventory") if isinstance(result, dict) else None
        host = inv.get("hostUuid") if isinstance(inv, dict) else None
        self._save(vm_uuid, state="Restarted", hostUuid=host, attempts=attempt, lastError=None,
                   nextAttemptDate=None)  # fmt: skip
        log.warning("HA: VM %s restarted on host %s (attempt %d)", vm_uuid, host, attempt)
        await call.publish(
            RESTARTED_EVENT,
            {"vmUuid": vm_uuid, "fromHostUuid": dead_uuid, "toHostUuid": host, "attempt": attempt},
        )

    async def _retry_due(self) -> None:
        """Start again the VMs whose failed restart is due (still Stopped, on no host, still
        ``NeverStop``). The HA table is read first and alone: it holds a row per VM HA ever
        restarted, a handful, while a join led by the VM table let the planner walk every
        Stopped VM (77 ms a round at 1,000,000 VMs, a round every few seconds)."""
        vm = self.node.resources.get("VmInstance").model
        with self.node.db.tx() as s:
            failed = dict(
                s.execute(
                    select(VmHaStatusVO.uuid, VmHaStatusVO.deadHostUuid).where(
                        VmHaStatusVO.state == "RestartFailed",
                        VmHaStatusVO.nextAttemptDate <= utcnow(),
                    )
                ).all()
            )
            still: set[str] = set()
            for uuids in in_slices(sorted(failed)):
                still.update(
                    s.scalars(
                        select(vm.uuid)
                        .join(TagVO, TagVO.resourceUuid == vm.uuid)
                        .where(
                            vm.uuid.in_(uuids),
                            vm.state == "Stopped",
                            vm.hostUuid.is_(None),
                            TagVO.tag == NEVER_STOP,
                        )
                    )
                )
        due = [(uuid, dead) for uuid, dead in failed.items() if uuid in still]
        for vm_uuid, dead_uuid in due:
            if self.node.owns_resource(vm_uuid):
                self._save(vm_uuid, state="Restarting", nextAttemptDate=None)
                self._spawn(self._start(vm_uuid, dead_uuid))
