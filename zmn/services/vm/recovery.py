"""After a crash: roll back the VM chains this node was running, and settle stranded VMs.

The VM chains go through the shared recovery (:func:`zmn.core.recovery.recover_chains`) with
their hooks: every run this node left Running or RollingBack is rolled back in reverse (the
step in progress too: each undo only undoes what its run recorded; ``vm-create`` first settles
a row a twin may own), then ``settle`` puts the VM in the state the failed operation would
have left it in; a ``vm-start``/``vm-create`` run that was done when the node died is
finished (``finish``: the VM becomes Running, the job succeeds). A VM still in a
transitional state with no running job anywhere (the node died between two steps of a
handler) becomes Unknown when it holds a host, Stopped otherwise, Error if never created.
The job that ran the chain (already Interrupted by the core) gets the recovery written into
its error: the chain, the step it stopped at and what was done about it.

:class:`Reconciler` runs every ``vm/reconcile.interval`` seconds: it compares each VM the
database places on a Connected host it owns with the hypervisor's own state (a VM that is gone
there becomes Stopped, by one conditional UPDATE, and whoever made that UPDATE gives its
capacity back; Running/Paused follow the hypervisor), puts host
CPU/memory back to total minus what the placed VMs take (on the hosts it owns, once the drift
holds still: see :meth:`Reconciler._confirmed_capacity_drift`), and reports every other
invariant violation (IPs, storage, NICs). Each drift is logged and published on ``/reconcile/drift``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, or_, select, update

from zmn.core import crud
from zmn.core.bus import Envelope
from zmn.core.consistency import ConsistencyCheck, Violation
from zmn.core.db import utcnow
from zmn.core.flow import FlowContext
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.models import AccountResourceRefVO, FlowRecordVO, JobVO, ReservationVO, TagVO
from zmn.core.recovery import ChainRecovery, recover_chains
from zmn.core.service import Call, send
from zmn.services.vm.common import host_status, load_vm, set_state
from zmn.services.vm.models import VmInstanceVO
from zmn.services.vm.states import TRANSITIONAL

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.vm.recovery")

VM_CHAINS = (
    "vm-create",
    "vm-start",
    "vm-stop",
    "vm-reboot",
    "vm-pause",
    "vm-resume",
    "vm-migrate",
    "vm-destroy",
    "vm-expunge",
)
# the state a VM goes back to when its chain is rolled back after a crash
AFTER = {"vm-start": "Stopped", "vm-expunge": "Destroyed", "vm-create": "Error"}


async def recover(node: Node, of_node: str | None = None) -> int:
    """Roll back interrupted VM chains of a node (this one by default, or an evicted one this
    node took over), finish the runs whose chain was done, settle stranded VMs; returns how
    many VMs changed state."""
    settled = 0

    async def settle(ctx: FlowContext) -> None:
        nonlocal settled
        uuid = ctx.data.get("vmUuid")
        if uuid:
            back = AFTER.get(ctx.chain) or ctx.data.get("from") or "Unknown"
            settled += await _settle(ctx.call, uuid, back)

    specs = {
        chain: ChainRecovery(
            finish=_finish if chain in FINISH else None,
            finish_running=False,  # the caller was never answered: a run cut there is undone
            prepare=_prepare_create_undo if chain == "vm-create" else None,
            settle=settle,
        )
        for chain in VM_CHAINS
    }
    done = await recover_chains(node, specs, of_node=of_node, api="RecoverInterruptedVmOperations")
    finished = sum(1 for r in done if r.outcome == "Done")
    call = Call(node, node.admin_principal(), "RecoverInterruptedVmOperations")
    return settled + finished + await _stranded(call)


# chain -> (the transitional state its handler leaves, the event it then applies)
FINISH = {"vm-start": ("Starting", "running"), "vm-create": ("Starting", "running")}


async def _finish(ctx: FlowContext) -> dict[str, Any] | None:
    """Finish a VM operation whose chain was done when the node died but whose handler had not
    yet moved the VM to its final state (a create left Starting becomes Running, not
    Unknown). None when the VM is settled already, or changed since."""
    data, chain = ctx.data, ctx.chain
    uuid = data.get("vmUuid")
    if not uuid:
        return None
    state, event = FINISH[chain]
    fields: dict[str, Any] = {}
    if chain == "vm-create" and data.get("strategy", "InstantStart") != "InstantStart":
        state, event = "Created", "stopped"
    elif data.get("hostUuid"):
        fields["lastHostUuid"] = data["hostUuid"]
    with ctx.call.tx() as s:
        current = s.scalar(select(VmInstanceVO.state).where(VmInstanceVO.uuid == uuid))
    if current != state:
        return None
    inv = await set_state(ctx.call, uuid, event, **fields)
    if chain == "vm-create":
        await ctx.call.publish("/vm/created", {"resourceType": "VmInstance", "inventory": inv})
    log.warning(
        "VM %s: %s had finished when the node stopped; the VM is now %s",
        uuid,
        chain,
        inv["state"],
    )
    return {"inventory": inv}


def _prepare_create_undo(ctx: FlowContext, rec: FlowRecordVO, steps: list[str]) -> list[str]:
    """The steps of an interrupted ``vm-create`` run to undo generically, after settling the
    case its record cannot tell by itself.

    * The run had not finished ``vm-create-record``: the VM row, if there is one, may be a
      twin's. A client retrying the create (same ``resourceUuid``; or the broker redelivering
      the request once the dead node's connection dropped) finds no row and makes the VM on a
      live node, and undoing this run must not delete that VM. This run's own row (committed
      just before the node died) is deleted only while it is still ``Created`` and no other
      ``vm-create`` run of that UUID is recorded: one conditional statement, so a twin's row
      committed meanwhile (its record is durable before its row) is never taken.

    (A run that died in ``vm-allocate-host`` or ``vm-allocate-primary-storage`` after the
    capacity was taken but before the record named it needs nothing here: the reservation is
    recorded under the step's key in the transaction that took it, and the undo releases by
    that key, exactly once: :mod:`zmn.core.reservations`.)
    """
    uuid = ctx.data.get("vmUuid")
    if not uuid:
        return steps
    if rec.currentFlow == "vm-create-record" and "vm-create-record" not in json.loads(
        rec.doneFlows or "[]"
    ):
        _delete_own_row(ctx.call.node, rec, uuid)
        ctx.data.pop("vmUuid", None)  # nothing else of this run to settle: the VM is not its own
        return [s for s in steps if s != "vm-create-record"]
    return steps


def _delete_own_row(node: Node, rec: FlowRecordVO, uuid: str) -> bool:
    """Delete the VM row of an interrupted create (with its tags and owner) unless a twin
    run of the same UUID made it or works on it (a finished run, or one open on another,
    live node); True when deleted."""
    twin = (
        select(FlowRecordVO.uuid)
        .where(
            FlowRecordVO.chain == "vm-create",
            FlowRecordVO.uuid != rec.uuid,
            FlowRecordVO.data.contains(uuid),
            or_(
                FlowRecordVO.state == "Done",
                and_(
                    FlowRecordVO.state.in_(("Running", "RollingBack")),
                    FlowRecordVO.managementNodeUuid != rec.managementNodeUuid,
                ),
            ),
        )
        .exists()
    )
    with node.db.tx() as s:
        gone = s.execute(
            delete(VmInstanceVO)
            .where(VmInstanceVO.uuid == uuid, VmInstanceVO.state == "Created", ~twin)
            .execution_options(synchronize_session=False)
        )
        if not gone.rowcount:  # type: ignore[attr-defined]
            return False
        s.execute(delete(TagVO).where(TagVO.resourceUuid == uuid))
        s.execute(delete(AccountResourceRefVO).where(AccountResourceRefVO.resourceUuid == uuid))
    log.warning("VM %s: removed the row of a create interrupted at its first step", uuid)
    return True


async def _settle(call: Call, uuid: str, state: str) -> int:
    rt = call.node.resources.get("VmInstance")
    with call.tx() as s:
        row = s.get(VmInstanceVO, uuid)
        if row is None or row.state not in TRANSITIONAL:
            return 0
        old = row.state
        if state in ("Stopped", "Destroyed", "Error"):
            row.hostUuid = None
        row.state = state
        row.lastOpDate = utcnow()
        s.flush()
        inv = rt.inventories(s, [row])[0]
    await crud.publish_state_change(call, rt, inv, old, state)
    log.warning("VM %s was %s when the node stopped; it is now %s", uuid, old, state)
    return 1


async def _stranded(call: Call) -> int:
    with call.tx() as s:
        busy = set(
            s.scalars(
                select(JobVO.resourceUuid).where(
                    JobVO.state == "Running", JobVO.resourceUuid.is_not(None)
                )
            )
        )
        rows = list(
            s.execute(
                select(VmInstanceVO.uuid, VmInstanceVO.state, VmInstanceVO.hostUuid).where(
                    VmInstanceVO.state.in_(TRANSITIONAL)
                )
            )
        )
    count = 0
    for uuid, state, host in rows:
        if uuid in busy:
            continue
        target = (
            "Error"
            if state == "Created"
            else "Destroyed"
            if state == "Expunging"
            else ("Unknown" if host else "Stopped")
        )
        count += await _settle(call, uuid, target)
    return count


# ------------------------------------------------------------------------- reconciler

RECONCILE_INTERVAL = GlobalConfigDef(
    "vm",
    "reconcile.interval",
    60,
    "int",
    "seconds between two runs of the reconciler (VMs against the hypervisor, host capacity,"
    " invariants); 0 turns it off",
    min=0,
)
# seconds between seeing host-capacity drift and seeing it again, identical, before repairing
CAPACITY_CONFIRM_DELAY = 0.5
FIXED_CHECKS = ("host-capacity",)  # violations the reconciler repairs; the rest it reports
BATCH = 1000  # VMs read per statement; the pass yields to the event loop after each batch


class Reconciler:
    """Compares the database with the hypervisors' truth and the invariants; fixes drift."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.task: asyncio.Task[None] | None = None
        self.runs = 0
        if RECONCILE_INTERVAL.key not in node.global_config.defs:
            node.global_config.declare(RECONCILE_INTERVAL)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def _loop(self) -> None:
        while True:
            await self.node.global_config.wait_interval(*RECONCILE_INTERVAL.key, when_zero=60)
            if not int(self.node.global_config.get(*RECONCILE_INTERVAL.key)):
                continue  # 0: off (looked at again every minute, or when it changes)
            try:
                await self.run_once()
            except Exception:
                log.exception("reconciliation failed")

    async def run_once(self) -> list[dict[str, Any]]:
        """One pass; returns the drift found (each with ``fixed`` true or false)."""
        call = Call(self.node, self.node.admin_principal(), "Reconcile")
        drift = await self._vms_against_hypervisors(call)
        drift += await self._invariants(call)
        for item in drift:
            log.warning(
                "reconcile: %s (%s)", item["message"], "fixed" if item["fixed"] else "reported"
            )
            await call.publish("/reconcile/drift", item)
        self.runs += 1
        return drift

    async def _vms_against_hypervisors(self, call: Call) -> list[dict[str, Any]]:
        """Placed VMs in batches of :data:`BATCH` by UUID, yielding to the loop between them;
        only a VM whose state differs from its host's record takes its queue slot."""
        truth: dict[str, dict[str, str] | None] = {}
        out: list[dict[str, Any]] = []
        after = ""
        while True:
            with call.tx() as s:
                batch = list(
                    s.execute(
                        select(VmInstanceVO.uuid, VmInstanceVO.hostUuid, VmInstanceVO.state)
                        .where(
                            VmInstanceVO.state.in_(("Running", "Paused")),
                            VmInstanceVO.hostUuid.is_not(None),
                            VmInstanceVO.hypervisorType == "Simulator",
                            VmInstanceVO.uuid > after,
                        )
                        .order_by(VmInstanceVO.uuid)
                        .limit(BATCH)
                    )
                )
            if not batch:
                return out
            after = batch[-1][0]
            for uuid, host, state in batch:
                if not self.node.owns_resource(host):
                    continue  # the host's owner compares its VMs (one node per host)
                if host not in truth:
                    truth[host] = await _host_truth(call, host)
                states = truth[host]
                if states is None:
                    continue  # unreachable: the host tracker deals with it
                actual = states.get(uuid)
                if actual is None or actual == state:
                    # None: the record never held it (another node started it there)
                    continue  # agrees (re-checked under the slot only when it does not)
                async with self.node.queues.vm(uuid, "Reconcile"):
                    item = await self._one_vm(call, uuid, host, actual)
                if item is not None:
                    out.append(item)
            await asyncio.sleep(0)  # API calls run between two batches

    async def _one_vm(self, call: Call, uuid: str, host: str, truth: str) -> dict[str, Any] | None:
        try:
            vm = load_vm(call, uuid)
        except Exception:  # expunged meanwhile
            return None
        if vm["state"] not in ("Running", "Paused") or vm["hostUuid"] != host:
            return None  # an operation changed it before we got the slot
        if truth == vm["state"]:
            return None
        item = {
            "check": "vm-hypervisor-state",
            "resourceType": "VmInstance",
            "uuid": uuid,
            "expected": truth,
            "actual": vm["state"],
            "message": f"VM {vm['name']} is {vm['state']} here but {truth} on host {host}",
            "fixed": True,
        }
        if truth in ("Running", "Paused"):
            await _force_state(call, uuid, truth)
            return item
        # gone (or stopped) on the hypervisor: it no longer takes the host's capacity. One
        # conditional UPDATE moves it to Stopped, and only the pass that made it gives the
        # capacity back: the VM slot held here is this node's, and another node's pass (or
        # the owner's own report) may be settling the same VM at the same time
        if not await _stop_gone(call, uuid, host, vm["state"]):
            return None
        await send(
            call,
            "ReleaseHostCapacity",
            hostUuid=host,
            cpuNum=vm["cpuNum"],
            memorySize=vm["memorySize"],
        )
        return item

    def _check(self, checker: ConsistencyCheck) -> list[Violation]:
        with self.node.db.session() as session:
            return checker.check_consistency(session)

    async def _invariants(self, call: Call) -> list[dict[str, Any]]:
        violations: list[Violation] = []
        capacity_checkers = []
        for checker in self.node.extensions.all(ConsistencyCheck):  # type: ignore[type-abstract]
            # Off the event loop, one checker at a time with its own session: the checks are
            # read-only whole-table queries (seconds at a million VMs) and API calls must not
            # wait behind them.
            found = await asyncio.to_thread(self._check, checker)
            if any(v.get("check") == "host-capacity" for v in found):
                capacity_checkers.append(checker)
            violations.extend(found)
        confirmed = await self._confirmed_capacity_drift(violations, capacity_checkers)
        out = []
        for v in violations:
            fixed = False
            if v.get("check") == "host-capacity" and _key(v) in confirmed:
                fixed = await _fix_host_capacity(call, v)
            out.append({**v, "fixed": fixed})
        return out

    async def _confirmed_capacity_drift(
        self, violations: list[Violation], checkers: list[ConsistencyCheck]
    ) -> set[tuple[Any, ...]]:
        """The host-capacity drift this node may repair: on a host it owns on the ring (one
        node repairs a host, not every node at once), with no VM in a transitional state on
        it, and seen again, identical, :data:`CAPACITY_CONFIRM_DELAY` seconds later.

        A capacity check taken while operations run can see a gap that is not a leak: a
        create reserves the host in one transaction and places the VM in the next, a
        migration reserves its target long before the VM moves there, an undo
        releases before it unplaces, and on PostgreSQL (read committed) the check's VM and
        host queries are two snapshots. "Repairing" such a gap makes a real one once the
        operation finishes; a leak stays put, so it is repaired once the host is quiet.
        """
        drift = [
            v
            for v in violations
            if v.get("check") == "host-capacity"
            and not v.get("inFlight")
            and self.node.owns_resource(str(v.get("uuid")))
        ]
        if not drift:
            return set()
        await asyncio.sleep(CAPACITY_CONFIRM_DELAY)
        again: set[tuple[Any, ...]] = set()
        for checker in checkers:
            for v in await asyncio.to_thread(self._check, checker):
                if v.get("check") == "host-capacity":
                    again.add(_key(v))
        hosts = [str(v.get("uuid")) for v in drift]
        with self.node.db.session() as session:
            busy = set(
                session.scalars(
                    select(VmInstanceVO.hostUuid).where(
                        VmInstanceVO.hostUuid.in_(hosts), VmInstanceVO.state.in_(TRANSITIONAL)
                    )
                )
            )
            # a host reserved by a chain still running: a migration's target holds the VM's
            # CPUs and memory for seconds before the VM names it (its hostUuid is the source)
            busy |= set(
                session.scalars(
                    select(ReservationVO.targetUuid)
                    .join(FlowRecordVO, FlowRecordVO.uuid == ReservationVO.recordUuid)
                    .where(
                        ReservationVO.kind == "Host",
                        ReservationVO.targetUuid.in_(hosts),
                        FlowRecordVO.state.in_(("Running", "RollingBack")),
                    )
                )
            )
        return {
            _key(v)
            for v in drift
            if _key(v) in again and v.get("uuid") not in busy and not v.get("inFlight")
        }


