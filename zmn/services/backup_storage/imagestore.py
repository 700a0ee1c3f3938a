"""Image store backup storage: a directory on a machine the node reaches over SSH.

The SSH side is the KVM plugin's (:mod:`zmn.services.kvm.ssh`): fabric with the host key
pinned on first contact and never auto-accepted, so a machine showing another key is refused
before any login. Images live in ``URL/images/<imageUuid>.<format>``.

How bytes move (no agent, daemon or HTTP server is needed on the storage machine):

* ``AddImage``: the node reads the source (a ``file://`` path on its own machine, or an
  ``http(s)://`` download) and streams it over SFTP into a ``.part`` file, hashing as it goes,
  then renames it into place; size and SHA-256 are recorded on the image.
* a host needing an image for a root volume: the node streams it over SFTP from the store into
  the host's cache (see :mod:`zmn.services.kvm.storage`), checking the SHA-256.

Everything here blocks; callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import posixpath
import secrets
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from zmn.api.errors import OperationFailed, ZmnError
from zmn.services.kvm import ssh

CHUNK = 1 << 20


@dataclass(frozen=True)
class Access:
    hostname: str
    port: int
    username: str
    password: str | None
    key_file: str | None
    host_key: str | None
    url: str
    timeout: float = 30.0

    def __repr__(self) -> str:  # never show the password
        return f"Access({self.username}@{self.hostname}:{self.port}{self.url})"

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Access:
        return cls(
            str(d["hostname"]),
            int(d["sshPort"]),
            str(d["username"]),
            d.get("password"),
            d.get("sshPrivateKey"),
            d.get("hostKey"),
            str(d["url"]),
        )

    @property
    def target(self) -> ssh.SshTarget:
        return ssh.SshTarget(
            self.hostname, self.port, self.username, self.password, self.key_file, self.timeout
        )

    def image_path(self, image_uuid: str, fmt: str) -> str:
        return posixpath.join(self.url, "images", f"{image_uuid}.{fmt}")


def renamed(err: ZmnError, field: str) -> ZmnError:
    """The same error naming this API's field (``hostname`` rather than ``managementIp``)."""
    details = dict(err.details)
    old = details.pop("field", None)
    if old in ("password", "sshPrivateKey"):
        field = str(old)
    return type(err)(err.message, code=err.code, field=field, **details)


def first_contact(access: Access) -> str:
    try:
        return ssh.first_contact_key(access.target)
    except ZmnError as err:
        raise renamed(err, "hostname") from None


def open_conn(access: Access) -> Any:
    if access.host_key is None:
        raise OperationFailed(f"{access!r} has no pinned host key", code="KVM.NO_RECORD")
    try:
        return ssh.open_connection(access.target, access.host_key)
    except ZmnError as err:
        raise renamed(err, "hostname") from None


def prepare(access: Access) -> tuple[int, int]:
    """Make ``URL/images``; the (total, free) bytes of the file system holding it."""
    conn = open_conn(access)
    try:
        images = shlex.quote(posixpath.join(access.url, "images"))
        res = conn.run(
            f"mkdir -p {images} && df -P -B1 {images} | tail -n 1",
            hide=True, warn=True, in_stream=False,
        )  # fmt: skip
        fields = str(res.stdout).split()
        if res.exited != 0 or len(fields) < 4 or not fields[1].isdigit():
            raise OperationFailed(
                f"url: cannot use {access.url} on {access.hostname}:"
                f" {(res.stderr or res.stdout).strip()}",
                code="BACKUP_STORAGE.BAD_URL",
                field="url",
            )
        return int(fields[1]), int(fields[3])
    finally:
        conn.close()


def upload(access: Access, chunks: Iterable[bytes], dest: str) -> tuple[int, str]:
    """Stream ``chunks`` to ``dest`` (via ``dest.part-*`` and a rename); (bytes, sha256)."""
    conn = open_conn(access)
    try:
        sftp = conn.sftp()
        tmp = f"{dest}.part-{secrets.token_hex(4)}"
        digest, size = hashlib.sha256(), 0
        try:
            with sftp.open(tmp, "wb") as out:
                out.set_pipelined(True)
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            sftp.posix_rename(tmp, dest)
        except BaseException:
            try:
                sftp.remove(tmp)
            except OSError:
                pass
            raise
        return size, digest.hexdigest()
    finally:
        conn.close()


def remove(access: Access, path: str) -> None:
    conn = open_conn(access)
    try:
        try:
            conn.sftp().remove(path)
        except FileNotFoundError:
            pass
    finally:
        conn.close()
