"""Self-fencing and the storage heartbeat of the agent (agent/ha.py), with a fake clock."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agent.drivers.base import DomainInfo
from agent.ha import HaKeeper, image_locked, read_heartbeat, write_heartbeat
from tests.conftest import need
from zmn.api.errors import InvalidArgument

HOST = "a" * 32
VM1, VM2, VM3 = "1" * 32, "2" * 32, "3" * 32
PS = "f" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Domains:
    """Just what the keeper uses of a driver: list() and destroy()."""

    def __init__(self, running: list[str]) -> None:
        self.running = set(running)
        self.destroyed: list[str] = []

    def list(self) -> list[DomainInfo]:
        return [DomainInfo(f"vm-{u}", u, u, "Running") for u in sorted(self.running)]

    def destroy(self, uuid: str) -> None:
        self.running.discard(uuid)
        self.destroyed.append(uuid)


class Storage:
    """A heartbeat writer that works until `broken` is set."""

    def __init__(self) -> None:
        self.broken = False
        self.writes: list[int] = []

    def __call__(self, path: str, host: str, counter: int, now: float) -> None:
        if self.broken:
            raise OSError(5, "Input/output error")
        self.writes.append(counter)


def keeper(tmp_path: Path, running: list[str]) -> tuple[HaKeeper, Clock, Domains, Storage]:
    clock, domains, storage = Clock(), Domains(running), Storage()
    k = HaKeeper(domains, HOST, clock=clock, writer=storage, threaded_writes=False)  # type: ignore[arg-type]
    k.configure(
        {
            "interval": 1,
            "fenceTimeout": 10,
            "writeGrace": 5,
            "storage": [{"uuid": PS, "path": str(tmp_path)}],
            "haVms": [VM1, VM2],
        }
    )
    return k, clock, domains, storage


def test_lost_node_and_lost_storage_fences_only_the_ha_vms(tmp_path: Path) -> None:
    k, clock, domains, storage = keeper(tmp_path, [VM1, VM2, VM3])
    assert k.tick() == []
    storage.broken = True
    clock.now += 11  # no contact for 11 s > fenceTimeout, last write 11 s ago > writeGrace
    assert sorted(k.tick()) == [VM1, VM2]
    assert domains.running == {VM3}  # not an HA VM: left alone
    assert k.state()["fenced"] == [VM1, VM2]


def test_lost_node_with_a_working_heartbeat_does_not_fence(tmp_path: Path) -> None:
    k, clock, domains, storage = keeper(tmp_path, [VM1])
    for _ in range(30):  # 30 s without the node, heartbeat written every second
        clock.now += 1
        assert k.tick() == []
    assert domains.destroyed == []
    assert storage.writes[-1] == 30


def test_lost_storage_with_the_node_in_contact_does_not_fence(tmp_path: Path) -> None:
    k, clock, domains, storage = keeper(tmp_path, [VM1])
    storage.broken = True
    for _ in range(30):
        clock.now += 1
        k.contact()  # the node's pings keep coming
        assert k.tick() == []
    assert domains.destroyed == []
    assert k.state()["storage"][0]["lastError"] == "[Errno 5] Input/output error"


def test_fencing_waits_for_the_fence_timeout(tmp_path: Path) -> None:
    k, clock, _domains, storage = keeper(tmp_path, [VM1])
    storage.broken = True
    clock.now += 9.5  # storage gone for longer than writeGrace, node silent 9.5 s < 10 s
    assert k.tick() == []
    clock.now += 0.6
    assert k.tick() == [VM1]
    clock.now += 5
    assert k.tick() == []  # fenced once


def test_a_hung_write_counts_as_no_heartbeat(tmp_path: Path) -> None:
    clock, domains = Clock(), Domains([VM1])
    k = HaKeeper(domains, HOST, clock=clock, writer=lambda *a: None, threaded_writes=False)  # type: ignore[arg-type]
    k.configure(
        {
            "fenceTimeout": 10,
            "writeGrace": 5,
            "storage": [{"uuid": PS, "path": "/x"}],
            "haVms": [VM1],
        }
    )
    k.storages[PS].busy = True  # a write that never returns (dead NFS server)
    clock.now += 11
    assert k.tick() == [VM1]


def test_no_fencing_until_the_node_enabled_it(tmp_path: Path) -> None:
    clock, domains, storage = Clock(), Domains([VM1]), Storage()
    k = HaKeeper(domains, HOST, clock=clock, writer=storage, threaded_writes=False)  # type: ignore[arg-type]
    storage.broken = True
    clock.now += 1000
    assert k.tick() == []
    assert domains.destroyed == []


def test_heartbeat_file_round_trip(tmp_path: Path) -> None:
    assert read_heartbeat(str(tmp_path), HOST) == {"hostUuid": HOST, "missing": True}
    write_heartbeat(str(tmp_path), HOST, 7, 123.5)
    assert read_heartbeat(str(tmp_path), HOST) == {
        "hostUuid": HOST,
        "missing": False,
        "counter": 7,
        "time": 123.5,
    }
    assert not (tmp_path / "zmn-heartbeat" / f"{HOST}.tmp").exists()


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    k, *_ = keeper(tmp_path, [])
    with pytest.raises(InvalidArgument) as err:
        k.configure({"storage": [{"uuid": PS, "path": "relative"}]})
    assert err.value.details.get("field") == "storage[0].path"
    with pytest.raises(InvalidArgument) as err:
        k.configure({"fenceTimeout": -1})
    assert err.value.details.get("field") == "fenceTimeout"


def test_a_disk_a_running_qemu_holds_is_reported_locked(tmp_path: Path) -> None:
    """What keeps the node from starting a second copy when only the agent died."""
    need(bool(shutil.which("qemu-img") and shutil.which("qemu-system-x86_64")),
         "qemu-img and qemu-system-x86_64 (qemu-utils, qemu-system-x86)")  # fmt: skip
    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    k, *_ = keeper(tmp_path, [])
    missing = str(tmp_path / "none.qcow2")
    assert k.volume_lock({"paths": [str(disk), missing]}) == {"locked": []}
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-S", "-machine", "none",
         "-blockdev", f"driver=qcow2,node-name=d0,file.driver=file,file.filename={disk}",
         "-qmp", "stdio"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not image_locked(str(disk)):
            assert qemu.poll() is None, "qemu exited"
            assert time.monotonic() < deadline, "the image never showed as locked"
            time.sleep(0.2)
        assert k.volume_lock({"paths": [str(disk), missing]}) == {"locked": [str(disk)]}
    finally:
        qemu.kill()
        qemu.wait(10)
        assert qemu.stdin is not None
        qemu.stdin.close()
    assert not image_locked(str(disk))
