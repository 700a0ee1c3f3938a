"""zagent's configuration file (YAML, one mapping) and the per-host secret.

    # /etc/zagent/zagent.yaml
    listen: 0.0.0.0
    port: 7070
    secret_file: /etc/zagent/secret     # made at deployment, mode 0600
    callback_url: http://10.0.0.1:8181/agent/v1/report
    libvirt_uri: qemu:///system
    state_dir: /var/lib/zagent
    host_uuid: 7c0d...                   # the node's Host UUID (else made, kept in state_dir)
    tls_cert: /etc/zagent/tls.crt        # with tls_key: serve HTTPS; tls_client_ca: mutual TLS

Unknown keys are refused (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import os
import stat
import uuid as uuidlib
from dataclasses import dataclass, fields
from typing import Any

import yaml

from agent import validate as v
from zmn.api.errors import InvalidArgument


@dataclass
class AgentConfig:
    listen: str = "0.0.0.0"  # noqa: S104 - an agent serves the management network
    port: int = 7070
    secret_file: str = "/etc/zagent/secret"  # noqa: S105 - a path, not a secret
    callback_url: str | None = None
    callback_ca: str | None = None
    libvirt_uri: str = "qemu:///system"
    driver: str = "libvirt"  # libvirt | fake
    kvm: str = "auto"  # auto | yes | no
    state_dir: str = "/var/lib/zagent"
    # where the migration peers' keys go (agent/migration.py); empty: /root/.ssh with the
    # libvirt driver (libvirtd runs as root), state_dir/migration/ssh with the fake one
    migration_ssh_dir: str = ""  # migration peers' authorized_keys/known_hosts; empty: /root/.ssh
    host_uuid: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    ip_path: str = "ip"
    dnsmasq_path: str = "dnsmasq"
    nft_path: str = "nft"
    network: str = "system"  # system | dry-run (record commands, run nothing)
    clock_skew: int = 300
    max_body: int = 4 * 1024 * 1024
    task_workers: int = 8
    request_timeout: float = 30.0
    metrics_interval: float = 10.0  # seconds between usage reports to the node; 0: none
    header_timeout: float = 10.0  # request line and headers must arrive within this
    max_connections: int = 64  # connections (and threads) served at once; more are closed
    log_level: str = "INFO"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> AgentConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidArgument(
                f"unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})",
                code="AGENT.BAD_CONFIG",
            )
        cfg = cls(**data)
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: str) -> AgentConfig:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise InvalidArgument(f"{path}: must hold a YAML mapping", code="AGENT.BAD_CONFIG")
        return cls.from_mapping(data)

    def validate(self) -> None:
        v.integer(self.port, "port", lo=0, hi=65535)
        v.choice(self.driver, "driver", ("libvirt", "fake"))
        v.choice(self.kvm, "kvm", ("auto", "yes", "no"))
        v.choice(self.network, "network", ("system", "dry-run"))
        v.integer(self.clock_skew, "clock_skew", lo=10, hi=3600)
        v.integer(self.task_workers, "task_workers", lo=1, hi=256)
        if (
            not isinstance(self.metrics_interval, int | float)
            or not 0 <= self.metrics_interval <= 3600
        ):
            raise v.bad("metrics_interval", "must be seconds between 0 (no reports) and 3600")
        v.integer(self.max_connections, "max_connections", lo=1, hi=4096)
        if self.callback_url is not None and not self.callback_url.startswith(
            ("http://", "https://")
        ):
            raise v.bad("callback_url", "must be an http:// or https:// URL")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise v.bad("tls_key", "tls_cert and tls_key go together")
        if self.host_uuid is not None:
            self.host_uuid = v.uuid(self.host_uuid, "host_uuid")

    @property
    def kvm_override(self) -> bool | None:
        return {"auto": None, "yes": True, "no": False}[self.kvm]


def read_secret(path: str) -> bytes:
    """The host secret; refused if group/other can read it or it is too short."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(
            f"cannot read secret file {path}: {exc}", code="AGENT.BAD_SECRET"
        ) from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise InvalidArgument(
            f"secret file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o});"
            " chmod 600 it",
            code="AGENT.BAD_SECRET",
        )
    with open(path, "rb") as f:
        secret = f.read().strip()
    if len(secret) < 32:
        raise InvalidArgument(
            f"secret in {path} is shorter than 32 characters", code="AGENT.BAD_SECRET"
        )
    return secret


def write_secret(path: str, secret: str) -> None:
    """Create the secret file with mode 0600 (refuses to overwrite an existing one)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")


def host_uuid(cfg: AgentConfig) -> str:
    """The configured host UUID, else the one kept in ``state_dir/host-uuid`` (made once)."""
    if cfg.host_uuid:
        return cfg.host_uuid
    path = os.path.join(cfg.state_dir, "host-uuid")
    try:
        with open(path, encoding="utf-8") as f:
            return v.uuid(f.read().strip(), path)
    except FileNotFoundError:
        pass
    os.makedirs(cfg.state_dir, exist_ok=True)
    value = uuidlib.uuid4().hex
    with open(path, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value