def _key(v: Violation) -> tuple[Any, ...]:
    return (v.get("uuid"), repr(v.get("expected")), repr(v.get("actual")))


async def _host_truth(call: Call, host: str) -> dict[str, str] | None:
    """VM UUID -> state on a Connected simulator host (None when it cannot be asked): the VMs
    its record holds, and ``Stopped`` for those it held that vanished.

    KVM hosts report state changes themselves (agent reports); the simulator has no agent,
    so its record is read here."""
    if host_status(call, host) != "Connected":
        return None
    try:
        record = (await _ask_owner(call, "GetSimulatorHostState", host, uuid=host))["host"]
    except Exception as exc:
        log.info("reconcile: no VM states from host %s: %s", host, exc)
        return None
    if not record.get("connected"):
        return None
    # a VM this node's record never held is not in the answer: with several nodes each keeps
    # its own record of a simulated host, and the VM may run there through another one's
    states = dict.fromkeys(record.get("gone", []), "Stopped")
    states.update({u: str(v["state"]) for u, v in record["vms"].items()})
    return states


async def _ask_owner(call: Call, api_name: str, host: str, **args: Any) -> Any:
    """Send a host-service API about ``host`` to the node that owns the host.

    A simulated host's VMs live in the memory of the node that owns it (``HypervisorOp``
    follows ``hostUuid`` there); ``GetSimulatorHostState`` names its host by ``uuid``, so sent
    as an ordinary internal call it was answered from this node's own record of the host,
    which lacks every VM started through the owner: the reconciler stopped them as gone."""
    cls: Any = call.node.apis.get(api_name)
    env = Envelope(api_name, cls(**args), call.principal, id=call.request_id, resource_uuid=host)
    return await call.node.bus.call(call.node.route(api_name), env)


