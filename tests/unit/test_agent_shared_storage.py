"""The agent's shared storage commands: the marker check and the NFS mount (mocked executor)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.network.executor import RecordingExecutor, Result
from agent.storage import shared
from agent.storage.shared import SharedStorageCommands, mounted_at
from zmn.api.errors import InvalidArgument, OperationFailed

PS = "a" * 32
NONCE = "n0nce"


def test_first_host_writes_the_marker_and_others_read_it(tmp_path: Path) -> None:
    got = shared.check(str(tmp_path), PS, NONCE, write=True)
    assert got["status"] == "Connected" and got["marker"] == "ok"
    assert got["totalCapacity"] > 0 and got["availableCapacity"] > 0
    marker = json.loads((tmp_path / "zstack_smp_id").read_text())
    assert marker == {"primaryStorageUuid": PS, "nonce": NONCE}
    assert (tmp_path / "cache").is_dir() and (tmp_path / "volumes").is_dir()
    again = shared.check(str(tmp_path), PS, NONCE, write=False)  # another host, same dir
    assert again["status"] == "Connected"


def test_a_second_write_keeps_the_first_marker(tmp_path: Path) -> None:
    shared.write_marker(str(tmp_path), PS, NONCE)
    shared.write_marker(str(tmp_path), "b" * 32, "other")
    assert shared.read_marker(str(tmp_path)) == {"primaryStorageUuid": PS, "nonce": NONCE}


def test_no_marker_means_another_directory(tmp_path: Path) -> None:
    got = shared.check(str(tmp_path), PS, NONCE, write=False)
    assert got["status"] == "Disconnected" and got["marker"] == "missing"
    assert "zstack_smp_id" in got["reason"] and "same shared directory" in got["reason"]
    assert not (tmp_path / "zstack_smp_id").exists() and not (tmp_path / "volumes").exists()


def test_another_storage_marker_is_refused(tmp_path: Path) -> None:
    shared.write_marker(str(tmp_path), "b" * 32, NONCE)
    got = shared.check(str(tmp_path), PS, NONCE, write=False)
    assert got["status"] == "Disconnected" and got["marker"] == "other"
    assert "b" * 32 in got["reason"]
    (tmp_path / "zstack_smp_id").write_text(json.dumps({"primaryStorageUuid": PS, "nonce": "x"}))
    assert shared.check(str(tmp_path), PS, NONCE, write=True)["marker"] == "other"
    (tmp_path / "zstack_smp_id").write_text("not json")
    assert shared.check(str(tmp_path), PS, NONCE, write=False)["marker"] == "other"


def test_a_missing_directory_says_mount_it(tmp_path: Path) -> None:
    got = shared.check(str(tmp_path / "nope"), PS, NONCE, write=True)
    assert got["status"] == "Disconnected" and "mount the shared file system" in got["reason"]
    assert not (tmp_path / "nope").exists()


def test_check_route_validates_its_fields(tmp_path: Path) -> None:
    cmds = SharedStorageCommands(RecordingExecutor())
    with pytest.raises(InvalidArgument) as err:
        cmds.shared_check({"path": "rel", "primaryStorageUuid": PS, "nonce": NONCE}, {})
    assert err.value.details.get("field") == "path"
    with pytest.raises(InvalidArgument):
        cmds.shared_check({"path": str(tmp_path), "primaryStorageUuid": "x", "nonce": NONCE}, {})
    ok = cmds.shared_check(
        {"path": str(tmp_path), "primaryStorageUuid": PS, "nonce": NONCE, "write": True}, {}
    )
    assert ok["status"] == "Connected"


MOUNTINFO = (
    "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
    "99 22 0:50 / /var/lib/zagent/nfs/p1 rw - nfs4 10.0.0.5:/exp rw,vers=4.1\n"
)


def test_mounted_at_reads_mountinfo() -> None:
    assert mounted_at("/var/lib/zagent/nfs/p1", MOUNTINFO) == "10.0.0.5:/exp"
    assert mounted_at("/var/lib/zagent/nfs/p2", MOUNTINFO) is None


def nfs_body(path: Path, **extra: object) -> dict[str, object]:
    return {"url": "10.0.0.5:/exp", "path": str(path), "options": "vers=4.1,soft", **extra}


def test_nfs_mount_runs_mount_with_options_under_a_timeout(tmp_path: Path) -> None:
    ex = RecordingExecutor()
    got = SharedStorageCommands(ex).nfs_mount(nfs_body(tmp_path / "m", timeout=30), {})
    assert got["mounted"] is True and (tmp_path / "m").is_dir()
    assert ex.commands == [
        ["timeout", "--kill-after=5", "30", "mount", "-t", "nfs", "-o", "vers=4.1,soft",
         "10.0.0.5:/exp", str(tmp_path / "m")],
    ]  # fmt: skip


def test_nfs_mount_is_a_noop_when_mounted(tmp_path: Path) -> None:
    path = tmp_path / "m"
    ex = RecordingExecutor(files={"/proc/self/mountinfo": MOUNTINFO.replace(
        "/var/lib/zagent/nfs/p1", str(path))})  # fmt: skip
    got = SharedStorageCommands(ex).nfs_mount(nfs_body(path), {})
    assert got["mounted"] is False and ex.commands == []
    other = SharedStorageCommands(ex)
    with pytest.raises(OperationFailed) as err:
        other.nfs_mount({**nfs_body(path), "url": "10.0.0.6:/exp"}, {})
    assert err.value.code == "AGENT.NFS_MOUNT_BUSY"


class TimingOut(RecordingExecutor):
    def __init__(self, code: int, stderr: str = "") -> None:
        super().__init__()
        self.code, self.stderr = code, stderr

    def run(self, argv: list[str], *, stdin: str | None = None, check: bool = True) -> Result:
        self.commands.append(list(argv))
        return Result(self.code, "", self.stderr)


def test_nfs_server_not_answering_fails_within_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(OperationFailed) as err:
        SharedStorageCommands(TimingOut(124)).nfs_mount(nfs_body(tmp_path / "m", timeout=7), {})
    assert err.value.code == "AGENT.NFS_TIMEOUT"
    assert "did not answer within 7 s" in str(err.value) and "exports" in str(err.value)


def test_nfs_mount_failure_names_the_options_config(tmp_path: Path) -> None:
    ex = TimingOut(32, "mount.nfs: access denied by server")
    with pytest.raises(OperationFailed) as err:
        SharedStorageCommands(ex).nfs_mount(nfs_body(tmp_path / "m"), {})
    assert err.value.code == "AGENT.NFS_MOUNT_FAILED"
    assert "access denied" in str(err.value) and "nfsPrimaryStorage/mount.options" in str(err.value)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "no-colon"}, "url"),
        ({"url": "h:relative"}, "url"),
        ({"options": "a b"}, "options"),
        ({"path": "rel"}, "path"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_nfs_mount_bad_input_names_the_field(
    tmp_path: Path, body: dict[str, object], field: str
) -> None:
    ex = RecordingExecutor()
    with pytest.raises(InvalidArgument) as err:
        SharedStorageCommands(ex).nfs_mount({**nfs_body(tmp_path / "m"), **body}, {})
    assert err.value.details.get("field") == field and ex.commands == []


def test_nfs_umount(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.mkdir()
    ex = RecordingExecutor(files={"/proc/self/mountinfo": MOUNTINFO.replace(
        "/var/lib/zagent/nfs/p1", str(path))})  # fmt: skip
    assert SharedStorageCommands(ex).nfs_umount({"path": str(path)}, {})["unmounted"] is True
    assert ex.commands == [["umount", str(path)]] and not path.exists()
    idle = RecordingExecutor()
    assert SharedStorageCommands(idle).nfs_umount({"path": str(path)}, {})["unmounted"] is False
    assert idle.commands == []
