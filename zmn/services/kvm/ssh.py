"""SSH to KVM hosts with fabric, the host key pinned and never auto-accepted.

First contact (no key stored yet) reads the key the host offers during the key exchange,
before any login, and returns it for the caller to store (trust on first use). Every later
connection loads exactly that key into a fresh paramiko client with ``RejectPolicy`` and no
known_hosts files or ssh_config: a host that shows another key fails during the key exchange,
so no password is sent and no command runs. :class:`Remote` wraps the open connection with
the few operations the playbook runner needs (run, upload), running them under ``sudo -n``
when the login user is not root.

Everything here blocks; the node calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
import shlex
import socket
from dataclasses import dataclass
from typing import Any

import fabric
import paramiko  # type: ignore[import-untyped]

from zmn.api.errors import InvalidArgument, OperationFailed, Unavailable


class HostKeyChanged(OperationFailed):
    """The host offered an SSH key other than the one pinned on first contact."""

    default_code = "KVM.HOST_KEY_CHANGED"


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    username: str
    password: str | None = None
    key_file: str | None = None
    timeout: float = 30.0

    def __repr__(self) -> str:  # never show the password
        return f"SshTarget({self.username}@{self.host}:{self.port})"

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def key_to_text(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def key_from_text(text: str) -> paramiko.PKey:
    kind, _, data = text.strip().partition(" ")
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def fingerprint(key: paramiko.PKey | str) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    pkey = key_from_text(key) if isinstance(key, str) else key
    digest = hashlib.sha256(pkey.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _unreachable(target: SshTarget, exc: BaseException) -> Unavailable:
    return Unavailable(
        f"cannot reach SSH on {target.host}:{target.port}: {type(exc).__name__}: {exc}",
        code="KVM.SSH_UNREACHABLE",
        field="managementIp",
    )


def first_contact_key(target: SshTarget) -> str:
    """The host key the server offers, read during key exchange only (no login)."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=target.timeout)
    except OSError as exc:
        raise _unreachable(target, exc) from exc
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=target.timeout)
        return key_to_text(transport.get_remote_server_key())
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise _unreachable(target, exc) from exc
    finally:
        transport.close()


def open_connection(target: SshTarget, pinned_key: str) -> fabric.Connection:
    """A connected fabric Connection that trusts ``pinned_key`` and nothing else."""
    connect_kwargs: dict[str, Any] = {
        "look_for_keys": False,
        "allow_agent": False,
        "banner_timeout": target.timeout,
        "auth_timeout": target.timeout,
    }
    if target.key_file:
        connect_kwargs["key_filename"] = target.key_file
    if target.password:
        connect_kwargs["password"] = target.password
    config = fabric.Config(overrides={"load_ssh_configs": False})
    conn = fabric.Connection(
        target.host,
        user=target.username,
        port=target.port,
        config=config,
        connect_timeout=target.timeout,
        connect_kwargs=connect_kwargs,
    )
    client = paramiko.SSHClient()  # not fabric's: no AutoAddPolicy, no known_hosts files
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    pkey = key_from_text(pinned_key)
    client.get_host_keys().add(target.known_hosts_name, pkey.get_name(), pkey)
    conn.client = client
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        conn.close()
        raise HostKeyChanged(
            f"SSH host key of {target.host}:{target.port} changed: pinned"
            f" {fingerprint(pkey)}, offered {fingerprint(exc.key)}. Nothing was run on the"
            " host. If the host was reinstalled on purpose, delete and re-add it.",
            code="KVM.HOST_KEY_CHANGED",
            field="managementIp",
            pinned=fingerprint(pkey),
            offered=fingerprint(exc.key),
        ) from None
    except paramiko.AuthenticationException as exc:
        conn.close()
        raise OperationFailed(
            f"SSH login to {target.username}@{target.host}:{target.port} failed: {exc}",
            code="KVM.SSH_AUTH_FAILED",
            field="password" if target.password else "sshPrivateKey",
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        conn.close()
        raise _unreachable(target, exc) from exc
    return conn


@dataclass
class RunResult:
    exited: int
    stdout: str
    stderr: str


class Remote:
    """Commands and uploads on one open connection (through ``sudo -n`` unless root)."""

    def __init__(self, conn: fabric.Connection, *, sudo: bool, timeout: float = 600.0) -> None:
        self.conn = conn
        self.sudo = sudo
        self.timeout = timeout
        self.commands: list[str] = []  # what ran, in order (tests, the deployment log)

    def run(self, command: str, *, check: bool = True) -> RunResult:
        line = f"sudo -n sh -c {shlex.quote(command)}" if self.sudo else command
        self.commands.append(command)
        try:
            res = self.conn.run(
                line, hide=True, warn=True, in_stream=False, timeout=self.timeout, pty=False
            )
        except Exception as exc:  # invoke's CommandTimedOut, paramiko errors
            raise Unavailable(
                f"SSH command on {self.conn.host} failed: {type(exc).__name__}: {exc}",
                code="KVM.SSH_UNREACHABLE",
            ) from exc
        result = RunResult(int(res.exited), str(res.stdout), str(res.stderr))
        if check and result.exited != 0:
            raise OperationFailed(
                f"command on {self.conn.host} exited {result.exited}: {command}\n"
                f"{_tail(result.stderr or result.stdout)}",
                code="KVM.DEPLOY_FAILED",
                exitStatus=result.exited,
            )
        return result

    def upload(self, data: bytes, dest: str, mode: int) -> None:
        """Write ``dest`` with ``mode`` through a private temporary directory, so the content
        is never readable by others on the host and never appears in a command line."""
        if not dest.startswith("/") or "\n" in dest:
            raise InvalidArgument(f"upload destination must be an absolute path: {dest!r}")
        tmpdir = self._plain("mktemp -d").stdout.strip()
        tmp = posixpath.join(tmpdir, "upload")
        try:
            self.conn.sftp().putfo(io.BytesIO(data), tmp)
        except Exception:
            self._plain(f"rm -rf {shlex.quote(tmpdir)}", check=False)
            raise
        parent = posixpath.dirname(dest)
        try:
            self.run(
                f"mkdir -p {shlex.quote(parent)} && install -m {mode:04o} {shlex.quote(tmp)}"
                f" {shlex.quote(dest)}; rc=$?; rm -rf {shlex.quote(tmpdir)}; exit $rc"
            )
        except OperationFailed:
            self._plain(f"rm -rf {shlex.quote(tmpdir)}", check=False)
            raise

    def _plain(self, command: str, check: bool = True) -> RunResult:
        """A command as the login user (temporary files the user owns)."""
        self.commands.append(command)
        res = self.conn.run(command, hide=True, warn=True, in_stream=False, timeout=self.timeout)
        result = RunResult(int(res.exited), str(res.stdout), str(res.stderr))
        if check and result.exited != 0:
            raise OperationFailed(
                f"command on {self.conn.host} exited {result.exited}: {command}",
                code="KVM.DEPLOY_FAILED",
            )
        return result

    def close(self) -> None:
        self.conn.close()


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
