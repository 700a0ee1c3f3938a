"""VM HA on the host: the storage heartbeat and self-fencing.

The node pushes ``POST /v1/ha/config`` to every agent it tracks, every few seconds::

    {"interval": 2, "fenceTimeout": 10, "writeGrace": 5,
     "storage": [{"uuid": <PS uuid>, "path": "/mnt/shared"}], "haVms": [<VM uuid>, ...]}

* **Heartbeat.** For each shared primary storage in ``storage`` a thread writes
  ``<path>/zmn-heartbeat/<hostUuid>`` every ``interval`` seconds: JSON ``{hostUuid, counter,
  time}``, written to a temporary file, fsynced and renamed over the old one (a reader never
  sees half a file). The counter only grows while this agent lives.
* **Reading a peer's heartbeat.** The node is not on the storage, so it asks a *live* host:
  ``POST /v1/ha/heartbeat {"path", "hostUuid"}`` answers the file's counter (or
  ``"missing": true``). The node compares counters over time; clocks never need to agree.
* **Is a disk still in use?** ``POST /v1/ha/volume-lock {"paths": [...]}`` answers the paths
  a running QEMU anywhere still holds (``qemu-img info`` without ``-U`` is refused its shared
  lock), so the node never starts a second copy of a VM whose first copy still runs on a host
  whose agent merely died.
* **Self-fencing.** Every request the node signs counts as contact. When no contact came for
  ``fenceTimeout`` seconds AND no heartbeat write succeeded for ``writeGrace`` seconds on some
  storage this host uses, the host may be declared dead by the node soon: the agent destroys
  its HA VMs (those listed in the last ``haVms``) so that a copy restarted elsewhere is the
  only one. ``fenceTimeout < ha.host.detectTimeout`` and ``writeGrace <
  ha.storage.heartbeatTimeout`` (the node makes them so), which is what makes fencing come
  first; ``docs/ha.md`` has the timing argument.

A write is done in a thread of its own per storage so that a hung file system (an NFS
server gone) blocks only that thread: the fencer sees the write never finished.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent import validate as v
from agent.commands import Route
from agent.drivers.base import Driver

log = logging.getLogger("zagent.ha")

HEARTBEAT_DIR = "zmn-heartbeat"
Body = dict[str, Any]


def heartbeat_path(storage_path: str, host_uuid: str) -> str:
    return os.path.join(storage_path, HEARTBEAT_DIR, host_uuid)


def write_heartbeat(storage_path: str, host_uuid: str, counter: int, now: float) -> None:
    """One heartbeat, atomically replaced and fsynced (file and directory)."""
    folder = os.path.join(storage_path, HEARTBEAT_DIR)
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, host_uuid)
    tmp = f"{final}.tmp"
    data = json.dumps({"hostUuid": host_uuid, "counter": counter, "time": now}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_heartbeat(storage_path: str, host_uuid: str) -> Body:
    path = heartbeat_path(storage_path, host_uuid)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return {"hostUuid": host_uuid, "missing": True}
    except (OSError, ValueError) as exc:
        return {"hostUuid": host_uuid, "missing": True, "error": str(exc)}
    return {
        "hostUuid": host_uuid,
        "missing": False,
        "counter": int(data.get("counter", -1)),
        "time": data.get("time"),
    }


def image_locked(path: str, timeout: float = 20.0) -> bool:
    """True when a running QEMU holds the image (qemu-img cannot take its shared lock).
    Anything else (no such file, no qemu-img, a timeout) is not proof of use: False."""
    try:
        done = subprocess.run(  # noqa: S603 - an argument list, the path validated
            [shutil.which("qemu-img") or "qemu-img", "info", "--output=json", path],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode != 0 and "lock" in done.stderr.lower()


@dataclass
class _Storage:
    uuid: str
    path: str
    counter: int = 0
    last_ok: float = 0.0  # monotonic time of the last write that finished
    last_error: str | None = None
    busy: bool = False


@dataclass
class HaSettings:
    interval: float = 2.0
    fence_timeout: float = 0.0  # 0: the node has not enabled fencing yet
    write_grace: float = 0.0
    ha_vms: list[str] = field(default_factory=list)


class HaKeeper:
    """Heartbeat writer and fencer of one agent. ``tick`` does one round; ``start`` runs
    rounds in a thread. ``clock`` is monotonic (tests give a fake one)."""

    def __init__(
        self,
        driver: Driver,
        host_uuid: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        writer: Callable[[str, str, int, float], None] = write_heartbeat,
        threaded_writes: bool = True,
    ) -> None:
        self.driver = driver
        self.host_uuid = host_uuid
        self.clock = clock
        self.wall = wall
        self.writer = writer
        self.threaded = threaded_writes
        self.settings = HaSettings()
        self.storages: dict[str, _Storage] = {}
        self.last_contact = clock()
        self.fenced: list[str] = []  # VMs destroyed by fencing (reported by /v1/ha/state)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_round = -1e18

    # ----------------------------------------------------------------- inputs

    def contact(self) -> None:
        """The node reached us (any signed request)."""
        self.last_contact = self.clock()

    def configure(self, body: Body, _query: dict[str, str] | None = None) -> Body:
        interval = body.get("interval", 2)
        if not isinstance(interval, int | float) or not 0.1 <= interval <= 3600:
            raise v.bad("interval", "must be seconds between 0.1 and 3600")
        fence = body.get("fenceTimeout", 0)
        grace = body.get("writeGrace", 0)
        for name, value in (("fenceTimeout", fence), ("writeGrace", grace)):
            if not isinstance(value, int | float) or value < 0:
                raise v.bad(name, "must be seconds, 0 or more (0: no fencing)")
        storages = []
        for i, item in enumerate(v.items(body.get("storage", []), "storage", max_items=256)):
            item = v.obj(item, f"storage[{i}]")
            storages.append(
                (
                    v.uuid(item.get("uuid"), f"storage[{i}].uuid"),
                    v.abspath(item.get("path"), f"storage[{i}].path"),
                )
            )
        vms = [v.uuid(u, "haVms") for u in v.items(body.get("haVms", []), "haVms")]
        now = self.clock()
        with self._lock:
            self.settings = HaSettings(float(interval), float(fence), float(grace), vms)
            kept = {}
            for uuid, path in storages:
                old = self.storages.get(uuid)
                if old is not None and old.path == path:
                    kept[uuid] = old
                else:  # a new storage has the grace period from now to get its first write
                    kept[uuid] = _Storage(uuid, path, last_ok=now)
            self.storages = kept
        self.contact()
        return self.state()

    def state(self, _body: Body | None = None, _query: dict[str, str] | None = None) -> Body:
        now = self.clock()
        with self._lock:
            return {
                "hostUuid": self.host_uuid,
                "secondsSinceContact": round(now - self.last_contact, 3),
                "fenceTimeout": self.settings.fence_timeout,
                "haVms": list(self.settings.ha_vms),
                "fenced": list(self.fenced),
                "storage": [
                    {
                        "uuid": s.uuid,
                        "path": s.path,
                        "counter": s.counter,
                        "secondsSinceWrite": round(now - s.last_ok, 3),
                        "lastError": s.last_error,
                    }
                    for s in self.storages.values()
                ],
            }

    def read(self, body: Body, _query: dict[str, str] | None = None) -> Body:
        path = v.abspath(body.get("path"), "path")
        host = v.uuid(body.get("hostUuid"), "hostUuid")
        return read_heartbeat(path, host)

    def volume_lock(self, body: Body, _query: dict[str, str] | None = None) -> Body:
        paths = [
            v.abspath(p, f"paths[{i}]")
            for i, p in enumerate(v.items(body.get("paths", []), "paths", max_items=64))
        ]
        return {"locked": [p for p in paths if image_locked(p)]}

    def routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("POST", "/v1/ha/volume-lock"): Route(self.volume_lock),
            ("POST", "/v1/ha/config"): Route(self.configure),
            ("GET", "/v1/ha/state"): Route(self.state),
            ("POST", "/v1/ha/heartbeat"): Route(self.read),
        }

    # ----------------------------------------------------------------- rounds

    def _write(self, st: _Storage) -> None:
        counter = st.counter + 1
        try:
            self.writer(st.path, self.host_uuid, counter, self.wall())
        except OSError as exc:
            with self._lock:
                st.last_error = str(exc)
                st.busy = False
            log.warning("heartbeat on %s not written: %s", st.path, exc)
            return
        with self._lock:
            st.counter = counter
            st.last_ok = self.clock()
            st.last_error = None
            st.busy = False

    def tick(self) -> list[str]:
        """Write heartbeats (those not still hanging), then fence if we must. Returns the
        VMs fenced in this round."""
        with self._lock:
            due = [s for s in self.storages.values() if not s.busy]
            for s in due:
                s.busy = True
        for s in due:
            if self.threaded:
                threading.Thread(target=self._write, args=(s,), daemon=True).start()
            else:
                self._write(s)
        return self.fence_if_isolated()

    def isolated(self) -> bool:
        """No node contact for fenceTimeout and a heartbeat not written for writeGrace."""
        now = self.clock()
        with self._lock:
            cfg = self.settings
            if cfg.fence_timeout <= 0 or not self.storages:
                return False
            if now - self.last_contact < cfg.fence_timeout:
                return False
            return any(now - s.last_ok >= cfg.write_grace for s in self.storages.values())

    def fence_if_isolated(self) -> list[str]:
        if not self.isolated():
            return []
        with self._lock:
            vms = [u for u in self.settings.ha_vms if u not in self.fenced]
        running = {d.uuid for d in self.driver.list() if d.state in ("Running", "Paused")}
        done = []
        for uuid in vms:
            if uuid not in running:
                continue
            log.error(
                "fencing: no node contact and no storage heartbeat; destroying HA VM %s", uuid
            )
            try:
                self.driver.destroy(uuid)
            except Exception as exc:  # keep fencing the others
                log.error("fencing VM %s failed: %s", uuid, exc)
                continue
            done.append(uuid)
        with self._lock:
            self.fenced.extend(done)
        return done

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="zagent-ha", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.settings.interval)):
            try:
                self._due_tick()
            except Exception:
                log.exception("HA round failed")

    def _due_tick(self) -> None:
        # heartbeats every `interval`, the fencing check every round (at most a second)
        now = self.clock()
        if now - self._last_round >= self.settings.interval:
            self._last_round = now
            self.tick()
        else:
            self.fence_if_isolated()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
