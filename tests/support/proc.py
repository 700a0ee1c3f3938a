"""Real processes: a ``zmn`` node started with ``zmn start`` and ``zcli`` run as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class ZmnProcess:
    """A management node home driven through the real ``zmn`` and ``zcli`` commands."""

    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    bin_dir: Path = BIN  # the virtualenv whose zmn/zcli run (another install than the suite's)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("ZMN_ENDPOINT", None)
        env.pop("ZMN_SESSION", None)
        env.update(
            ZMN_HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home.parent / "xdg-config"),
            XDG_CACHE_HOME=str(self.home.parent / "xdg-cache"),
            NO_COLOR="1",
        )
        env.update(self.extra_env)
        return env

    def run(self, *argv: str, stdin: str | None = None, timeout: float = 60) -> Result:
        exe = argv[0]
        path = str(self.bin_dir / exe) if (self.bin_dir / exe).exists() else exe
        proc = subprocess.run(
            [path, *argv[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def zmn(self, *args: str, **kw: Any) -> Result:
        return self.run("zmn", *args, **kw)

    def zcli(self, *args: str, **kw: Any) -> Result:
        return self.run("zcli", *args, **kw)

    def pid(self) -> int | None:
        try:
            return int((self.home / "zmn.pid").read_text())
        except (OSError, ValueError):
            return None

    def kill9(self) -> None:
        pid = self.pid()
        assert pid, "no pid file"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError(f"pid {pid} survived SIGKILL")

    def stop_quietly(self) -> None:
        if self.pid():
            self.zmn("stop", timeout=60)
