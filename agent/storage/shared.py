"""The agent's side of shared primary storage (SharedMountPoint, NFS).

A shared primary storage is one directory ``DIR`` that every host of its clusters sees (a
mount of some shared file system). Its layout is the local storage's (``DIR/cache``,
``DIR/volumes``), so every host opens the same files by the same paths, plus a marker file:

    DIR/zstack_smp_id      {"primaryStorageUuid": ..., "nonce": ...}

The node makes the identity; the first host that sees the directory writes the marker
(``O_CREAT|O_EXCL``: two hosts never both write it); every host reads it. A host that finds no
marker, or another one, is not looking at the same directory and must not put volumes there.

Routes (POST, signed like every agent request):

* ``/v1/storage/shared/check {path, primaryStorageUuid, nonce, write}``: ``status``
  ``Connected`` with the ``statvfs`` capacity when the marker is there and matches; else
  ``Disconnected`` with a ``reason`` that names the fix; ``marker`` is ``ok``, ``missing``,
  ``other`` or ``unknown`` (no directory). ``write``: make the marker when it is
  missing (only the node's first host of a new storage is asked to).
* ``/v1/storage/nfs/mount {url, path, options, timeout}``: ``mount -t nfs -o OPTIONS URL PATH``
  under ``timeout`` (an NFS server that does not answer fails within it); a no-op when
  ``url`` is already mounted at ``path``.
* ``/v1/storage/nfs/umount {path}``: ``umount`` (a no-op when nothing is mounted there).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any

from agent import validate as v
from agent.network.executor import Executor
from zmn.api.errors import InvalidArgument, OperationFailed

Body = dict[str, Any]
MARKER = "zstack_smp_id"
NFS_URL = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<export>/[^\s,]*)$")
OPTIONS = re.compile(r"^[A-Za-z0-9_=.,:\-]*$")


def marker_body(ps_uuid: str, nonce: str) -> str:
    return json.dumps({"primaryStorageUuid": ps_uuid, "nonce": nonce}, sort_keys=True)


def read_marker(root: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(root, MARKER), encoding="utf-8") as f:
            got = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def write_marker(root: str, ps_uuid: str, nonce: str) -> None:
    """Create the marker once (``O_EXCL``: a marker another host wrote first is kept)."""
    path = os.path.join(root, MARKER)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(marker_body(ps_uuid, nonce))
        f.flush()
        os.fsync(f.fileno())


def check(root: str, ps_uuid: str, nonce: str, write: bool) -> Body:
    """What this host sees at ``root`` (see the module docstring)."""

    def down(reason: str, marker: str = "unknown") -> Body:
        return {"path": root, "status": "Disconnected", "reason": reason, "marker": marker}

    if not os.path.isdir(root):
        return down(
            f"{root} does not exist on this host: mount the shared file system there (the same"
            " one on every host of the cluster)"
        )
    if write:
        try:
            write_marker(root, ps_uuid, nonce)
        except OSError as exc:
            return down(f"cannot write the marker {MARKER} in {root}: {exc.strerror}")
    got = read_marker(root)
    if got is None:
        return down(
            f"{root} on this host has no marker file {MARKER} (another host of the cluster wrote"
            " it): this host does not see the same shared directory; mount the shared file"
            " system at this path",
            "missing",
        )
    if got.get("primaryStorageUuid") != ps_uuid or got.get("nonce") != nonce:
        owner = got.get("primaryStorageUuid") or "an unreadable marker"
        return down(
            f"{root} on this host holds the marker of another storage ({owner}): it is not the"
            " same shared directory as on the other hosts; mount the right file system there",
            "other",
        )
    try:
        for sub in ("cache", "volumes"):
            os.makedirs(os.path.join(root, sub), mode=0o755, exist_ok=True)
        st = os.statvfs(root)
    except OSError as exc:
        return down(f"cannot use {root}: {exc.strerror}")
    return {
        "path": root,
        "status": "Connected",
        "reason": None,
        "marker": "ok",
        "totalCapacity": st.f_blocks * st.f_frsize,
        "availableCapacity": st.f_bavail * st.f_frsize,
    }


def mounted_at(path: str, mountinfo: str) -> str | None:
    """The source mounted at ``path`` per ``/proc/self/mountinfo`` text (the last mount)."""
    found = None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) >= 5 and fields[4].replace("\\040", " ") == path:
            rest = right.split()
            found = rest[1] if len(rest) >= 2 else ""
    return found


class SharedStorageCommands:
    """Routes for shared primary storage; system changes only through ``executor``."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def routes(self) -> dict[tuple[str, str], Any]:
        from agent.commands import Route

        return {
            ("POST", "/v1/storage/shared/check"): Route(self.shared_check),
            ("POST", "/v1/storage/nfs/mount"): Route(self.nfs_mount, long=True),
            ("POST", "/v1/storage/nfs/umount"): Route(self.nfs_umount),
        }

    def shared_check(self, body: Body, _query: dict[str, str]) -> Body:
        root = v.abspath(body.get("path"), "path")
        ps_uuid = v.uuid(body.get("primaryStorageUuid"), "primaryStorageUuid")
        nonce = v.token(body.get("nonce"), "nonce")
        write = v.boolean(body.get("write", False), "write")
        return check(root, ps_uuid, nonce, write)

    def _mountinfo(self) -> str:
        return self.executor.read_file("/proc/self/mountinfo") or ""

    def nfs_mount(self, body: Body, _query: dict[str, str]) -> Body:
        url = v.string(body.get("url"), "url", max_len=1024)
        if not NFS_URL.match(url):
            raise InvalidArgument(
                f"url: {url!r} is not HOST:/export (e.g. 192.168.0.5:/exports/zstack)", field="url"
            )
        path = v.abspath(body.get("path"), "path")
        options = v.string(body.get("options", ""), "options", max_len=1024, allow_empty=True)
        if not OPTIONS.match(options):
            raise InvalidArgument(
                f"options: {options!r} must be comma-separated mount options (no spaces)",
                field="options",
            )
        timeout = v.integer(body.get("timeout", 60), "timeout", lo=1, hi=3600)
        current = mounted_at(path, self._mountinfo())
        if current == url:
            return {"url": url, "path": path, "mounted": False}
        if current is not None:
            raise OperationFailed(
                f"path: {path} already has {current or 'another file system'} mounted; unmount"
                " it or use another mount path",
                code="AGENT.NFS_MOUNT_BUSY",
                field="path",
            )
        os.makedirs(path, mode=0o755, exist_ok=True)
        argv = ["timeout", "--kill-after=5", str(timeout), "mount", "-t", "nfs"]
        if options:
            argv += ["-o", options]
        res = self.executor.run([*argv, url, path], check=False)
        if res.returncode in (124, 137):
            raise OperationFailed(
                f"url: the NFS server of {url} did not answer within {timeout} s: check the server"
                " is up, reachable from this host and exports the path to it",
                code="AGENT.NFS_TIMEOUT",
                field="url",
            )
        if res.returncode != 0:
            raise OperationFailed(
                f"url: mount -t nfs {url} failed ({res.returncode}): "
                f"{res.stderr.strip()[:500]}; check the export and the options in the global"
                " config nfsPrimaryStorage/mount.options",
                code="AGENT.NFS_MOUNT_FAILED",
                field="url",
            )
        return {"url": url, "path": path, "mounted": True}

    def nfs_umount(self, body: Body, _query: dict[str, str]) -> Body:
        path = v.abspath(body.get("path"), "path")
        if mounted_at(path, self._mountinfo()) is None:
            return {"path": path, "unmounted": False}
        self.executor.run(["umount", path])
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return {"path": path, "unmounted": True}
