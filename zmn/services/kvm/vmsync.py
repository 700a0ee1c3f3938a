"""VM tracking on KVM hosts from the agent's truth.

Three inputs, each handled in a task of its own (bus subscribers must not block):

* ``/host/vm/report``: a signed libvirt lifecycle report from an agent (see ``callback.py``:
  forged, stale and replayed ones never get here). A report that says the state the database
  holds changes nothing (an agent reports in order: a later change brings a later report),
  nor does one about a VM in the middle of an operation on that host (the operation settles
  it). Any other only says *something changed*; the VM's state is then read from the agent
  (``/v1/vm/list``) under the VM's task-queue slot, so a late "stopped" for a VM the node has
  since started again changes nothing.
* ``/host/vm/states``: the domain list published after every (re)connect. VMs the database
  places on the host are synced against it; domains the node does not know are reported.
* ``/host/status/change``: a KVM host that goes Disconnected turns its Running and Paused
  VMs Unknown; the next connect's ``/host/vm/states`` brings them back (Running, Paused, or
  Stopped with their capacity given back).

A host that comes back after its VMs were started elsewhere (VM HA) still has their domains,
defined or even running: a domain of a VM the database places on *another* host is stale. It
is destroyed and undefined, never resumed, and ``/host/vm/stale`` says so (``staleDomains``
counts them). A VM in the middle of an operation (a migration has two domains on purpose) is\nleft alone.

Only VMs in a stable state are touched (an operation in progress owns its VM and settles it
itself), and only on hosts this node tracks (its ring share). Every change publishes the
VM's ``/vm/state/change`` and a ``/reconcile/drift`` item (check ``vm-hypervisor-state``);
a domain the node does not know, running on a host, is published on ``/host/vm/unknown``.

EIP attach/detach on a running VM (``/eip/attached``, ``/eip/detached``) re-sends that VM's
network state to its host, under the VM's slot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from zmn.api.errors import ZmnError
from zmn.core import crud
from zmn.core.db import utcnow
from zmn.core.service import Call
from zmn.services.host.hosttype import HostRef
from zmn.services.kvm.endpoint import REPORT_EVENT
from zmn.services.kvm.hosttype import STATES_EVENT
from zmn.services.kvm.vmops import ensure_bridges, vm_bridges

if TYPE_CHECKING:
    from zmn.core.bus import Event, Subscription
    from zmn.core.node import Node
    from zmn.services.kvm.hosttype import KvmHostType

log = logging.getLogger("zmn.kvm.vmsync")

HOST_STATUS_EVENT = "/host/status/change"
UNKNOWN_EVENT = "/host/vm/unknown"
STALE_EVENT = "/host/vm/stale"
DRIFT_EVENT = "/reconcile/drift"
STABLE = ("Running", "Paused", "Unknown")
SETTLED = (*STABLE, "Stopped")  # not Migrating (two domains on purpose), Starting...
# the agent's states -> the VM state they mean; anything else (Stopped, Crashed, NoState,
# or no domain at all) means the VM no longer runs there
TRUTH = {"Running": "Running", "Paused": "Paused", "Suspended": "Paused"}


class KvmVmSync:
    def __init__(self, node: Node, host_type: KvmHostType) -> None:
        self.node = node
        self.ht = host_type
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.handled = 0  # reports and listings processed (tests wait on it)
        self.stale_destroyed = 0
        self._placed: Any = None  # a VM's host and state: built once, for the fast path

    # ----------------------------------------------------------------- wiring

    def start(self) -> None:
        bus = self.node.bus
        self._subs = [
            bus.subscribe(REPORT_EVENT, self._spawn(self.on_report)),
            bus.subscribe(STATES_EVENT, self._spawn(self.on_states)),
            bus.subscribe(HOST_STATUS_EVENT, self._spawn(self.on_host_status)),
            bus.subscribe("/eip/attached", self._spawn(self.on_eip)),
            bus.subscribe("/eip/detached", self._spawn(self.on_eip)),
        ]

    async def stop(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs = []
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, handler: Any) -> Any:
        def callback(event: Event) -> None:
            task = asyncio.get_running_loop().create_task(self._guard(handler, dict(event.data)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return callback

    async def _guard(self, handler: Any, data: dict[str, Any]) -> None:
        try:
            await handler(data)
        except Exception:
            log.exception("KVM VM tracking failed on %s", data)
        finally:
            self.handled += 1

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until every handler started so far has finished (tests)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ----------------------------------------------------------------- helpers

    def _call(self) -> Call:
        return Call(self.node, self.node.admin_principal(), "SyncKvmVmStates")

    def _vm_model(self) -> Any:
        rt = self.node.resources.types.get("VmInstance")
        return None if rt is None else rt.model

    def _host(self, uuid: str) -> HostRef | None:
        rt = self.node.resources.types.get("Host")
        if rt is None:
            return None
        with self.node.db.tx() as s:
            row = s.get(rt.model, uuid)
            if row is None or row.hypervisorType != "KVM":
                return None
            return HostRef(row.uuid, row.name, row.managementIp, row.clusterUuid, "KVM")

    def _tracked(self, host_uuid: str) -> HostRef | None:
        if not host_uuid or not self.node.owns_resource(host_uuid):
            return None
        return self._host(host_uuid)

    async def _agent_states(self, host: HostRef) -> dict[str, str] | None:
        try:
            listing = await self.ht.client(host, self.ht.record(host.uuid)).get("/v1/vm/list")
        except ZmnError as exc:
            log.info("no VM list from host %s: %s", host.name, exc)
            return None
        return {
            str(d.get("uuid")): str(d.get("state"))
            for d in listing.get("vms") or []
            if isinstance(d, dict)
        }

    # ----------------------------------------------------------------- inputs

    async def on_report(self, data: dict[str, Any]) -> None:
        host_uuid = str(data.get("hostUuid") or "")
        uuid = str(data.get("vmUuid") or "")
        model = self._vm_model()
        if not uuid or model is None:
            return
        if not host_uuid or not self.node.owns_resource(host_uuid):
            return
        if self._placed is None:
            self._placed = select(model.hostUuid, model.state).where(
                model.uuid == bindparam("uuid")
            )
        # a report per event (three a start): only the two columns it needs, a statement
        # built once, below SQLAlchemy's per-statement machinery
        with self.node.db.fast() as conn:
            vm = conn.execute(self._placed, {"uuid": uuid}).first()
        reported = data.get("state")
        if vm is not None and vm.hostUuid == host_uuid:
            if vm.state not in STABLE:
                return  # an operation on this host owns the VM and settles it itself
            if reported and TRUTH.get(str(reported), "Stopped") == vm.state:
                return  # it says what the database holds: no need to ask the agent
        host = self._host(host_uuid)
        if host is None:
            return
        if vm is None:
            if reported in TRUTH:
                await self._unknown(host, uuid, str(reported), "report")
            return
        if vm.hostUuid != host_uuid:
            if reported in TRUTH:
                await self._stale(host, uuid, str(reported), "report", None)
            return
        await self._sync_one(host, uuid, None, "report")

    async def on_states(self, data: dict[str, Any]) -> None:
        host = self._tracked(str(data.get("hostUuid") or ""))
        model = self._vm_model()
        if host is None or model is None:
            return
        listed_at = data.get("time")
        truth = {
            str(v.get("vmUuid")): str(v.get("state"))
            for v in data.get("vms") or []
            if isinstance(v, dict)
        }
        with self.node.db.tx() as s:
            placed = list(
                s.scalars(
                    select(model.uuid).where(model.hostUuid == host.uuid, model.state.in_(STABLE))
                )
            )
            unknown = {u: st for u, st in truth.items() if st in TRUTH and s.get(model, u) is None}
            elsewhere = {
                u: st
                for u, st in truth.items()
                if (r := s.get(model, u)) is not None
                and r.hostUuid != host.uuid
                and (r.hostUuid is not None or st in TRUTH)
            }
        since = (
            dt.datetime.fromtimestamp(float(listed_at), dt.UTC).replace(tzinfo=None)
            if isinstance(listed_at, int | float)
            else None
        )
        for uuid in placed:
            await self._sync_one(host, uuid, truth.get(uuid, "Stopped"), "sync", since)
        for uuid, state in sorted(unknown.items()):
            await self._unknown(host, uuid, state, "sync")
        for uuid, state in sorted(elsewhere.items()):
            await self._stale(host, uuid, state, "sync", since)

    async def on_host_status(self, data: dict[str, Any]) -> None:
        if data.get("newState") != "Disconnected":
            return
        host = self._tracked(str(data.get("uuid") or ""))
        model = self._vm_model()
        if host is None or model is None:
            return
        with self.node.db.tx() as s:
            uuids = list(
                s.scalars(
                    select(model.uuid).where(
                        model.hostUuid == host.uuid, model.state.in_(("Running", "Paused"))
                    )
                )
            )
        for uuid in uuids:
            async with self.node.queues.vm(uuid, "SyncKvmVmStates"):
                await self._force(host, uuid, ("Running", "Paused"), "Unknown", "host Disconnected")

    async def on_eip(self, data: dict[str, Any]) -> None:
        nic = str(data.get("vmNicUuid") or "")
        found = self.ht.planner.nic_mac(nic) if nic else None
        model = self._vm_model()
        if found is None or model is None:
            return
        vm_uuid = found[1]
        async with self.node.queues.vm(vm_uuid, "SyncKvmVmNetwork"):
            rt = self.node.resources.get("VmInstance")
            with self.node.db.tx() as s:
                row = s.get(model, vm_uuid)
                if row is None or row.state not in STABLE or not row.hostUuid:
                    return
                inv = rt.inventories(s, [row])[0]
            host = self._tracked(str(inv["hostUuid"]))
            if host is None:
                return
            bridges = vm_bridges(self.ht, inv)
            body = self.ht.planner.vm_body(inv, bridges)
            client = self.ht.client(host, self.ht.record(host.uuid))
            await ensure_bridges(client, bridges)  # an EIP's public bridge may be new here
            await client.post("/v1/network/vm", body)

    # ----------------------------------------------------------------- changes

    async def _sync_one(
        self,
        host: HostRef,
        uuid: str,
        truth: str | None,
        source: str,
        since: dt.datetime | None = None,
    ) -> None:
        """Bring one VM in line with the host, under its slot. ``truth=None``: ask now."""
        async with self.node.queues.vm(uuid, "SyncKvmVmStates"):
            model = self._vm_model()
            with self.node.db.tx() as s:
                row = s.get(model, uuid)
                if row is None or row.hostUuid != host.uuid or row.state not in STABLE:
                    return  # an operation moved it meanwhile; it settled it itself
                if since is not None and row.lastOpDate and row.lastOpDate > since:
                    return  # changed after the listing was taken: the listing is stale
                state = row.state
            if truth is None:
                states = await self._agent_states(host)
                if states is None:
                    return
                truth = states.get(uuid, "Stopped")
            want = TRUTH.get(truth, "Stopped")
            if want == state:
                return
            why = f"{source}: the host says {truth}"
            await self._force(host, uuid, (state,), want, why, truth=truth)

    async def _force(
        self,
        host: HostRef,
        uuid: str,
        expect: tuple[str, ...],
        new: str,
        why: str,
        *,
        truth: str | None = None,
    ) -> None:
        """Set the VM's state (caller holds its slot); give capacity back when it stopped."""
        call = self._call()
        rt = self.node.resources.get("VmInstance")
        with self.node.db.tx() as s:
            row = s.get(rt.model, uuid)
            if row is None or row.state not in expect or row.hostUuid != host.uuid:
                return
            old, cpu, memory = row.state, int(row.cpuNum), int(row.memorySize)
            row.state = new
            if new == "Stopped":
                row.lastHostUuid = host.uuid
                row.hostUuid = None
            row.lastOpDate = utcnow()
            s.flush()
            inv = rt.inventories(s, [row])[0]
        if new == "Stopped":
            release = self.node.apis.get("ReleaseHostCapacity")
            await call.call(release(hostUuid=host.uuid, cpuNum=cpu, memorySize=memory))
            try:  # its reservations, rules and EIPs leave the host
                await self.ht.client(host, self.ht.record(host.uuid)).post(
                    "/v1/network/vm/remove", {"uuid": uuid}
                )
            except ZmnError as exc:
                log.warning("network state of VM %s not removed from %s: %s", uuid, host.name, exc)
        await crud.publish_state_change(call, rt, inv, old, new)
        message = f"VM {inv.get('name')} ({uuid}) on host {host.name}: {old} -> {new} ({why})"
        log.warning("%s", message)
        await call.publish(
            DRIFT_EVENT,
            {
                "check": "vm-hypervisor-state",
                "resourceType": "VmInstance",
                "uuid": uuid,
                "hostUuid": host.uuid,
                "expected": truth or new,
                "actual": old,
                "message": message,
                "fixed": True,
            },
        )

    async def _stale(
        self, host: HostRef, uuid: str, state: str, source: str, since: dt.datetime | None
    ) -> None:
        """Destroy and undefine a domain of a VM that the database places on another host
        (or, when running, on none): never resume it."""
        model = self._vm_model()
        async with self.node.queues.vm(uuid, "SyncKvmVmStates"):
            with self.node.db.tx() as s:
                row = s.get(model, uuid)
                if row is None or row.hostUuid == host.uuid or row.state not in SETTLED:
                    return  # an operation (start, migration) owns it and settles it itself
                if row.hostUuid is None and state not in TRUTH:
                    return  # a stopped VM's leftover definition: harmless, redefined at start
                if since is not None and row.lastOpDate and row.lastOpDate > since:
                    return  # changed after the listing was taken
                name, placed_on, vm_state = row.name, row.hostUuid, row.state
            client = self.ht.client(host, self.ht.record(host.uuid))
            try:
                await client.post("/v1/vm/destroy", {"uuid": uuid})
            except ZmnError as exc:
                log.error(
                    "stale domain of VM %s on host %s not destroyed: %s", uuid, host.name, exc
                )
                return
            try:
                await client.post("/v1/network/vm/remove", {"uuid": uuid})
            except ZmnError as exc:
                log.warning("network state of VM %s not removed from %s: %s", uuid, host.name, exc)
        self.stale_destroyed += 1
        message = (
            f"host {host.name} had a {state} domain of VM {name} ({uuid}), which is {vm_state}"
            f" on {placed_on or 'no host'}: destroyed and undefined, not resumed ({source})"
        )
        log.warning("%s", message)
        await self.node.bus.publish(
            STALE_EVENT,
            {
                "hostUuid": host.uuid,
                "vmUuid": uuid,
                "state": state,
                "vmState": vm_state,
                "vmHostUuid": placed_on,
                "source": source,
                "message": message,
            },
        )

    async def _unknown(self, host: HostRef, uuid: str, state: str, source: str) -> None:
        log.warning("host %s runs VM %s (%s) that the node does not know", host.name, uuid, state)
        await self.node.bus.publish(
            UNKNOWN_EVENT,
            {"hostUuid": host.uuid, "vmUuid": uuid, "state": state, "source": source},
        )
