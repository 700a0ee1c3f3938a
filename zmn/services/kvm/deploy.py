"""Putting zagent on a host: the playbook over SSH, with the host key pinned.

:class:`SshDeployer` is what production uses. The host type talks to a :class:`Deployer`
only, so tests can swap in one that starts an agent in-process.

A deployment runs the playbook's plays on one SSH connection: ``probe`` (which agent version
is installed), ``deploy`` when a full deployment is asked for or the agent is missing or of
another version, then ``configure`` (secret, config, restart if they changed, start).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from zmn.services.kvm import ssh
from zmn.services.kvm.playbook import Playbook, PlaybookRun
from zmn.services.kvm.wheelhouse import agent_version, ensure_wheelhouse

log = logging.getLogger("zmn.kvm.deploy")


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


class SshDeployer:
    def __init__(self, playbook: Path, wheelhouse: Path) -> None:
        self.playbook_path = playbook
        self.wheelhouse_dir = wheelhouse

    async def host_key(self, target: ssh.SshTarget) -> str:
        return await asyncio.to_thread(ssh.first_contact_key, target)

    async def deploy(self, req: DeployRequest) -> DeployOutcome:
        book = Playbook.load(self.playbook_path)
        version = await asyncio.to_thread(agent_version)
        return await asyncio.to_thread(self._deploy, book, req, version)

    async def stop(self, req: DeployRequest) -> None:
        book = Playbook.load(self.playbook_path)
        await asyncio.to_thread(self._stop, book, req)

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
