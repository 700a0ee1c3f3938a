"""The metrics service: ``GetVmMetrics``, ``GetHostMetrics``, the Prometheus endpoint.

Samples arrive from KVM agents' reports (the KVM plugin publishes each on the bus as
``/host/metrics``; this service never imports it) and, for simulator hosts, from :class:`SyntheticUsage` every
``metrics/simulator.interval`` seconds. They are kept in a :class:`MetricsWindow` of
``metrics/window.samples`` samples per resource: memory only, lost at restart, never a row.

zmn.conf ``metrics.listen`` (``HOST:PORT``, empty: off) serves the Prometheus exposition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import select

from zmn.api.errors import InvalidArgument
from zmn.core.globalconfig import GlobalConfigDef
from zmn.core.service import Call, Service, handler
from zmn.services.metrics.api import GetHostMetrics, GetVmMetrics
from zmn.services.metrics.synthetic import SyntheticUsage
from zmn.services.metrics.window import MetricsWindow, Sample, series

log = logging.getLogger("zmn.metrics")

METRICS_EVENT = "/host/metrics"  # published by the KVM plugin for each agent report
STALE_SECONDS = 3600.0  # a resource without a sample this long is dropped from the window


class MetricsService(Service):
    name = "metrics"
    summary = "usage metrics of hosts and VMs: recent rates by API, Prometheus exposition"
    requires = ("host",)
    global_configs = [
        GlobalConfigDef(
            "metrics",
            "window.samples",
            60,
            "int",
            "samples kept in memory per host and VM (the window GetVmMetrics answers from)",
            min=2,
            max=10000,
        ),
        GlobalConfigDef(
            "metrics",
            "simulator.interval",
            10,
            "int",
            "seconds between the synthetic usage samples of simulator hosts and their VMs",
            min=1,
        ),
    ]
    error_codes = {"METRICS.BAD_LISTEN": "metrics.listen in zmn.conf is not HOST:PORT"}

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.window = MetricsWindow()
        self.synthetic = SyntheticUsage()
        self._task: asyncio.Task[None] | None = None
        self._server: Any = None
        self._sub: Any = None

    async def start(self) -> None:
        listen = self.node.config.get("metrics.listen", "")
        if listen:
            host, _, port = listen.rpartition(":")
            if not port.isdigit() or not 0 <= int(port) <= 65535:
                raise InvalidArgument(
                    f"metrics.listen: {listen!r} is not HOST:PORT (e.g. 127.0.0.1:9464)",
                    code="METRICS.BAD_LISTEN",
                    field="metrics.listen",
                )
            from zmn.services.metrics.prom import serve

            self._server = await asyncio.to_thread(serve, self.window, self._node_stats, listen)
            log.info("Prometheus metrics on http://%s:%d/metrics", host, self.port)
        self._task = asyncio.get_running_loop().create_task(self._simulate())
        self._sub = self.node.bus.subscribe(METRICS_EVENT, self._on_report)

    @property
    def port(self) -> int:
        """The Prometheus endpoint's port (the one chosen when metrics.listen says :0)."""
        return int(self._server.server_port) if self._server is not None else 0

    async def stop(self) -> None:
        if self._sub is not None:
            self.node.bus.unsubscribe(self._sub)
            self._sub = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)
            self._server.server_close()
            self._server = None

    def _node_stats(self) -> dict[str, Any]:
        return {
            **self.node.stats.snapshot(),
            "node": self.node.uuid,
            "version": self.node.version,
            "jobsInFlight": self.node.jobs.in_flight,
            "queueDepth": self.node.queues.depth(),
        }

    def ingest(
        self, kind: str, uuid: str, at: float, values: dict[str, float], host_uuid: str | None
    ) -> None:
        """Keep one raw sample (``kind`` host or vm) of a resource."""
        self.window.size = int(self.node.global_config.get("metrics", "window.samples"))
        clean = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
        self.window.add(kind, uuid, Sample(float(at), clean, host_uuid))

    def _on_report(self, event: Any) -> None:
        """An agent's sample (published by the KVM plugin): the host's and its domains'."""
        data = event.data
        host_uuid, at = str(data.get("hostUuid") or ""), data.get("time")
        if not host_uuid or not isinstance(at, int | float):
            return
        if isinstance(data.get("host"), dict) and data["host"]:
            self.ingest("host", host_uuid, at, data["host"], None)
        for vm_uuid, values in (data.get("vms") or {}).items():
            if isinstance(values, dict):
                self.ingest("vm", str(vm_uuid), at, values, host_uuid)

    # ------------------------------------------------------------------ simulator usage

    async def _simulate(self) -> None:
        last = time.time()
        while True:
            await asyncio.sleep(float(self.node.global_config.get("metrics", "simulator.interval")))
            now = time.time()
            try:
                self._simulate_once(now, now - last)
            except Exception:  # a failed round is logged; the next one tries again
                log.exception("synthetic usage round failed")
            self.window.prune(now - STALE_SECONDS)
            last = now

    def _simulate_once(self, now: float, dt: float) -> None:
        types = self.node.resources.types
        host_t, vm_t = types.get("Host"), types.get("VmInstance")
        if host_t is None:
            return
        Host, Vm = host_t.model, vm_t.model if vm_t is not None else None
        with self.node.db.tx() as s:
            hosts = s.execute(
                select(Host.uuid, Host.cpuNum, Host.totalMemoryCapacity).where(
                    Host.hypervisorType == "Simulator", Host.status == "Connected"
                )
            ).all()
            vms = (
                s.execute(
                    select(Vm.uuid, Vm.hostUuid, Vm.cpuNum, Vm.memorySize).where(
                        Vm.state == "Running", Vm.hostUuid.in_([h[0] for h in hosts])
                    )
                ).all()
                if Vm is not None and hosts
                else []
            )
        by_host: dict[str, list[dict[str, float]]] = {h[0]: [] for h in hosts}
        # every running VM each round: the synthetic values are floats already, so they go
        # to the window as they are (what ingest checks is for agents' reports)
        self.window.size = int(self.node.global_config.get("metrics", "window.samples"))
        add, vm_sample = self.window.add, self.synthetic.vm
        for uuid, host_uuid, cpu, memory in vms:
            values = vm_sample(uuid, int(cpu), int(memory), dt)
            by_host[host_uuid].append(values)
            add("vm", uuid, Sample(now, values, host_uuid))
        for uuid, cpu, memory in hosts:
            values = self.synthetic.host(uuid, int(cpu), int(memory), by_host[uuid], dt)
            add("host", uuid, Sample(now, values, None))
        self.synthetic.forget_except({v[0] for v in vms}, set(by_host))

    # ------------------------------------------------------------------ APIs

    def _answer(self, kind: str, uuid: str) -> dict[str, Any]:
        samples = self.window.samples(uuid)
        rates = series(samples, kind)
        return {
            "uuid": uuid,
            "hostUuid": samples[-1].host_uuid if samples and kind == "vm" else None,
            "latest": rates[-1] if rates else None,
            "samples": rates,
            "window": self.window.size,
        }

    def _reply(self, kind: str, uuid: str | None, uuids: list[str] | None) -> dict[str, Any]:
        """One resource's answer for ``uuid``; for ``uuids`` (at most 1000) ``results``, one
        answer each in the order asked."""
        if uuids is not None:
            if uuid is not None or len(uuids) > 1000:
                raise InvalidArgument("give uuid or uuids (at most 1000), not both", field="uuids")
            return {"results": [self._answer(kind, u) for u in uuids]}
        if not uuid:
            raise InvalidArgument("uuid (or uuids) is required", field="uuid")
        return self._answer(kind, uuid)

    @handler(GetVmMetrics)
    async def get_vm_metrics(self, msg: GetVmMetrics, call: Call) -> dict[str, Any]:
        return self._reply("vm", msg.uuid, msg.uuids)

    @handler(GetHostMetrics)
    async def get_host_metrics(self, msg: GetHostMetrics, call: Call) -> dict[str, Any]:
        return self._reply("host", msg.uuid, msg.uuids)
