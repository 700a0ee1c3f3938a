"""The wheelhouse the node ships to KVM hosts: one pure-Python wheel, nothing compiled.

It holds ``zagent-<version>+<digest>-py3-none-any.whl``: the agent (package ``agent``) and the
API contract it imports (``zmn/api/errors.py``, ``zmn/api/agentauth.py``), built here from the
node's own files with :mod:`zipfile` (so a node installed with a plain ``pip install .`` builds
it, with no compiler, no libvirt headers and no package index); the digest of those files is in
the version, so changed agent code is a new version and is redeployed.

Its other needs come from the host's package manager (``playbooks/files/host-packages``): the
distro's libvirt binding (``python3-libvirt``) and PyYAML (``python3-yaml`` /
``python3-pyyaml``), seen through a virtualenv made with ``--system-site-packages``, and pip from
the host Python's own ``ensurepip``. The wheel declares PyYAML (the distro's satisfies it) but
not libvirt-python, whose distro packages do not all carry that distribution name.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import agent
import zmn

DIST = "zagent"
DEPENDENCIES = ("PyYAML",)
_CONTRACT = ("zmn/__init__.py", "zmn/api/__init__.py", "zmn/api/errors.py", "zmn/api/agentauth.py")


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    agent_version: str
    agent_wheel: str


def _agent_files() -> list[tuple[str, Path]]:
    """(archive name, file) of every module the agent needs, in a stable order."""
    agent_dir = Path(agent.__file__).resolve().parent
    root = Path(zmn.__file__).resolve().parent.parent
    files = [
        (f"agent/{p.relative_to(agent_dir).as_posix()}", p)
        for p in sorted(agent_dir.rglob("*.py"))
        if "__pycache__" not in p.parts
    ]
    files += [(name, root / name) for name in _CONTRACT]
    return files


def agent_version(files: list[tuple[str, Path]] | None = None) -> str:
    digest = hashlib.sha256()
    for name, path in files or _agent_files():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{agent.__version__}+{digest.hexdigest()[:12]}"


def _record_line(name: str, data: bytes) -> list[str]:
    b64 = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={b64}", str(len(data))]


def build_agent_wheel(dest: Path) -> tuple[str, str]:
    """Write the agent wheel into ``dest`` (if not there yet); returns (file name, version)."""
    files = _agent_files()
    version = agent_version(files)
    fname = f"{DIST}-{version}-py3-none-any.whl"
    target = dest / fname
    if target.exists():
        return fname, version
    info = f"{DIST}-{version}.dist-info"
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {DIST}\n"
        f"Version: {version}\n"
        "Summary: zstack-terminal host agent\n"
        "Requires-Python: >=3.11\n" + "".join(f"Requires-Dist: {d}\n" for d in DEPENDENCIES)
    )
    extra = {
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: zmn\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": b"[console_scripts]\nzagent = agent.main:main\n",
        f"{info}/top_level.txt": b"agent\nzmn\n",
    }
    rows: list[list[str]] = []
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in files:
            data = path.read_bytes()
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
            rows.append(_record_line(name, data))
        for name, data in extra.items():
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
            rows.append(_record_line(name, data))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows([*rows, [f"{info}/RECORD", "", ""]])
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", (2020, 1, 1, 0, 0, 0)), buf.getvalue())
    os.replace(tmp, target)
    for old in dest.glob(f"{DIST}-*.whl"):  # one agent version at a time
        if old.name != fname:
            old.unlink()
    return fname, version


def ensure_wheelhouse(dest: Path) -> Wheelhouse:
    """The wheelhouse with the current agent wheel (built when the agent's code changed)."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".lock", "w") as lock:  # nodes sharing a cache directory
        fcntl.flock(lock, fcntl.LOCK_EX)
        for old in dest.glob("*.whl"):  # wheels of earlier releases (pip, PyYAML, libvirt)
            if not old.name.startswith(f"{DIST}-"):
                old.unlink()
        agent_wheel, version = build_agent_wheel(dest)
    return Wheelhouse(dest, version, agent_wheel)
