"""Scale-out wiring: the ring, membership, takeover, fencing and ``api.portal`` for one node.

The management service owns one :class:`Cluster`. It runs :class:`~zmn.core.membership.Membership`
(heartbeats on the database clock) and keeps a :class:`~zmn.core.ring.HashRing` of the live
nodes in step with it; on an :class:`~zmn.core.amqp_bus.AmqpBus` the bus routes requests about
a resource to that resource's owner on this ring (see :class:`ClusterBus`).

When a node leaves (evicted or stopped), every survivor reconnects the hosts that are now its
own, so a host always has an owner that holds a live connection to it (for simulator hosts,
a record rebuilt from the database). The survivor that evicted the node also marks the
node's running jobs Interrupted and publishes ``/managementNode/evicted``, on which the
services that keep resumable state (the VM chains' flow records) roll back what the dead
node left half done. A node that finds itself evicted stops serving at once: the others are
already acting on its resources.

Why here and not in the bus: the bus only knows queues and envelopes; ownership of hosts,
jobs and flows is product knowledge, and the takeover uses the same APIs an operator would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from zmn.api.errors import InternalError
from zmn.core.amqp_bus import AmqpBus, PortalRequest
from zmn.core.bus import Envelope, Event
from zmn.core.membership import Membership
from zmn.core.models import FlowRecordVO, JobVO
from zmn.core.ring import HashRing
from zmn.core.service import Call

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.cluster")

EVICTED_PATH = "/managementNode/evicted"
JOIN_PATH = "/managementNode/join"
LEAVE_PATH = "/managementNode/leave"
HOST_CREATED_PATH = "/host/created"


def host_key(message: Any) -> str | None:
    """The host an internal host-service message is about, if any (its routing key)."""
    spec = getattr(type(message), "__api__", None)
    if spec is None or not spec.internal or spec.service != "host":
        return None
    value = getattr(message, "hostUuid", None)
    return value if isinstance(value, str) and value else None


class ClusterBus(AmqpBus):
    """The RabbitMQ bus, plus: internal messages about a host go to the host's owner.

    A host is reached through the node that owns it (a simulator host's VMs live in that
    node's memory; a real host's connection is that node's), so ``HypervisorOp`` and the
    like follow ``hostUuid`` when the envelope names no resource of its own.
    """

    def owner_of(self, envelope: Envelope) -> str:
        if not envelope.resource_uuid and self.ring is not None and len(self.ring):
            host = host_key(envelope.message)
            if host is not None:
                return self.ring.owner(host)
        return super().owner_of(envelope)


def ring_shares(ring: HashRing) -> dict[str, float]:
    """Fraction of the hash space each node owns (sums to 1 on a non-empty ring)."""
    points = ring._hashes  # read-only view of the ring's points
    owners = ring._owners
    if not points:
        return {}
    space = float(2**64)
    shares = dict.fromkeys(ring.nodes, 0.0)
    for i, point in enumerate(points):
        # the arc (previous point, this point] belongs to this point's node
        previous = points[i - 1] if i else points[-1] - 2**64
        shares[owners[i]] += (point - previous) / space
    return shares


class Cluster:
    """Membership, ring and takeover of one management node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.ring = HashRing()
        config = node.global_config
        self.membership = Membership(
            node.db,
            node.uuid,
            interval=lambda: float(config.get("managementNode", "heartbeat.interval")),
            max_missed=lambda: float(config.get("managementNode", "heartbeat.maxMissed")),
            on_join=self._on_join,
            on_leave=self._on_leave,
            on_fenced=self._on_fenced,
            name=node.config.node_name,
            version=node.version,
            endpoints=lambda: list(node.endpoints),
        )
        self.takeovers: list[dict[str, Any]] = []
        self.adopted: dict[str, Any] = {}  # the hosts this node took over when it joined
        self._wake = asyncio.Event()  # a round now rather than at the next interval
        self._loop_seen = time.monotonic()  # when the loop last ran a membership round
        self._beater: threading.Thread | None = None
        self._beater_stop = threading.Event()
        self._ready = False  # the first round reports every live node as joining
        self._task: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[Any]] = set()
        self._subscription: Any = None
        self._evictions: Any = None

    # ------------------------------------------------------------------ life cycle

    @property
    def amqp(self) -> AmqpBus | None:
        bus = self.node.bus
        return bus if isinstance(bus, AmqpBus) else None

    async def start(self) -> None:
        bus = self.amqp
        if bus is not None:
            bus.ring = self.ring
            bus.serve_portal(self._portal)
        self._subscription = self.node.bus.subscribe(HOST_CREATED_PATH, self._on_host_created)
        self._evictions = self.node.bus.subscribe(EVICTED_PATH, self._on_evicted)
        self.node.owns_resource = self.owns
        self.membership.register()  # the row exists before start returns
        await self.membership.tick()  # and so does the ring
        self._ready = True
        if len(self.ring) > 1:
            self._spawn(self._adopt())
        self._loop_seen = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._beater_stop.clear()
        self._beater = threading.Thread(target=self._beat_thread, name="zmn-heartbeat", daemon=True)
        self._beater.start()

    def _beat_thread(self) -> None:
        """Heartbeats that a busy event loop does not delay.

        Under load the loop may not run the membership round on time (a burst of
        requests, a statement waiting on another node's row lock), and a node that is
        merely busy must not be evicted. This thread beats every interval as long as the
        loop itself ran a round within the eviction grace; a loop stuck for longer than
        that stops the beats too, and the node is evicted as if it were dead.
        """
        membership = self.membership
        while not self._beater_stop.wait(_setting(membership.interval)):
            if membership.fenced or membership._stopping:
                return
            if time.monotonic() - self._loop_seen > membership.grace():
                continue  # the loop is stuck: let the others evict this node
            try:
                membership.beat()
            except Exception as exc:  # the loop's own round reports database trouble
                log.debug("heartbeat from the heartbeat thread failed: %s", exc)

    async def _run(self) -> None:
        """A round every interval, at a fixed rate (a slow round does not delay the next)."""
        membership = self.membership
        loop = asyncio.get_running_loop()
        due = loop.time()
        # a new heartbeat interval takes effect at once: a round now, the next ones at the new rate
        self.node.global_config.watch([("managementNode", "heartbeat.interval")], self._wake)
        while not membership.fenced:
            due += _setting(membership.interval)
            delay = due - loop.time()
            if delay < 0:  # rounds fell behind (a stalled loop or database): start afresh
                due, delay = loop.time(), 0.0
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
                due = loop.time()  # woken early: the next rounds follow this one
            except TimeoutError:
                pass
            self._wake.clear()
            self._loop_seen = time.monotonic()
            try:
                if not await membership.tick():
                    return
            except Exception:  # the database away for a moment must not end membership
                log.exception("membership round failed")

    def _on_evicted(self, event: Event) -> None:
        """Another survivor evicted a node: see it now, not at this node's next round."""
        if event.data.get("evictedBy") != self.node.uuid:
            self._wake.set()

    async def stop(self) -> None:
        self.node.global_config.unwatch([("managementNode", "heartbeat.interval")], self._wake)
        self._beater_stop.set()
        if self._beater is not None:
            await asyncio.to_thread(self._beater.join, 5)
            self._beater = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for sub in (self._subscription, self._evictions):
            if sub is not None:
                self.node.bus.unsubscribe(sub)
        self._subscription = self._evictions = None
        for task in list(self._work):
            task.cancel()
        await asyncio.gather(*self._work, return_exceptions=True)
        if not self.membership.fenced:
            try:
                self.membership.leave()
            except Exception:
                log.exception("could not record the node as stopped")

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        return task

    async def settle(self) -> None:
        """Wait for running takeovers (tests)."""
        while self._work:
            await asyncio.gather(*list(self._work), return_exceptions=True)

    # ------------------------------------------------------------------ status

    def owns(self, uuid: str) -> bool:
        return not len(self.ring) or self.ring.owner(uuid) == self.node.uuid

    def describe(self) -> dict[str, Any]:
        shares = ring_shares(self.ring)
        return {
            "members": [{"uuid": n, "share": round(shares[n], 4)} for n in self.ring.nodes],
            "share": round(shares.get(self.node.uuid, 0.0), 4),
            "vnodes": self.ring.vnodes,
            "heartbeatInterval": _setting(self.membership.interval),
            "maxMissed": _setting(self.membership.max_missed),
            "fenced": self.membership.fenced,
            "takeovers": self.takeovers[-10:],
            "adopted": self.adopted,
        }

    # ------------------------------------------------------------------ api.portal

    async def _portal(self, req: PortalRequest) -> Any:
        result, _job = await self.node.execute(
            req.api,
            req.args,
            session=req.session,
            principal=req.principal,
            request_id=req.id,
            peer="api.portal",
        )
        return result

    # ------------------------------------------------------------------ membership callbacks

    async def _on_join(self, uuid: str) -> None:
        self.ring.add(uuid)
        if self._ready and uuid != self.node.uuid:
            log.info("management node %s joined; ring: %d node(s)", uuid, len(self.ring))
            await self.node.bus.publish(JOIN_PATH, {"nodeUuid": uuid, "seenBy": self.node.uuid})

    async def _on_leave(self, uuid: str) -> None:
        started = time.time()  # the moment this node took the left node's share
        before = HashRing(self.ring.nodes, vnodes=self.ring.vnodes)
        self.ring.remove(uuid)
        bus = self.amqp
        failed = bus.fail_calls_to(uuid) if bus is not None else 0
        evicted = uuid in self.membership.evicted_by_me
        log.warning(
            "management node %s left (%s); %d waiting call(s) failed; ring: %d node(s)",
            uuid,
            "evicted by this node" if evicted else "seen",
            failed,
            len(self.ring),
        )
        await self.node.bus.publish(LEAVE_PATH, {"nodeUuid": uuid, "seenBy": self.node.uuid})
        self._spawn(self._take_over(uuid, before, evicted, started))

    async def _on_fenced(self) -> None:
        """Evicted by the others: stop serving now rather than act on stale ownership."""
        node = self.node
        node.stopping = True
        log.error("node %s is fenced: it stops serving and exits", node.uuid)
        try:
            await node.bus.stop()
        except Exception:
            log.exception("stopping the bus after fencing failed")
        if node.on_fenced is not None:
            node.on_fenced()

    # ------------------------------------------------------------------ takeover

    async def _take_over(self, uuid: str, before: HashRing, evicted: bool, started: float) -> None:
        record: dict[str, Any] = {"node": uuid, "startedAt": started, "hosts": [], "jobs": 0}
        self.takeovers.append(record)
        if evicted:
            record["jobs"] = self._interrupt_jobs(uuid)
            await self.node.bus.publish(
                EVICTED_PATH,
                {"nodeUuid": uuid, "evictedBy": self.node.uuid, "jobsInterrupted": record["jobs"]},
            )
        hosts = [
            h
            for h in self._host_uuids()
            if before.owner(h) == uuid and self.ring.owner(h) == self.node.uuid
        ]
        record["hosts"] = hosts
        record["reconnected"] = await self._reconnect(hosts)
        record["seconds"] = round(time.time() - started, 3)
        log.warning(
            "took over %d host(s) and %d job(s) of node %s in %.2fs",
            len(hosts),
            record["jobs"],
            uuid,
            record["seconds"],
        )

    async def _adopt(self) -> None:
        """Joined a running cluster: take over the hosts the ring now gives this node.

        The others see this node at their next round (within one interval of its
        registration) and stop tracking those hosts then; reconnecting after that rebuilds
        the host records (a simulator host's VMs) from the database with whatever the
        previous owner did up to the handover.
        """
        await asyncio.sleep(_setting(self.membership.interval) + 0.25)
        started = time.time()
        others = HashRing(
            [n for n in self.ring.nodes if n != self.node.uuid], vnodes=self.ring.vnodes
        )
        hosts = [
            h
            for h in self._host_uuids()
            if self.owns(h) and len(others) and others.owner(h) != self.node.uuid
        ]
        record: dict[str, Any] = {"startedAt": started, "hosts": hosts}
        self.adopted = record
        record["reconnected"] = await self._reconnect(hosts)
        record["seconds"] = round(time.time() - started, 3)
        log.info(
            "joined: took over %d host(s) from the other nodes in %.2fs",
            len(hosts),
            record["seconds"],
        )

    def _interrupt_jobs(self, uuid: str) -> int:
        error = json.dumps(
            InternalError(
                f"management node {uuid} died while this job ran", code="JOB.INTERRUPTED"
            ).to_wire()
        )
        with self.node.db.tx() as s:
            result = s.execute(
                update(JobVO)
                .where(JobVO.managementNodeUuid == uuid, JobVO.state == "Running")
                .values(state="Interrupted", error=error)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def _host_uuids(self) -> list[str]:
        try:
            rt = self.node.resources.get("Host")
        except Exception:  # the host service is disabled: no hosts to take over
            return []
        with self.node.db.tx() as s:
            return list(s.scalars(select(rt.column("uuid"))))

    def _parallelism(self) -> int:
        try:
            return max(1, int(self.node.global_config.get("host", "connection.parallelism")))
        except Exception:
            return 10

    async def _reconnect(self, hosts: list[str]) -> int:
        """ReconnectHost each host, at most ``host/connection.parallelism`` at once."""
        if not hosts:
            return 0
        api = self.node.apis.get("ReconnectHost")
        call = Call(self.node, self.node.admin_principal(), "TakeOverHosts")
        limit = asyncio.Semaphore(self._parallelism())
        done = 0

        async def one(uuid: str) -> None:
            nonlocal done
            async with limit:
                try:
                    await call.call(api(uuid=uuid))  # type: ignore[call-arg]
                    done += 1
                except Exception as exc:
                    log.warning("taking over host %s: reconnect failed: %s", uuid, exc)

        await asyncio.gather(*(one(h) for h in hosts))
        return done

    async def _on_host_created(self, event: Event) -> None:
        """A host added through another node, owned by this one: connect it here too."""
        inv = event.data.get("inventory") or {}
        uuid = inv.get("uuid")
        if not uuid or len(self.ring) < 2 or not self.owns(uuid) or self._added_here(uuid):
            return
        self._spawn(self._reconnect([uuid]))

    def _added_here(self, host_uuid: str) -> bool:
        with self.node.db.tx() as s:
            found = s.scalars(
                select(FlowRecordVO.uuid)
                .where(
                    FlowRecordVO.chain == "host-add",
                    FlowRecordVO.managementNodeUuid == self.node.uuid,
                    FlowRecordVO.data.contains(host_uuid),
                )
                .limit(1)
            ).first()
        return found is not None


def _setting(value: Any) -> float:
    return float(value() if callable(value) else value)
