"""The node's side of the agent protocol: the callback endpoint, task waiters, VM reports.

The endpoint starts the first time a KVM host is connected (a node without KVM hosts opens no
port). It listens on zmn.conf ``agent.callback.listen`` (default ``0.0.0.0:7071``) and tells
each agent to report to host ``agent.callback.advertise`` when set, else to the listen address, or,
when that is a wildcard, to this node's address on the route toward the host.

Long agent commands are sent with a node-chosen ``taskId`` whose waiter is registered first,
so a result that arrives before the 202 answer is not lost. A waiter that times out asks the
agent once (``GET /v1/task/<id>``) in case the report was lost. VM lifecycle reports are
published on ``/host/vm/report`` for the VM service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zmn.api import agentauth
from zmn.api.errors import InvalidArgument, Timeout, ZmnError
from zmn.core.db import new_uuid
from zmn.services.kvm.agentclient import AgentBatch, AgentClient
from zmn.services.kvm.callback import PATH_PREFIX, CallbackServer

if TYPE_CHECKING:
    from zmn.core.node import Node

log = logging.getLogger("zmn.kvm.endpoint")

REPORT_EVENT = "/host/vm/report"
LEASES_EVENT = "/host/nic/leased"
METRICS_EVENT = "/host/metrics"  # an agent's usage sample (the metrics service keeps it)
DEFAULT_LISTEN = "0.0.0.0:7071"
_WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104


def split_hostport(text: str, key: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"{key} must be HOST:PORT, got {text!r}", field=key)
    return host.strip("[]"), int(port)


def source_address(toward: str) -> str:
    """This machine's address on the route to ``toward`` (no packet is sent)."""
    infos = socket.getaddrinfo(toward, 9, type=socket.SOCK_DGRAM)
    family, _type, _proto, _name, addr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        return str(s.getsockname()[0])


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


class AgentEndpoint:
    def __init__(self, node: Node, secret_of: Callable[[str], str | None]) -> None:
        self.node = node
        # nonces of accepted reports outlive a restart of the node: a captured report
        # replayed then is still refused
        nonces = agentauth.PersistentNonceCache(str(node.config.home / "agent-report-nonces"))
        self.server = CallbackServer(secret_of, self.on_report, nonces=nonces)
        self._waiters: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._lock = asyncio.Lock()

    # ----------------------------------------------------------------- callback server

    @property
    def listen(self) -> tuple[str, int]:
        text = self.node.config.get("agent.callback.listen", DEFAULT_LISTEN)
        return split_hostport(text, "agent.callback.listen")

    async def ensure_started(self, toward: str | None = None) -> None:
        async with self._lock:
            if not self.server.running:
                host, port = self.listen
                await self.server.start(host or "0.0.0.0", port)  # noqa: S104
                log.info("agent callback endpoint on %s:%d", *self.server.address)

    def callback_url(self, host_uuid: str, toward: str) -> str:
        _host, port = self.server.address
        listen_host = self.listen[0]
        advertise = self.node.config.get("agent.callback.advertise").strip("[]")
        if advertise:
            adv_host = advertise
        elif listen_host not in _WILDCARDS:
            adv_host = listen_host
        else:
            adv_host = source_address(toward)
        return f"http://{_url_host(adv_host)}:{port}{PATH_PREFIX}{host_uuid}"

    async def stop(self) -> None:
        await self.server.stop()
        if isinstance(self.server.nonces, agentauth.PersistentNonceCache):
            self.server.nonces.close()
        for _host, fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        self._waiters.clear()

    def forget(self, host_uuid: str) -> None:
        self.server.forget(host_uuid)
        for tid, (host, fut) in list(self._waiters.items()):
            if host == host_uuid:
                if not fut.done():
                    fut.cancel()
                self._waiters.pop(tid, None)

    # ----------------------------------------------------------------- reports

    async def on_report(self, host_uuid: str, report: dict[str, Any]) -> None:
        kind = report.get("type")
        if kind == "task.result":
            entry = self._waiters.get(str(report.get("taskId")))
            if entry is None or entry[0] != host_uuid:
                log.info("result of unknown task %s from host %s", report.get("taskId"), host_uuid)
                return
            if not entry[1].done():
                entry[1].set_result(report)
        elif kind == "vm.lifecycle":
            await self.node.bus.publish(
                REPORT_EVENT,
                {
                    "hostUuid": host_uuid,
                    "vmUuid": report.get("vmUuid"),
                    "event": report.get("event"),
                    "detail": report.get("detail"),
                    "state": report.get("state"),
                    "seq": report.get("seq"),
                    "time": report.get("time"),
                },
            )
        elif kind == "network.leases":  # guests took DHCP leases (zmn/services/vm/leases.py)
            leases = report.get("leases")
            if isinstance(leases, list):
                await self.node.bus.publish(
                    LEASES_EVENT, {"hostUuid": host_uuid, "leases": leases[:4096]}
                )
        elif kind == "metrics":
            await self.node.bus.publish(
                METRICS_EVENT,
                {
                    "hostUuid": host_uuid,
                    "time": report.get("time"),
                    "host": report.get("host") or {},
                    "vms": report.get("vms") or {},
                },
            )
        else:
            log.info("report of unknown type %r from host %s", kind, host_uuid)

    # ----------------------------------------------------------------- long commands

    async def run_task(
        self,
        client: AgentClient,
        host_uuid: str,
        path: str,
        body: dict[str, Any],
        timeout: float,
        *,
        before: AgentBatch | None = None,
    ) -> dict[str, Any]:
        """Send a long command with a callback and wait for its result (or raise its error);
        ``before``: commands that go ahead of it in the same request."""
        tid = new_uuid()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[tid] = (host_uuid, fut)
        try:
            command = {"path": path, "body": {**body, "callback": True, "taskId": tid}}
            steps = [*(before.steps if before is not None else ()), command]
            answer = (await client.batch(steps))[-1]
            if "taskId" not in answer:  # the agent ran it at once
                return answer
            try:
                report = await asyncio.wait_for(asyncio.shield(fut), timeout)
            except TimeoutError:
                report = await client.get(f"/v1/task/{tid}")
                if report.get("status") != "done":
                    raise Timeout(
                        f"{path} on host {host_uuid} did not finish in {timeout:g} s",
                        code="KVM.TASK_TIMEOUT",
                        taskId=tid,
                    ) from None
        finally:
            self._waiters.pop(tid, None)
        if report.get("success"):
            result = report.get("result")
            return result if isinstance(result, dict) else {}
        err = report.get("error")
        raise ZmnError.from_wire(err if isinstance(err, dict) else {"message": "task failed"})
