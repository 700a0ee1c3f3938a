"""``zmn service install``: a systemd unit for this node, and where ``zmn logs`` reads.

The unit runs ``zmn --home HOME start --foreground`` as ``Type=notify`` (the node sends
``READY=1`` once its API answers: :mod:`zmn.ops.sdnotify`), restarts it on failure, and leaves
its log on stderr, which systemd puts in the journal (``SyslogIdentifier=zmn``). The unit's
name is kept in ``$ZMN_HOME/service-unit`` so ``zmn logs`` knows to read the journal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from zmn.api.errors import InvalidArgument, OperationFailed
from zmn.core.config import BootConfig

SYSTEMD_RUNNING = Path("/run/systemd/system")  # systemd's own test for "booted with systemd"
UNIT_DIR = Path("/etc/systemd/system")
MARKER = "service-unit"


@dataclass(frozen=True)
class UnitSpec:
    name: str  # e.g. zmn.service
    home: Path
    exe: Path  # the zmn console script of this installation
    user: str | None
    stop_seconds: int


def zmn_executable() -> Path:
    """The ``zmn`` script beside this interpreter (the installation the unit should run)."""
    beside = Path(sys.executable).parent / "zmn"
    if beside.exists():
        return beside
    found = shutil.which("zmn")
    if found is None:
        raise OperationFailed(
            "cannot find the zmn command of this installation", code="NODE.SERVICE_FAILED"
        )
    return Path(found)


def render_unit(spec: UnitSpec) -> str:
    home = str(spec.home)
    user = f"User={spec.user}\n" if spec.user else ""
    return (
        "# written by `zmn service install`; run it again to change this file\n"
        "[Unit]\n"
        "Description=zstack-terminal management node (zmn)\n"
        "Documentation=man:zmn(8)\n"
        "After=network-online.target mariadb.service postgresql.service rabbitmq-server.service\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=notify\n"
        "NotifyAccess=main\n"
        f"{user}"
        f'Environment="ZMN_HOME={home}"\n'
        f'ExecStart="{spec.exe}" --home "{home}" start --foreground\n'
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "TimeoutStartSec=180\n"
        f"TimeoutStopSec={spec.stop_seconds}\n"
        "KillSignal=SIGTERM\n"
        "StandardOutput=journal\n"
        "StandardError=journal\n"
        "SyslogIdentifier=zmn\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _valid_name(name: str) -> str:
    unit = name if name.endswith(".service") else f"{name}.service"
    stem = unit.removesuffix(".service")
    if not stem or not all(c.isalnum() or c in "-_.@" for c in stem):
        raise InvalidArgument(
            f"--name: {name!r} is not a systemd unit name (letters, digits, - _ . @)",
            field="name",
        )
    return unit


def install(
    config: BootConfig,
    *,
    name: str = "zmn",
    user: str | None = None,
    unit_dir: Path = UNIT_DIR,
    start: bool = True,
) -> tuple[Path, bool]:
    """Write the unit; with systemd running, reload, enable and (``start``) start it.

    Returns (the unit file, whether systemd took it)."""
    unit = _valid_name(name)
    grace = int(float(config.get("shutdown.grace", "30")))
    spec = UnitSpec(unit, config.home.resolve(), zmn_executable(), user, grace + 30)
    unit_dir.mkdir(parents=True, exist_ok=True)
    path = unit_dir / unit
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_unit(spec))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    config.home.mkdir(parents=True, exist_ok=True)
    (config.home / MARKER).write_text(unit + "\n")
    if not SYSTEMD_RUNNING.is_dir() or unit_dir != UNIT_DIR:
        return path, False
    steps = [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", *(["--now"] if start else []), unit],
    ]
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise OperationFailed(
                f"{' '.join(argv)} failed: {proc.stderr.strip()}", code="NODE.SERVICE_FAILED"
            )
    return path, True


def journal_unit(config: BootConfig) -> str | None:
    """The unit whose journal holds this node's log, when systemd runs it."""
    marker = config.home / MARKER
    if not (SYSTEMD_RUNNING.is_dir() and marker.exists() and shutil.which("journalctl")):
        return None
    unit = marker.read_text().strip()
    return unit or None


def journal_argv(unit: str, lines: int, follow: bool) -> list[str]:
    argv = ["journalctl", "--unit", unit, "--no-pager", "--output", "short-iso", "-n", str(lines)]
    return [*argv, "--follow"] if follow else argv
