"""``qemu-img`` as a library: create, inspect and snapshot disk images.

Every call is a subprocess with an argument list (never a shell), a timeout, and its
failure turned into ``OperationFailed`` (``AGENT.QEMU_IMG_FAILED``) carrying qemu-img's own
message. ``info`` reads with ``-U`` (force share) so it also works on an image a running
QEMU holds open.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from zmn.api.errors import OperationFailed

TIMEOUT = 300.0


def binary() -> str:
    return shutil.which("qemu-img") or "qemu-img"


def run(args: list[str], *, timeout: float = TIMEOUT) -> str:
    argv = [binary(), *args]
    try:
        done = subprocess.run(  # noqa: S603 - an argument list, paths validated by the caller
            argv, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise OperationFailed(
            "qemu-img is not installed on the host (Debian package qemu-utils)",
            code="AGENT.QEMU_IMG_MISSING",
        ) from None
    except subprocess.TimeoutExpired:
        raise OperationFailed(
            f"qemu-img {args[0]} did not finish in {timeout:g} s", code="AGENT.QEMU_IMG_FAILED"
        ) from None
    if done.returncode != 0:
        raise OperationFailed(
            f"qemu-img {args[0]} failed: {(done.stderr or done.stdout).strip()}",
            code="AGENT.QEMU_IMG_FAILED",
            exitStatus=done.returncode,
        )
    return done.stdout


def info(path: str) -> dict[str, Any]:
    out = json.loads(run(["info", "-U", "--output=json", path]))
    if not isinstance(out, dict):
        raise OperationFailed("qemu-img info gave no JSON object", code="AGENT.QEMU_IMG_FAILED")
    return out


def create(
    path: str,
    fmt: str,
    size: int | None,
    *,
    backing: str | None = None,
    backing_fmt: str | None = None,
) -> None:
    args = ["create", "-q", "-f", fmt]
    if backing is not None:
        args += ["-b", backing, "-F", backing_fmt or "qcow2"]
    args.append(path)
    if size is not None:
        args.append(str(size))
    run(args)


def snapshot_create(path: str, name: str) -> None:
    run(["snapshot", "-c", name, path])


def snapshot_delete(path: str, name: str) -> None:
    run(["snapshot", "-d", name, path])


def snapshot_apply(path: str, name: str) -> None:
    """Revert the image to the internal snapshot ``name`` (the image must not be in use)."""
    run(["snapshot", "-a", name, path])


def snapshot_names(path: str) -> list[str]:
    return [str(s.get("name")) for s in info(path).get("snapshots") or []]
