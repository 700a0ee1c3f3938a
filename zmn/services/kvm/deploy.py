"""Putting zagent on a host: the playbook over SSH, with the host key pinned.

:class:`SshDeployer` is what production uses. The host type talks to a :class:`Deployer`
only, so tests can swap in one that starts an agent in-process.

A deployment runs the playbook's plays on one SSH connection: ``probe`` (which agent version
is installed), ``deploy`` when a full deployment is asked for or the agent is missing or of
another version, then ``configure`` (secret, config, restart if they changed, start).

Volume files for storage the agent does not make (:meth:`SshDeployer.prepare_volumes`, before
every VM start) go over an SSH connection kept open per host and login for
``IDLE_SECONDS``: a new connection (key exchange, login) on every start costed the node more
CPU than the rest of a VM create. A kept connection that fails is dropped and the command
is tried once more on a fresh one; one a command failed on is kept (the command failed, not
the connection). :meth:`SshDeployer.close` closes them (node stop).
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from zmn.api.errors import Unavailable
from zmn.services.kvm import ssh
from zmn.services.kvm.playbook import Playbook, PlaybookRun
from zmn.services.kvm.wheelhouse import agent_version, ensure_wheelhouse

log = logging.getLogger("zmn.kvm.deploy")

IDLE_SECONDS = 60.0  # a kept SSH connection unused this long is closed at the next use


@dataclass(frozen=True)
class DeployRequest:
    host_uuid: str
    target: ssh.SshTarget
    host_key: str  # the pinned key
    secret: str
    agent_config: dict[str, Any]  # zagent.yaml settings; the deployer adds its paths
    full: bool  # run the deploy play even when the right agent is installed
    package_mirror: str = ""  # global config kvm/host.packageMirror; empty: the host's repos

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"DeployRequest({self.host_uuid}, {self.target!r}, full={self.full})"


@dataclass
class DeployOutcome:
    agent_port: int
    agent_version: str
    deployed: bool  # the deploy play ran
    log: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


class Deployer(Protocol):
    async def host_key(self, target: ssh.SshTarget) -> str:
        """The key the host offers on first contact (no login, no command)."""

    async def deploy(self, req: DeployRequest) -> DeployOutcome:
        """Install/configure/start the agent (idempotent)."""

    async def stop(self, req: DeployRequest) -> None:
        """Stop the agent (the host is being deleted)."""

    async def prepare_volumes(
        self, target: ssh.SshTarget, host_key: str, volumes: list[dict[str, Any]]
    ) -> None:
        """Create the volume files missing on the host (empty), until the agent does storage."""


class SshDeployer:
    def __init__(self, playbook: Path, wheelhouse: Path) -> None:
        self.playbook_path = playbook
        self.wheelhouse_dir = wheelhouse
        # (target, pinned key) -> [connection, its lock, last use]; the lock makes one command
        # at a time use a connection, so another host's commands never wait for this one's
        self._kept: dict[tuple[ssh.SshTarget, str], list[Any]] = {}
        self._kept_lock = threading.Lock()

    async def host_key(self, target: ssh.SshTarget) -> str:
        return await asyncio.to_thread(ssh.first_contact_key, target)

    async def deploy(self, req: DeployRequest) -> DeployOutcome:
        book = Playbook.load(self.playbook_path)
        version = await asyncio.to_thread(agent_version)
        return await asyncio.to_thread(self._deploy, book, req, version)

    async def stop(self, req: DeployRequest) -> None:
        book = Playbook.load(self.playbook_path)
        await asyncio.to_thread(self._stop, book, req)

    async def prepare_volumes(
        self, target: ssh.SshTarget, host_key: str, volumes: list[dict[str, Any]]
    ) -> None:
        commands = []
        for v in volumes:
            path = str(v.get("installPath") or "")
            if not path.startswith("/"):
                continue
            p = shlex.quote(path)
            fmt = shlex.quote(str(v.get("format") or "qcow2"))
            commands.append(
                f"test -e {p} || {{ mkdir -p {shlex.quote(posixpath.dirname(path))} &&"
                f" qemu-img create -q -f {fmt} {p} {int(v.get('size') or 0)}; }}"
            )
        if commands:
            await asyncio.to_thread(self._run, target, host_key, " && ".join(commands))

    def _run(self, target: ssh.SshTarget, host_key: str, command: str) -> None:
        key = (target, host_key)
        now = time.monotonic()
        with self._kept_lock:
            stale = [
                k
                for k, e in self._kept.items()
                if k != key and now - e[2] > IDLE_SECONDS and not e[1].locked()
            ]
            dropped = [self._kept.pop(k) for k in stale]
            entry = self._kept.setdefault(key, [None, threading.Lock(), now])
        for conn, _lock, _used in dropped:
            if conn is not None:
                conn.close()
        with entry[1]:
            for attempt in (1, 2):
                conn = entry[0]
                if conn is not None and (
                    now - entry[2] > IDLE_SECONDS or not _alive(conn) or attempt == 2
                ):
                    conn.close()
                    conn = entry[0] = None
                reused = conn is not None
                if conn is None:
                    conn = entry[0] = ssh.open_connection(target, host_key)
                entry[2] = time.monotonic()
                try:
                    ssh.Remote(conn, sudo=target.username != "root").run(command)
                    return
                except Unavailable:  # the connection failed, not the command
                    if not reused or attempt == 2:
                        conn.close()
                        entry[0] = None
                        raise
                    log.info("kept SSH connection to %s failed; opening a new one", target)

    def close(self) -> None:
        """Close the kept SSH connections."""
        with self._kept_lock:
            kept, self._kept = list(self._kept.values()), {}
        for conn, _lock, _used in kept:
            if conn is not None:
                conn.close()

    def _variables(self, book: Playbook, req: DeployRequest) -> dict[str, Any]:
        v = book.vars
        config = {
            **req.agent_config,
            "secret_file": f"{v['etc_dir']}/secret",
            "state_dir": v["state_dir"],
            "host_uuid": req.host_uuid,
        }
        text = "# written by the management node; changes are overwritten\n" + yaml.safe_dump(
            config, sort_keys=True
        )
        return {
            "secret": req.secret + "\n",
            "config": text,
            "host_uuid": req.host_uuid,
            "package_mirror": req.package_mirror,
        }

    def _deploy(self, book: Playbook, req: DeployRequest, version: str) -> DeployOutcome:
        remote = ssh.Remote(ssh.open_connection(req.target, req.host_key), sudo=_sudo(req))
        try:
            run = PlaybookRun(book, remote, self._variables(book, req))
            run.play("probe")
            installed = str(run.variables.get("installed_version", ""))
            deployed = req.full or installed != version
            if deployed:
                wh = ensure_wheelhouse(self.wheelhouse_dir)
                run.variables.update(
                    wheelhouse=str(wh.path),
                    agent_version=wh.agent_version,
                    agent_wheel=wh.agent_wheel,
                )
                run.play("deploy")
            run.play("configure")
            log.info(
                "agent on host %s (%s): %s", req.host_uuid, req.target.host, "; ".join(run.log)
            )
            return DeployOutcome(
                int(req.agent_config.get("port", 7070)),
                version,
                deployed,
                list(run.log),
                list(remote.commands),
            )
        finally:
            remote.close()

    def _stop(self, book: Playbook, req: DeployRequest) -> None:
        remote = ssh.Remote(ssh.open_connection(req.target, req.host_key), sudo=_sudo(req))
        try:
            PlaybookRun(book, remote, self._variables(book, req)).play("stop")
        finally:
            remote.close()


def _sudo(req: DeployRequest) -> bool:
    return req.target.username != "root"


def _alive(conn: Any) -> bool:
    transport = conn.client.get_transport() if conn.client is not None else None
    return bool(transport is not None and transport.is_active())
