"""The wheelhouse the node ships to KVM hosts, so deployment needs no network on the host.

It holds:

* ``zagent-<version>+<digest>-py3-none-any.whl``: the agent (package ``agent``) and the API
  contract it imports (``zmn/api/errors.py``, ``zmn/api/agentauth.py``,
  ``zmn/api/cloudinit.py``), built here from the
  node's own files with :mod:`zipfile` (so an installed node can build it too); the digest of
  those files is in the version, so changed agent code is a new version and is redeployed;
* the agent's dependencies and pip itself, made once with ``pip wheel`` at the versions the
  node runs (PyYAML, libvirt-python, pycdlib, pip) and kept in the cache directory.

The host runs pip straight from the shipped pip wheel with ``--no-index --find-links``.
Built wheels are for the node's Python (``cp311`` ...); the playbook checks that the host's
``python3`` matches.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import hashlib
import importlib.metadata
import io
import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import agent
import zmn
from zmn.api.errors import OperationFailed

log = logging.getLogger("zmn.kvm.wheelhouse")

DIST = "zagent"
DEPENDENCIES = ("PyYAML", "libvirt-python", "pycdlib")
_CONTRACT = ("zmn/__init__.py", "zmn/api/__init__.py", "zmn/api/errors.py", "zmn/api/agentauth.py",
             "zmn/api/cloudinit.py")  # fmt: skip


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    agent_version: str
    agent_wheel: str
    pip_wheel: str
    python_tag: str


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


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


def _pinned(dist: str) -> str:
    try:
        return f"{dist}=={importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        return dist


def _build_dependencies(dest: Path) -> None:
    reqs = [_pinned(d) for d in (*DEPENDENCIES, "pip")]
    log.info("building the agent wheelhouse in %s: %s", dest, ", ".join(reqs))
    proc = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--find-links", str(dest), "--wheel-dir", str(dest), *reqs],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise OperationFailed(
            f"cannot build the agent's wheels ({', '.join(reqs)}) in {dest}: "
            + "\n".join(proc.stderr.strip().splitlines()[-10:])
            + "\nPut the wheels there by hand on a node without access to a package index.",
            code="KVM.WHEELHOUSE_FAILED",
        )


def _one(dest: Path, pattern: str) -> str | None:
    found = sorted(p.name for p in dest.glob(pattern))
    return found[-1] if found else None


def ensure_wheelhouse(dest: Path) -> Wheelhouse:
    """Make the wheelhouse complete (dependencies once, the agent when its code changed)."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".lock", "w") as lock:  # nodes sharing a cache directory
        fcntl.flock(lock, fcntl.LOCK_EX)
        needed = {"pip": "pip-*.whl", "PyYAML": "[Pp][Yy][Yy][Aa][Mm][Ll]-*.whl",
                  "libvirt-python": "libvirt_python-*.whl", "pycdlib": "pycdlib-*.whl"}  # fmt: skip
        if any(_one(dest, pattern) is None for pattern in needed.values()):
            _build_dependencies(dest)
        pip_wheel = _one(dest, "pip-*.whl")
        if pip_wheel is None:
            raise OperationFailed(f"no pip wheel in {dest}", code="KVM.WHEELHOUSE_FAILED")
        agent_wheel, version = build_agent_wheel(dest)
    return Wheelhouse(dest, version, agent_wheel, pip_wheel, python_tag())
