"""The wheelhouse the node ships to KVM hosts: pure-Python wheels only, nothing compiled.

It holds ``zagent-<version>+<digest>-py3-none-any.whl``: the agent (package ``agent``) and the
API contract it imports (``zmn/api/errors.py``, ``zmn/api/agentauth.py``,
``zmn/api/cloudinit.py``, ``zmn/api/hotplug.py``), built here from the
node's own files with :mod:`zipfile` (so a node installed with a plain ``pip install .`` builds
it, with no compiler, no libvirt headers and no package index); the digest of those files is in
the version, so changed agent code is a new version and is redeployed.

Its other needs come from the host's package manager (``playbooks/files/host-packages``): the
distro's libvirt binding (``python3-libvirt``) and PyYAML (``python3-yaml`` /
``python3-pyyaml``), seen through a virtualenv made with ``--system-site-packages``, and pip from
the host Python's own ``ensurepip``. The wheel declares PyYAML (the distro's satisfies it) but
not libvirt-python, whose distro packages do not all carry that distribution name.

The agent's command tree is typer's: typer and what it requires (rich, shellingham, ...) go
along, with pycdlib (the NoCloud seed ISOs), as wheels written back from the node's own installed, pure-Python distributions
(:func:`repack`), so no index is asked and nothing compiled is ever shipped.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import hashlib
import importlib.metadata
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import agent
import zmn
from zmn.api.errors import OperationFailed

DIST = "zagent"
DEPENDENCIES = ("PyYAML", "typer", "pycdlib")
# shipped as wheels with what they need; the rest comes from the host (pycdlib writes the
# NoCloud seed ISOs, agent/nocloud.py)
SHIPPED = ("typer", "pycdlib")
FROM_HOST = {"pyyaml", "libvirt-python"}  # the host's python3-yaml / python3-libvirt
_CONTRACT = ("zmn/__init__.py", "zmn/api/__init__.py", "zmn/api/errors.py", "zmn/api/agentauth.py",
             "zmn/api/cloudinit.py", "zmn/api/hotplug.py")  # fmt: skip


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


def _write_wheel(target: Path, info: str, entries: list[tuple[str, bytes]]) -> None:
    """A wheel of ``entries`` with its RECORD, written atomically (fixed timestamps)."""
    rows: list[list[str]] = []
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
            rows.append(_record_line(name, data))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows([*rows, [f"{info}/RECORD", "", ""]])
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", (2020, 1, 1, 0, 0, 0)), buf.getvalue())
    os.replace(tmp, target)


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
    entries = [(name, path.read_bytes()) for name, path in files] + list(extra.items())
    _write_wheel(target, info, entries)
    for old in dest.glob(f"{DIST}-*.whl"):  # one agent version at a time
        if old.name != fname:
            old.unlink()
    return fname, version


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(dist: importlib.metadata.Distribution) -> list[str]:
    """Names a distribution requires, leaving out extras and Windows-only ones."""
    names = []
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        if "extra" in marker or "Windows" in marker or "win32" in marker:
            continue
        names.append(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0])
    return names


def shipped_distributions() -> list[importlib.metadata.Distribution]:
    """The installed distributions the agent's wheel needs and the host's packages do not
    provide: ``SHIPPED`` and what they require, as installed on this node."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(SHIPPED)
    while todo:
        name = todo.pop()
        key = _norm(name)
        if key in found or key in FROM_HOST:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # excluded by a marker on this Python (e.g. typing_extensions on old ones)
        found[key] = dist
        todo += _requirement_names(dist)
    return [found[k] for k in sorted(found)]


def repack(dist: importlib.metadata.Distribution, dest: Path) -> str:
    """Write an installed pure-Python distribution back into a wheel; returns its file name."""
    name, version = dist.metadata["Name"], dist.version
    tags = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: true" not in tags or "-none-any" not in tags:
        raise OperationFailed(
            f"{name} {version} (needed by the agent) is not a pure-Python distribution; the node"
            " ships only pure-Python wheels to hosts: install a release of it without compiled"
            " parts on the node",
            code="KVM.WHEELHOUSE_FAILED",
        )
    fname = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-py3-none-any.whl"
    if (dest / fname).exists():
        return fname
    entries: list[tuple[str, bytes]] = []
    info = ""
    for file in dist.files or []:
        path = file.as_posix()
        if path.startswith("..") or "__pycache__" in path or path.endswith(".pyc"):
            continue  # scripts (made again from entry points at install) and bytecode
        folder, _, base = path.rpartition("/")
        if folder.endswith(".dist-info"):
            info = folder
            if base in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                continue
        entries.append((path, Path(str(file.locate())).read_bytes()))
    if not info:
        raise OperationFailed(f"{name} {version} has no dist-info", code="KVM.WHEELHOUSE_FAILED")
    _write_wheel(dest / fname, info, entries)
    return fname


def ensure_wheelhouse(dest: Path) -> Wheelhouse:
    """The agent's wheel (built when its code changed) and the pure-Python wheels it needs."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".lock", "w") as lock:  # nodes sharing a cache directory
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = {repack(d, dest) for d in shipped_distributions()}
        agent_wheel, version = build_agent_wheel(dest)
        wanted.add(agent_wheel)
        for old in dest.glob("*.whl"):  # other versions, and earlier releases' compiled wheels
            if old.name not in wanted:
                old.unlink()
    return Wheelhouse(dest, version, agent_wheel)
