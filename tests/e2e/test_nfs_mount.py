"""The agent mounts an NFS export for NFS primary storage: a real NFS server and ``mount``.

The kernel NFS server exports a directory to loopback; the agent's storage commands (real
executor: ``timeout ... mount -t nfs``) mount it, the shared storage check writes and reads the
marker through NFS, a second mount is a no-op, ``umount`` takes it away; a server that does not
answer (an address nobody serves) fails within the configured timeout with the fix named.

Where this machine's kernel has no NFS client or server (``nfs``/``nfsd`` missing from
``/proc/filesystems``) the test skips with that reason: the shared storage behaviour is
carried by the SharedMountPoint tests (``test_kvm_shared_storage.py``) and the mount command by
``tests/unit/test_agent_shared_storage.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.network.executor import SystemExecutor
from agent.storage.shared import SharedStorageCommands, mounted_at
from zmn.api.errors import OperationFailed

pytestmark = [pytest.mark.root, pytest.mark.slow]

PS = "c" * 32


def _filesystems() -> set[str]:
    try:
        text = Path("/proc/filesystems").read_text()
    except OSError:
        return set()
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def test_agent_mounts_an_nfs_export(tmp_path: Path) -> None:
    have = _filesystems()
    missing = [fs for fs in ("nfs", "nfsd") if fs not in have]
    if missing:  # the only skip allowed here: the kernel itself cannot do NFS
        pytest.skip(f"this kernel has no {' and '.join(missing)} in /proc/filesystems")
    assert os.geteuid() == 0, "mounting needs root"
    assert shutil.which("exportfs") and shutil.which("rpc.nfsd"), "needs nfs-kernel-server"
    export = tmp_path / "export"
    export.mkdir()
    subprocess.run(["rpc.nfsd", "8"], check=True)
    subprocess.run(["exportfs", "-o", "rw,no_root_squash,fsid=7357", f"127.0.0.1:{export}"],
                   check=True)  # fmt: skip
    cmds = SharedStorageCommands(SystemExecutor(timeout=120))
    mnt = tmp_path / "mnt"
    url = f"127.0.0.1:{export}"
    try:
        got = cmds.nfs_mount({"url": url, "path": str(mnt), "options": "vers=4.1,soft",
                              "timeout": 60}, {})  # fmt: skip
        assert got["mounted"] is True
        assert mounted_at(str(mnt), Path("/proc/self/mountinfo").read_text()) == url
        again = cmds.nfs_mount({"url": url, "path": str(mnt), "timeout": 60}, {})
        assert again["mounted"] is False
        seen = cmds.shared_check(
            {"path": str(mnt), "primaryStorageUuid": PS, "nonce": "n", "write": True}, {}
        )
        assert seen["status"] == "Connected" and (export / "zstack_smp_id").exists()
        with pytest.raises(OperationFailed) as err:  # TEST-NET-1: nobody answers there
            cmds.nfs_mount({"url": "192.0.2.1:/x", "path": str(tmp_path / "m2"), "timeout": 5,
                            "options": "vers=4.1,soft,timeo=10,retrans=1"}, {})  # fmt: skip
        assert err.value.code in ("AGENT.NFS_TIMEOUT", "AGENT.NFS_MOUNT_FAILED")
    finally:
        cmds.nfs_umount({"path": str(mnt)}, {})
        subprocess.run(["exportfs", "-u", f"127.0.0.1:{export}"], check=False)
    assert mounted_at(str(mnt), Path("/proc/self/mountinfo").read_text()) is None