async def _force_state(call: Call, uuid: str, state: str, **fields: Any) -> None:
    rt = call.node.resources.get("VmInstance")
    with call.tx() as s:
        row = s.get(VmInstanceVO, uuid)
        if row is None:
            return
        old = row.state
        row.state = state
        for key, value in fields.items():
            setattr(row, key, value)
        row.lastOpDate = utcnow()
        s.flush()
        inv = rt.inventories(s, [row])[0]
    await crud.publish_state_change(call, rt, inv, old, state)


async def _fix_host_capacity(call: Call, v: Violation) -> bool:
    """Bring available CPU/memory to total minus placed VMs, only while they are still what the
    check saw (compare and set: two nodes that both own the host while the ring changes, or a
    capacity change since the check, never make the repair count twice)."""
    expected, actual = v.get("expected"), v.get("actual")
    if not isinstance(expected, list) or not isinstance(actual, list):
        return False
    done = await send(
        call,
        "RepairHostCapacity",
        hostUuid=v["uuid"],
        expected=[int(x) for x in expected],
        actual=[int(x) for x in actual],
    )
    return bool(done.get("repaired"))


async def _stop_gone(call: Call, uuid: str, host: str, state: str) -> bool:
    """A VM gone from its host becomes Stopped there, by one conditional UPDATE (still in
    ``state`` on ``host``); True for the caller whose UPDATE did it (it gives the capacity
    back), False when another pass or an operation changed the VM first."""
    with call.tx() as s:
        moved = s.execute(
            update(VmInstanceVO)
            .where(
                VmInstanceVO.uuid == uuid,
                VmInstanceVO.state == state,
                VmInstanceVO.hostUuid == host,
            )
            .values(state="Stopped", hostUuid=None, lastHostUuid=host, lastOpDate=utcnow())
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return False
        rt = call.node.resources.get("VmInstance")
        row = s.get(VmInstanceVO, uuid, populate_existing=True)
        inv = rt.inventories(s, [row])[0]
    await crud.publish_state_change(call, rt, inv, state, "Stopped")
    return True
