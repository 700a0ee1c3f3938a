"""A real management node process in a temporary ``ZMN_HOME``, started with ``zmn``.

The node is driven only through its public socket (:class:`zmn.client.AsyncClient`); its
CPU time and resident memory are read from ``/proc`` so benchmarks can charge them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def tool(name: str) -> str:
    """A console script of this venv (``zmn``, ``zcli``), else the one on PATH."""
    path = BIN / name
    return str(path) if path.exists() else name


@dataclass
class NodeProcess:
    """``zmn init`` + ``zmn start`` on ``home``; ``stop()`` always leaves no process behind."""

    home: Path
    conf: dict[str, str] = field(default_factory=dict)
    started: bool = False

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("ZMN_ENDPOINT", "ZMN_SESSION", "ZMN_DB_URL", "ZMN_BUS_URL"):
            env.pop(key, None)
        env.update(
            ZMN_HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home.parent / "xdg-config"),
            XDG_CACHE_HOME=str(self.home.parent / "xdg-cache"),
            NO_COLOR="1",
        )
        return env

    @property
    def endpoint(self) -> str:
        return f"unix:{self.home / 'zmn.sock'}"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.home / 'zmn.db'}"

    def run(self, argv: Iterable[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        args = list(argv)
        return subprocess.run(
            [tool(args[0]), *args[1:]],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def init(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.conf:
            (self.home / "zmn.conf").write_text("".join(f"{k}={v}\n" for k, v in self.conf.items()))
        done = self.run(["zmn", "init"])
        if done.returncode != 0:
            raise RuntimeError(f"zmn init failed: {done.stderr or done.stdout}")

    def start(self, wait: float = 600) -> float:
        """Start the node; returns the seconds until it answered."""
        t0 = time.perf_counter()
        done = self.run(["zmn", "start", "--wait", str(wait)], timeout=wait + 30)
        if done.returncode != 0:
            raise RuntimeError(f"zmn start failed: {done.stderr or done.stdout}\n{self.log_tail()}")
        self.started = True
        return time.perf_counter() - t0

    def set_global_config(
        self, category: str, name: str, value: str, default: str, kind: str = "int"
    ) -> None:
        """Write a global config row before the node starts (the node keeps existing rows)."""
        import datetime as dt
        import sqlite3

        con = sqlite3.connect(self.home / "zmn.db")
        try:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
            con.execute(
                'INSERT OR REPLACE INTO global_config (category, name, value, "defaultValue", type,'
                ' description, "lastOpDate") VALUES (?, ?, ?, ?, ?, ?, ?)',
                (category, name, value, default, kind, "set by the benchmark harness", now),
            )
            con.commit()
        finally:
            con.close()

    def stop(self) -> None:
        if not self.started:
            return
        pid = self.pid()
        try:
            self.run(["zmn", "stop"], timeout=90)
        except subprocess.TimeoutExpired:
            pass
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.started = False

    def pid(self) -> int | None:
        try:
            return int((self.home / "zmn.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.home / "zmn.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ----------------------------------------------------------------- /proc readings

    def cpu_seconds(self) -> float:
        """User + system CPU time of the node process so far."""
        pid = self.pid()
        if pid is None:
            return 0.0
        return proc_cpu_seconds(pid)

    def rss_bytes(self) -> int:
        pid = self.pid()
        return proc_rss_bytes(pid) if pid is not None else 0


async def wait_idle(
    node: NodeProcess, *, quiet: float = 1.0, below: float = 0.05, timeout: float = 1800
) -> float:
    """Wait until the node used less than ``below`` of a core for ``quiet`` seconds;
    returns the ``time.monotonic()`` it was found idle."""
    t_end = time.monotonic() + timeout
    last_t, last_c = time.monotonic(), node.cpu_seconds()
    while time.monotonic() < t_end:
        await asyncio.sleep(quiet)
        t, c = time.monotonic(), node.cpu_seconds()
        if (c - last_c) / (t - last_t) < below:
            return t
        last_t, last_c = t, c
    raise TimeoutError(f"the node did not go idle within {timeout:g}s")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the command: state(0) ... utime is field 14 of the full line -> index 11 here
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def node_info(home: Path) -> dict[str, Any]:
    """What ``zmn status -o json`` says, for the report."""
    import json

    proc = NodeProcess(home)
    done = proc.run(["zmn", "status", "-o", "json"], timeout=30)
    try:
        data: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {}
    return data
