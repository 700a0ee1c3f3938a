"""Debian's cloud-init (22.4) for checking seeds: unpacked from its packages, never installed.

``cloud-init`` and the Python packages it imports come as ``.deb`` files
(:func:`tests.support.guest.fetch_debs`, ``apt-get download``), unpacked with ``dpkg-deb -x``
into the guest cache once, under a file lock, and run with Debian's ``/usr/bin/python3``.

- :func:`schema` runs ``cloud-init schema -c FILE`` (cloud-init's own validation);
- :func:`read_seed` runs cloud-init's NoCloud datasource on a seed ISO
  (:mod:`tests.support.cloudinit_reader`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support.guest import CACHE, _run, fetch_debs

PACKAGES = (
    "cloud-init", "python3-jsonschema", "python3-attr", "python3-pyrsistent", "python3-jinja2",
    "python3-markupsafe", "python3-configobj", "python3-six", "python3-jsonpatch",
    "python3-json-pointer", "python3-requests", "python3-urllib3", "python3-idna",
    "python3-certifi", "python3-charset-normalizer", "python3-chardet", "python3-netifaces",
    "python3-serial",
)  # fmt: skip
PYTHON = "/usr/bin/python3"
READER = Path(__file__).with_name("cloudinit_reader.py")


def unpacked(cache: Path = CACHE) -> Path:
    """The unpacked tree (``usr/bin/cloud-init``, ``usr/lib/python3/dist-packages``)."""
    root = cache / "cloud-init-root"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "cloud-init.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".done").exists():
            return root
        debs = fetch_debs(cache, PACKAGES)
        shutil.rmtree(root, ignore_errors=True)
        for deb in debs:
            _run("dpkg-deb", "-x", str(deb), str(root))
        (root / ".done").touch()
    return root


def _env(root: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(root / "usr" / "lib" / "python3" / "dist-packages"))


def schema(path: Path, root: Path) -> subprocess.CompletedProcess[str]:
    """``cloud-init schema -c path``: exit 0 and "Valid cloud-config" when valid."""
    return subprocess.run(
        [PYTHON, str(root / "usr" / "bin" / "cloud-init"), "schema", "-c", str(path)],
        capture_output=True, text=True, env=_env(root), check=False, timeout=120,
    )  # fmt: skip


def read_seed(iso: Path, files: Path, work: Path, root: Path) -> dict[str, Any]:
    """cloud-init's NoCloud datasource on ``iso`` (its files extracted in ``files``)."""
    proc = subprocess.run(
        [PYTHON, str(READER), str(iso), str(files), str(work)],
        capture_output=True, text=True, env=_env(root), check=False, timeout=120,
    )  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"cloud-init's NoCloud reader failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
