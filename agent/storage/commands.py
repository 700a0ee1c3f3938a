"""The agent's storage commands: local directories of qcow2 volumes (``qemu-img``).

A local primary storage is a directory ``ROOT`` on the host laid out as::

    ROOT/cache/<imageUuid>.<format>          images, fetched once per host (the node copies them)
    ROOT/volumes/<volumeUuid>/<volumeUuid>.qcow2   volumes; a root volume is a qcow2 overlay
                                                    whose backing file is its image in cache/

Routes (all POST, JSON bodies, signed like every agent request):

* ``/v1/storage/capacity {path}``: make ``ROOT`` (and ``cache/``, ``volumes/``); its
  ``statvfs`` as ``totalCapacity``/``availableCapacity`` bytes.
* ``/v1/storage/stat {path}``: whether a file exists and what ``qemu-img info`` says.
* ``/v1/storage/volume/create {path, size, format, backingFile?, backingFormat?}``: idempotent.
* ``/v1/storage/volume/delete {root, path}``: the file (and its empty directory); only inside
  ``root``.
* ``/v1/storage/volume/export {root, path, dest}`` (long): ``qemu-img convert -O qcow2`` of the
  volume with its backing chain into one stand-alone qcow2 ``dest`` (inside ``root``), the
  source of a template; refused while a running or paused VM holds the volume.
* ``/v1/storage/volume/snapshot {path, name, vmUuid?}``: an internal qcow2 snapshot. With
  ``qemu-img snapshot -c`` when no running domain holds the file; a running or paused VM's
  volume through libvirt instead (QEMU's own internal snapshot, without libvirt metadata), as
  QEMU holds the image's write lock.
* ``/v1/storage/volume/snapshot/delete {path, name, vmUuid?}``: the internal snapshot goes
  (``qemu-img snapshot -d``; a running or paused VM's through QEMU's monitor, ``delvm``).
  Idempotent: a snapshot or volume already gone is ``deleted: false``.
* ``/v1/storage/volume/snapshot/revert {path, name, vmUuid?}``: ``qemu-img snapshot -a``;
  refused (409 ``AGENT.VOLUME_IN_USE``) while a running or paused VM holds the file.
* ``/v1/storage/volume/resize {path, size, vmUuid?, target?}``: grow the volume's virtual size
  to ``size`` bytes; a running or paused VM's disk ``target`` through libvirt
  (``blockResize``, the guest sees it at once), otherwise ``qemu-img resize``. Shrinking is
  refused (400 ``VOLUME.SHRINK``); the same size is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import threading
import xml.etree.ElementTree as ET
from typing import Any

from agent import validate as v
from agent.storage import qemuimg
from zmn.api.errors import Conflict, InvalidArgument, NotFound, OperationFailed, ZmnError

Body = dict[str, Any]
FORMATS = ("qcow2", "raw")
MAX_SIZE = 1 << 50  # 1 PiB: far beyond any volume, catches unit mistakes


def _inside(root: str, path: str) -> bool:
    root = os.path.realpath(root)
    return os.path.commonpath([root, os.path.realpath(path)]) == root and (
        os.path.realpath(path) != root
    )


def stat(path: str) -> Body:
    if not os.path.exists(path):
        return {"path": path, "exists": False}
    meta = qemuimg.info(path)
    backing = meta.get("full-backing-filename") or meta.get("backing-filename")
    return {
        "path": path,
        "exists": True,
        "format": meta.get("format"),
        "virtualSize": int(meta.get("virtual-size") or 0),
        "actualSize": int(meta.get("actual-size") or 0),
        "backingFile": backing,
        "snapshots": [str(s.get("name")) for s in meta.get("snapshots") or []],
    }


class StorageCommands:
    """Routes for :class:`agent.server.AgentApp`; ``driver`` tells whether a VM is running."""

    def __init__(self, driver: Any, libvirt_uri: str | None = None) -> None:
        self.driver = driver
        self.libvirt_uri = libvirt_uri
        self._lock = threading.Lock()  # one create/delete at a time: they are quick

    def routes(self) -> dict[tuple[str, str], Any]:
        from agent.commands import Route

        return {
            ("POST", "/v1/storage/capacity"): Route(self.capacity),
            ("POST", "/v1/storage/stat"): Route(self.stat),
            ("POST", "/v1/storage/volume/create"): Route(self.volume_create),
            ("POST", "/v1/storage/volume/delete"): Route(self.volume_delete),
            ("POST", "/v1/storage/volume/export"): Route(self.volume_export, long=True),
            ("POST", "/v1/storage/volume/snapshot"): Route(self.volume_snapshot),
            ("POST", "/v1/storage/volume/snapshot/delete"): Route(self.snapshot_delete),
            ("POST", "/v1/storage/volume/snapshot/revert"): Route(self.snapshot_revert),
            ("POST", "/v1/storage/volume/resize"): Route(self.volume_resize),
        }

    def capacity(self, body: Body, _query: dict[str, str]) -> Body:
        root = v.abspath(body.get("path"), "path")
        try:
            for sub in ("", "cache", "volumes"):
                os.makedirs(os.path.join(root, sub), mode=0o755, exist_ok=True)
            st = os.statvfs(root)
        except OSError as exc:
            raise OperationFailed(
                f"path: cannot use {root} for storage: {exc.strerror}",
                code="AGENT.STORAGE_PATH",
                field="path",
            ) from None
        return {
            "path": root,
            "totalCapacity": st.f_blocks * st.f_frsize,
            "availableCapacity": st.f_bavail * st.f_frsize,
        }

    def stat(self, body: Body, _query: dict[str, str]) -> Body:
        return stat(v.abspath(body.get("path"), "path"))

    def volume_create(self, body: Body, _query: dict[str, str]) -> Body:
        path = v.abspath(body.get("path"), "path")
        fmt = v.choice(body.get("format", "qcow2"), "format", FORMATS)
        size = v.integer(body.get("size", 0), "size", lo=0, hi=MAX_SIZE)
        backing = body.get("backingFile")
        backing = None if backing is None else v.abspath(backing, "backingFile")
        backing_fmt = v.choice(body.get("backingFormat", "qcow2"), "backingFormat", FORMATS)
        if backing is not None and fmt != "qcow2":
            raise InvalidArgument("format: only a qcow2 volume can have a backing file",
                                  field="format")  # fmt: skip
        with self._lock:
            if os.path.exists(path):
                return stat(path)
            if backing is not None:
                if not os.path.exists(backing):
                    raise NotFound(
                        f"backingFile: {backing} is not on this host",
                        code="AGENT.BACKING_MISSING",
                        field="backingFile",
                    )
                size = max(size, int(qemuimg.info(backing).get("virtual-size") or 0))
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            tmp = f"{path}.creating"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            try:
                qemuimg.create(tmp, fmt, size, backing=backing, backing_fmt=backing_fmt)
                os.replace(tmp, path)  # a crash never leaves a half-made volume at ``path``
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            return stat(path)

    def volume_export(self, body: Body, _query: dict[str, str]) -> Body:
        root = v.abspath(body.get("root"), "root")
        path = v.abspath(body.get("path"), "path")
        dest = v.abspath(body.get("dest"), "dest")
        for field, p in (("path", path), ("dest", dest)):
            if not _inside(root, p):
                raise InvalidArgument(f"{field}: {p} is not inside {root}", field=field)
        if not os.path.exists(path):
            raise NotFound(f"path: {path} is not on this host", code="AGENT.VOLUME_MISSING",
                           field="path")  # fmt: skip
        vm = body.get("vmUuid")
        if vm is not None and self._active(v.uuid(vm, "vmUuid")):
            raise Conflict(
                f"vmUuid: VM {vm} is running; stop it before making a template of its volume",
                code="AGENT.VOLUME_IN_USE",
                field="vmUuid",
            )
        os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
        tmp = f"{dest}.exporting"
        try:
            qemuimg.run(["convert", "-q", "-O", "qcow2", path, tmp], timeout=3600)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return stat(dest)

    def volume_delete(self, body: Body, _query: dict[str, str]) -> Body:
        root = v.abspath(body.get("root"), "root")
        path = v.abspath(body.get("path"), "path")
        if not _inside(root, path):
            raise InvalidArgument(f"path: {path} is not inside {root}", field="path")
        with self._lock:
            try:
                os.unlink(path)
                deleted = True
            except FileNotFoundError:
                deleted = False
            parent = os.path.dirname(path)
            if parent != os.path.realpath(root) and _inside(root, parent):
                with contextlib.suppress(OSError):  # not empty, or gone: leave it
                    os.rmdir(parent)
        return {"path": path, "deleted": deleted}

    def volume_snapshot(self, body: Body, _query: dict[str, str]) -> Body:
        path = v.abspath(body.get("path"), "path")
        name = v.token(body.get("name"), "name")
        vm = body.get("vmUuid")
        vm_uuid = None if vm is None else v.uuid(vm, "vmUuid")
        if not os.path.exists(path):
            raise NotFound(f"path: {path} is not on this host", code="AGENT.NO_VOLUME",
                           field="path")  # fmt: skip
        if name in qemuimg.snapshot_names(path):
            return {"path": path, "name": name, "via": "existing"}
        if vm_uuid is not None and self._active(vm_uuid):
            self._libvirt_snapshot(vm_uuid, name)
            via = "libvirt"
        else:
            qemuimg.snapshot_create(path, name)
            via = "qemu-img"
        return {"path": path, "name": name, "via": via}

    def _snapshot_args(self, body: Body) -> tuple[str, str, str | None]:
        path = v.abspath(body.get("path"), "path")
        name = v.token(body.get("name"), "name")
        vm = body.get("vmUuid")
        return path, name, None if vm is None else v.uuid(vm, "vmUuid")

    def snapshot_delete(self, body: Body, _query: dict[str, str]) -> Body:
        path, name, vm_uuid = self._snapshot_args(body)
        if not os.path.exists(path) or name not in qemuimg.snapshot_names(path):
            return {"path": path, "name": name, "deleted": False}
        if vm_uuid is not None and self._active(vm_uuid):
            self._monitor(vm_uuid, f"delvm {name}")
            via = "monitor"
        else:
            qemuimg.snapshot_delete(path, name)
            via = "qemu-img"
        return {"path": path, "name": name, "deleted": True, "via": via}

    def snapshot_revert(self, body: Body, _query: dict[str, str]) -> Body:
        path, name, vm_uuid = self._snapshot_args(body)
        if not os.path.exists(path):
            raise NotFound(f"path: {path} is not on this host", code="AGENT.NO_VOLUME",
                           field="path")  # fmt: skip
        if vm_uuid is not None and self._active(vm_uuid):
            raise Conflict(
                f"VM {vm_uuid} is running on {path}; stop it before reverting the volume",
                code="AGENT.VOLUME_IN_USE",
            )
        if name not in qemuimg.snapshot_names(path):
            raise NotFound(f"name: {path} has no snapshot {name}", code="AGENT.NO_SNAPSHOT",
                           field="name")  # fmt: skip
        qemuimg.snapshot_apply(path, name)
        return {"path": path, "name": name, "reverted": True}

    def volume_resize(self, body: Body, _query: dict[str, str]) -> Body:
        path = v.abspath(body.get("path"), "path")
        size = v.integer(body.get("size"), "size", lo=1, hi=MAX_SIZE)
        vm = body.get("vmUuid")
        vm_uuid = None if vm is None else v.uuid(vm, "vmUuid")
        if vm_uuid is not None and self._active(vm_uuid):
            target = v.token(body.get("target"), "target")
            got = self.driver.resize_disk(vm_uuid, target, size)
            return {"path": path, "virtualSize": int(got), "via": "libvirt"}
        if not os.path.exists(path):
            raise NotFound(f"path: {path} is not on this host", code="AGENT.NO_VOLUME",
                           field="path")  # fmt: skip
        have = int(qemuimg.info(path).get("virtual-size") or 0)
        if size < have:
            raise InvalidArgument(
                f"size: {path} is {have} bytes; a volume only grows",
                code="VOLUME.SHRINK",
                field="size",
            )
        if size > have:
            qemuimg.run(["resize", "-q", path, str(size)])
        return {"path": path, "virtualSize": size, "via": "qemu-img"}

    def _active(self, vm_uuid: str) -> bool:
        if self.libvirt_uri is None:
            return False  # the fake driver holds no image open
        try:
            return self.driver.state(vm_uuid) in ("Running", "Paused")
        except ZmnError as err:
            if err.kind == "NotFound":
                return False
            raise

    def _monitor(self, vm_uuid: str, command: str) -> None:
        """An HMP command to the VM's QEMU (libvirt has no API for metadata-less internal
        snapshots); HMP answers errors as text, so any output is a failure."""
        import libvirt
        import libvirt_qemu  # type: ignore[import-untyped]

        conn = libvirt.open(self.libvirt_uri)
        try:
            dom = conn.lookupByName(vm_uuid)
            out = libvirt_qemu.qemuMonitorCommand(
                dom, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP
            )
        except libvirt.libvirtError as err:
            raise OperationFailed(
                f"QEMU of VM {vm_uuid} refused {command.split()[0]}: {err.get_error_message()}",
                code="AGENT.SNAPSHOT_FAILED",
            ) from None
        finally:
            conn.close()
        if str(out or "").strip():
            raise OperationFailed(
                f"QEMU of VM {vm_uuid}: {command.split()[0]} failed: {str(out).strip()}",
                code="AGENT.SNAPSHOT_FAILED",
            )

    def _libvirt_snapshot(self, vm_uuid: str, name: str) -> None:
        import libvirt  # the host has libvirt when a domain runs

        root = ET.Element("domainsnapshot")
        ET.SubElement(root, "name").text = name
        conn = libvirt.open(self.libvirt_uri)
        try:
            dom = conn.lookupByName(vm_uuid)
            dom.snapshotCreateXML(
                ET.tostring(root, encoding="unicode"),
                libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA,
            )
        except libvirt.libvirtError as err:
            raise OperationFailed(
                f"libvirt could not snapshot VM {vm_uuid}: {err.get_error_message()}",
                code="AGENT.SNAPSHOT_FAILED",
            ) from None
        finally:
            conn.close()
