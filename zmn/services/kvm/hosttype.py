"""The ``KVM`` host type: connect (deploy over SSH), echo, facts, ping, disconnect.

``connect`` is what ``AddKvmHost``, ``ReconnectHost``, node boot and the tracker call:

* at add (``params`` hold the SSH credentials): record them with a fresh agent secret, pin
  the SSH host key on first contact, run the full playbook, wait for the agent's echo;
* later (no ``params``): if the agent answers a signed ping and nothing it was deployed with
  has changed (config, agent version), that is all; otherwise SSH in with the pinned key,
  deploy only when the agent is missing or outdated, rewrite config and (re)start it.

Pings back off: after ``host/ping.maxFailure`` misses in a row, the next pings wait an
exponentially growing, jittered delay (capped by ``kvm/reconnect.maxBackoff``), so a dead
host is not hammered and many hosts coming back do not reconnect in lockstep.

After every successful connect the agent's domain list is published as ``/host/vm/states``
(``hostUuid``, ``vms: [{vmUuid, state}]``, ``time``: when the list was asked for) for
:mod:`zmn.services.kvm.vmsync` (and storage) to sync against.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, or_, select

from zmn.api import agentauth
from zmn.api.errors import (
    OperationFailed,
    Timeout,
    Unavailable,
    ZmnError,
)
from zmn.core.db import new_uuid, utcnow
from zmn.core.models import TagVO
from zmn.services.host.hosttype import HostFacts, HostRef
from zmn.services.kvm import migration, ssh, storage, vmops
from zmn.services.kvm.agentclient import AgentClient
from zmn.services.kvm.agentpool import AgentPool
from zmn.services.kvm.deploy import Deployer, DeployRequest
from zmn.services.kvm.hostnet import HostNetworkPlanner, agent_rules
from zmn.services.kvm.models import KvmHostVO
from zmn.services.kvm.tags import FACT_TAGS
from zmn.services.kvm.wheelhouse import agent_version

if TYPE_CHECKING:
    from zmn.core.node import Node
    from zmn.services.kvm.endpoint import AgentEndpoint

_RECORD = KvmHostVO.__table__
_SELECT_RECORD = select(*_RECORD.c).where(_RECORD.c.uuid == bindparam("uuid"))
log = logging.getLogger("zmn.kvm")

STATES_EVENT = "/host/vm/states"


@dataclass
class _Health:
    failures: int = 0
    next_try: float = 0.0


class KvmHostType:
    hypervisor_type = "KVM"

    def __init__(self, node: Node, endpoint: AgentEndpoint, deployer: Deployer) -> None:
        self.node = node
        self.endpoint = endpoint
        self.deployer = deployer
        self.planner = HostNetworkPlanner(node)
        self.agents = AgentPool()  # kept-alive connections to every host's agent
        self._health: dict[str, _Health] = {}
        self._version: str | None = None
        # last record seen per host: at DeleteHost the row is already gone (cascade) when
        # disconnect runs, and this is what lets it still stop the agent
        self._known: dict[str, KvmHostVO] = {}

    # ----------------------------------------------------------------- settings

    def _cfg(self, category: str, name: str) -> Any:
        return self.node.global_config.get(category, name)

    @property
    def agent_version(self) -> str:
        if self._version is None:
            self._version = agent_version()
        return self._version

    def _row(self, uuid: str) -> KvmHostVO:
        """The host's KVM record, read afresh (credentials change) on the fast path: an
        object outside any session, as the callers only read it."""
        with self.node.db.fast() as conn:
            found = conn.execute(_SELECT_RECORD, {"uuid": uuid}).first()
        if found is None:
            raise OperationFailed(
                f"host {uuid} has no KVM record (credentials, key, secret); delete and re-add it",
                code="KVM.NO_RECORD",
            )
        row = KvmHostVO(**found._mapping)
        self._known[uuid] = row
        return row

    def client(self, host: HostRef, row: KvmHostVO, timeout: float | None = None) -> AgentClient:
        return AgentClient(
            host.managementIp,
            row.agentPort,
            row.agentSecret,
            timeout=float(self._cfg("kvm", "agent.timeout")) if timeout is None else timeout,
            pool=self.agents,
        )

    def _target(self, host: HostRef, row: KvmHostVO, timeout: float | None = None) -> ssh.SshTarget:
        return ssh.SshTarget(
            host.managementIp,
            row.sshPort,
            row.username,
            row.password,
            row.sshPrivateKey,
            float(self._cfg("kvm", "ssh.timeout")) if timeout is None else timeout,
        )

    # ----------------------------------------------------------------- HostType

    async def connect(self, host: HostRef, params: Mapping[str, Any]) -> None:
        await self.endpoint.ensure_started(host.managementIp)
        full = bool(params)
        row = self._record(host, params) if full else self._row(host.uuid)
        config = self._agent_config(host)
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        if not full and row.configDigest == digest and row.agentVersion == self.agent_version:
            try:
                await self._echo(host, row, timeout=5.0)
                self._health.pop(host.uuid, None)
                await self._publish_vm_states(host, row)
                return
            except ZmnError as exc:
                log.info("agent of host %s does not answer (%s); going over SSH", host.name, exc)
        if row.hostKey is None:
            row.hostKey = await self.deployer.host_key(self._target(host, row))
            self._save(host.uuid, hostKey=row.hostKey)
            log.info(
                "host %s (%s): SSH host key %s pinned on first contact",
                host.name,
                host.managementIp,
                ssh.fingerprint(row.hostKey),
            )
        request = DeployRequest(
            host.uuid,
            self._target(host, row),
            row.hostKey,
            row.agentSecret,
            config,
            full,
            package_mirror=str(self._cfg("kvm", "host.packageMirror") or ""),
        )
        outcome = await self.deployer.deploy(request)
        self.agents.drop(host.managementIp)  # the agent may have restarted: no kept ones
        row.agentPort = outcome.agent_port
        self._save(
            host.uuid,
            agentPort=outcome.agent_port,
            agentVersion=outcome.agent_version,
            configDigest=digest,
            **({"deployDate": utcnow()} if outcome.deployed else {}),
        )
        await self._wait_echo(host, row, float(self._cfg("kvm", "agent.startTimeout")))
        self._health.pop(host.uuid, None)
        await migration.sync_trust(self, host.clusterUuid)
        await self._publish_vm_states(host, row)

    async def facts(self, host: HostRef) -> HostFacts:
        row = self._row(host.uuid)
        facts = await self.client(host, row).get("/v1/host/facts")
        try:
            cpu = int(facts["cpuNum"])
            memory = int(facts["memorySize"])
        except (KeyError, TypeError, ValueError):
            raise OperationFailed(
                f"agent of host {host.name} sent facts without cpuNum/memorySize",
                code="KVM.AGENT_BAD_ANSWER",
            ) from None
        self._write_fact_tags(host.uuid, facts)
        return HostFacts(cpuNum=cpu, cpuCapacity=cpu, memoryCapacity=memory)

    async def ping(self, host: HostRef) -> None:
        health = self._health.setdefault(host.uuid, _Health())
        now = time.monotonic()
        if health.next_try > now:
            raise Unavailable(
                f"agent of host {host.name} missed {health.failures} pings; next try in"
                f" {health.next_try - now:.0f} s",
                code="KVM.AGENT_BACKOFF",
            )
        try:
            await self._echo(host, self._row(host.uuid))
        except ZmnError:
            health.failures += 1
            max_failure = int(self._cfg("host", "ping.maxFailure"))
            if health.failures >= max_failure:
                base = float(self._cfg("host", "ping.interval"))
                cap = float(self._cfg("kvm", "reconnect.maxBackoff"))
                delay = min(cap, base * 2 ** (health.failures - max_failure))
                health.next_try = now + delay * random.uniform(0.5, 1.0)  # noqa: S311 - retry jitter, not a secret
            raise
        self._health.pop(host.uuid, None)
        try:  # local storage capacity stays current with the pings
            await storage.sync_after_ping(self, host)
        except Exception as exc:
            log.warning("host %s: local storage capacity not refreshed: %s", host.name, exc)

    async def disconnect(self, host: HostRef) -> None:
        """Stop the agent when it can be reached (best effort) and forget the host."""
        self._health.pop(host.uuid, None)
        self.endpoint.forget(host.uuid)
        self.agents.drop(host.managementIp)
        with self.node.db.tx() as s:
            row = s.get(KvmHostVO, host.uuid)
            if row is not None:
                s.expunge(row)
        row = row or self._known.get(host.uuid)
        self._known.pop(host.uuid, None)
        if row is not None and row.hostKey is not None:
            request = DeployRequest(
                host.uuid, self._target(host, row, 10.0), row.hostKey, row.agentSecret, {}, False
            )
            try:
                await asyncio.wait_for(self.deployer.stop(request), 30)
            except Exception as exc:
                log.warning("could not stop the agent of host %s: %s", host.name, exc)
        with self.node.db.tx() as s:
            s.execute(delete(KvmHostVO).where(KvmHostVO.uuid == host.uuid))

    # ----------------------------------------------------------------- HypervisorDriver

    async def vm_op(
        self, host: HostRef, op: str, vm: Mapping[str, Any], args: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await vmops.vm_op(self, host, op, vm, args)

    async def apply_security_group_rules(
        self, host: HostRef, vm_nic_uuid: str, rules: list[dict[str, Any]]
    ) -> None:
        """One NIC's effective rules to its host's agent, which merges them into the host's
        nftables document (an empty list clears the NIC)."""
        found = self.planner.nic_mac(vm_nic_uuid)
        if found is None:
            if rules:  # refused rather than ignored: rules that silently do nothing are a hole
                raise OperationFailed(
                    f"NIC {vm_nic_uuid} does not exist; its rules cannot be applied",
                    code="KVM.NO_SUCH_NIC",
                )
            return
        mac, _vm = found
        client = self.client(host, self._row(host.uuid))
        await client.post("/v1/network/nic/rules", {"mac": mac, "rules": agent_rules(rules)})

    def record(self, uuid: str) -> KvmHostVO:
        return self._row(uuid)

    def ssh_target(self, host: HostRef, row: KvmHostVO) -> ssh.SshTarget:
        return self._target(host, row)

    # ----------------------------------------------------------------- helpers

    def _record(self, host: HostRef, params: Mapping[str, Any]) -> KvmHostVO:
        """Create (or refresh, for a retried add) the host's KVM record."""
        with self.node.db.tx() as s:
            row = s.get(KvmHostVO, host.uuid)
            if row is None:
                row = KvmHostVO(
                    uuid=host.uuid,
                    agentSecret=agentauth.new_secret(),
                    agentPort=int(self._cfg("kvm", "agent.port")),
                    username=str(params["username"]),
                )
                s.add(row)
            row.username = str(params["username"])
            row.sshPort = int(params.get("sshPort") or 22)
            row.password = params.get("password")
            row.sshPrivateKey = params.get("sshPrivateKey")
            s.flush()
            s.expunge(row)
        self._known[host.uuid] = row
        return row

    def _save(self, uuid: str, **values: Any) -> None:
        with self.node.db.tx() as s:
            row = s.get(KvmHostVO, uuid)
            if row is not None:
                for key, value in values.items():
                    setattr(row, key, value)

    def _agent_config(self, host: HostRef) -> dict[str, Any]:
        return {
            "listen": "0.0.0.0",  # noqa: S104 - the agent serves the management network
            "port": int(self._cfg("kvm", "agent.port")),
            "callback_url": self.endpoint.callback_url(host.uuid, host.managementIp),
            "libvirt_uri": str(self._cfg("kvm", "libvirt.uri")),
            "metrics_interval": int(self._cfg("kvm", "agent.metricsInterval")),
            "kvm": {"auto": "auto", "kvm": "yes", "tcg": "no"}[
                str(self._cfg("kvm", "host.virtualization"))
            ],
        }

    async def _echo(self, host: HostRef, row: KvmHostVO, timeout: float | None = None) -> None:
        token = secrets.token_urlsafe(12)
        answer = await self.client(host, row, timeout).get(f"/v1/ping?echo={token}")
        if answer.get("echo") != token or answer.get("hostUuid") != host.uuid:
            raise OperationFailed(
                f"the agent at {host.managementIp}:{row.agentPort} is not host {host.name}'s"
                f" (it says host {answer.get('hostUuid')})",
                code="KVM.AGENT_MISMATCH",
            )

    async def _publish_vm_states(self, host: HostRef, row: KvmHostVO) -> None:
        """What the hypervisor runs, published as ``/host/vm/states`` after every connect so
        the VM service can sync its VMs with the host's truth (best effort)."""
        listed_at = time.time()  # VMs changed after this are newer than the listing
        try:
            listing = await self.client(host, row).get("/v1/vm/list")
        except ZmnError as exc:
            log.warning("could not list the VMs of host %s: %s", host.name, exc)
            return
        vms = [
            {"vmUuid": d.get("uuid"), "state": d.get("state")}
            for d in listing.get("vms") or []
            if isinstance(d, dict)
        ]
        await self.node.bus.publish(
            STATES_EVENT, {"hostUuid": host.uuid, "vms": vms, "time": listed_at}
        )

    async def _wait_echo(self, host: HostRef, row: KvmHostVO, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self._echo(host, row, timeout=5.0)
                return
            except (Unavailable, Timeout) as exc:
                if time.monotonic() >= deadline:
                    raise Timeout(
                        f"the agent of host {host.name} did not answer within {timeout:g} s"
                        f" after it was started: {exc.message}",
                        code="KVM.AGENT_START_TIMEOUT",
                    ) from exc
                await asyncio.sleep(0.2)

    def _write_fact_tags(self, uuid: str, facts: Mapping[str, Any]) -> None:
        """System tags from the facts (inherent: the node keeps them current)."""
        wanted = []
        for pattern, key, token in FACT_TAGS:
            value = facts.get(key)
            if value:
                wanted.append(pattern.make(**{token: str(value)}))
        prefixes = [p.pattern.split("{", 1)[0] for p, _k, _t in FACT_TAGS]
        with self.node.db.tx() as s:
            s.execute(
                delete(TagVO).where(
                    TagVO.resourceUuid == uuid,
                    TagVO.type == "System",
                    TagVO.inherent.is_(True),
                    or_(*(TagVO.tag.like(p.replace("%", r"\%") + "%") for p in prefixes)),
                )
            )
            for tag in wanted:
                s.add(
                    TagVO(
                        uuid=new_uuid(),
                        resourceUuid=uuid,
                        resourceType="Host",
                        type="System",
                        tag=tag,
                        inherent=True,
                    )
                )

    def secret_of(self, uuid: str) -> str | None:
        with self.node.db.tx() as s:
            return s.scalar(select(KvmHostVO.agentSecret).where(KvmHostVO.uuid == uuid))
