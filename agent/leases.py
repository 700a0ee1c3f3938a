"""DHCP leases as the host's dnsmasq hands them out, reported to the management node.

Each L3's dnsmasq writes its lease database to ``<state_dir>/dnsmasq/<l3Uuid>/leases``
(lines ``EXPIRY MAC IP HOSTNAME CLIENT-ID``). dnsmasq rewrites a line whenever a guest takes
or renews its lease, and the expiry moves with it; a dnsmasq restart keeps the lines as they
were. So a (MAC, IP, expiry) not seen before is a guest that just asked for its address: the
watcher polls the files' modification times and reports those as ``network.leases``::

    {"type": "network.leases", "leases": [{"l3NetworkUuid", "mac", "ip", "expiry"}]}

The first scan only takes a baseline: leases already in the files when the agent starts were
taken before it and are not reported as new.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("zagent.leases")

Lease = tuple[str, str, str, int]  # (l3 UUID, MAC, IP, expiry)


def parse(l3_uuid: str, text: str) -> set[Lease]:
    out: set[Lease] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and ":" in parts[1]:
            out.add((l3_uuid, parts[1].lower(), parts[2], int(parts[0])))
    return out


class LeaseWatcher:
    def __init__(
        self,
        dnsmasq_dir: Path,
        report: Callable[[list[dict[str, Any]]], None],
        *,
        interval: float = 0.5,
    ) -> None:
        self.root = dnsmasq_dir
        self.report = report
        self.interval = interval
        self._leases: dict[Path, set[Lease]] = {}
        self._baseline = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scan(self) -> list[dict[str, Any]]:
        """Leases taken or renewed since the last scan (none at the first)."""
        new: list[Lease] = []
        for path in sorted(self.root.glob("*/leases")):
            # read every time (a line per guest: small): a file rewritten twice within the
            # file system's timestamp granularity keeps its mtime, so mtimes would miss it
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            now = parse(path.parent.name, text)
            new += sorted(now - self._leases.get(path, set()))
            self._leases[path] = now
        first, self._baseline = self._baseline, False
        if first:
            return []
        return [{"l3NetworkUuid": l3, "mac": mac, "ip": ip, "expiry": exp}
                for l3, mac, ip, exp in new]  # fmt: skip

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                leases = self.scan()
                if leases:
                    self.report(leases)
            except Exception:  # never let the watcher die: wait ip would never end
                log.exception("scanning DHCP leases failed")

    def start(self) -> None:
        self.scan()  # the baseline
        self._thread = threading.Thread(target=self._run, name="zagent-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def watcher_for(state_dir: str, submit: Callable[[str, dict[str, Any]], None]) -> LeaseWatcher:
    return LeaseWatcher(
        Path(os.path.join(state_dir, "dnsmasq")),
        lambda leases: submit("network.leases", {"leases": leases}),
    )
