"""The agent's storage commands for real (``qemu-img``, files), without libvirt or root.

A real zagent (fake hypervisor driver) serves signed requests on loopback; volumes, overlays
and snapshots are real qcow2 files in a temporary directory, checked with ``qemu-img info``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.testing import TEST_SECRET, CallbackReceiver, running_agent
from tests.conftest import need

GiB = 1 << 30


@pytest.fixture
def client(tmp_path: Path):
    need(shutil.which("qemu-img") is not None, "needs qemu-img (qemu-utils)")
    with CallbackReceiver(TEST_SECRET) as rx:
        with running_agent(tmp_path / "agent", callback_url=rx.url) as (_server, client):
            yield client


def info(path: Path) -> dict:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_capacity_makes_the_directory_and_reports_statvfs(client, tmp_path: Path) -> None:
    root = tmp_path / "ps"
    status, body = client.post("/v1/storage/capacity", {"path": str(root)})
    assert status == 200, body
    st = os.statvfs(root)
    assert body["totalCapacity"] == st.f_blocks * st.f_frsize
    assert 0 < body["availableCapacity"] <= body["totalCapacity"]
    assert (root / "cache").is_dir() and (root / "volumes").is_dir()
    status, body = client.post("/v1/storage/capacity", {"path": "relative/dir"})
    assert status == 400 and body["error"]["details"]["field"] == "path"


def test_root_volume_is_a_qcow2_overlay_on_the_cached_image(client, tmp_path: Path) -> None:
    root = tmp_path / "ps"
    client.post("/v1/storage/capacity", {"path": str(root)})
    image = root / "cache" / "img.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    vol = root / "volumes" / "v1" / "v1.qcow2"
    status, body = client.post(
        "/v1/storage/volume/create",
        {"path": str(vol), "size": 1 << 20, "format": "qcow2", "backingFile": str(image)},
    )
    assert status == 200, body
    meta = info(vol)
    assert meta["format"] == "qcow2" and meta["backing-filename"] == str(image)
    assert meta["virtual-size"] == 64 << 20  # never smaller than its image
    assert body["exists"] and body["backingFile"] == str(image)
    # idempotent: a retried create leaves the volume as it is
    status, again = client.post(
        "/v1/storage/volume/create", {"path": str(vol), "size": GiB, "backingFile": str(image)}
    )
    assert status == 200 and again["virtualSize"] == 64 << 20
    # a missing image is named, and nothing is left behind
    gone = root / "volumes" / "v2" / "v2.qcow2"
    status, body = client.post(
        "/v1/storage/volume/create",
        {"path": str(gone), "size": GiB, "backingFile": str(root / "cache" / "none.qcow2")},
    )
    assert status == 404 and body["error"]["code"] == "AGENT.BACKING_MISSING"
    assert not gone.exists()


def test_data_volume_snapshot_and_delete(client, tmp_path: Path) -> None:
    root = tmp_path / "ps"
    vol = root / "volumes" / "d1" / "d1.qcow2"
    status, body = client.post("/v1/storage/volume/create", {"path": str(vol), "size": GiB})
    assert status == 200 and body["virtualSize"] == GiB and body["backingFile"] is None
    status, body = client.post(
        "/v1/storage/volume/snapshot", {"path": str(vol), "name": "s1", "vmUuid": "b" * 32}
    )
    assert status == 200 and body["via"] == "qemu-img", body
    assert [s["name"] for s in info(vol)["snapshots"]] == ["s1"]
    status, body = client.post("/v1/storage/volume/snapshot", {"path": str(vol), "name": "s1"})
    assert status == 200 and body["via"] == "existing"
    status, body = client.post("/v1/storage/stat", {"path": str(vol)})
    assert body["snapshots"] == ["s1"]
    # delete refuses paths outside the storage, then removes the file and its directory
    status, body = client.post(
        "/v1/storage/volume/delete", {"root": str(root / "volumes" / "d1"), "path": str(vol) + "x"}
    )
    assert status == 200 and body["deleted"] is False
    status, body = client.post(
        "/v1/storage/volume/delete", {"root": str(tmp_path / "other"), "path": str(vol)}
    )
    assert status == 400 and vol.exists()
    status, body = client.post("/v1/storage/volume/delete", {"root": str(root), "path": str(vol)})
    assert status == 200 and body["deleted"] is True
    assert not vol.exists() and not vol.parent.exists() and (root / "volumes").is_dir()
    status, body = client.post("/v1/storage/stat", {"path": str(vol)})
    assert body == {"path": str(vol), "exists": False}


def test_snapshot_revert_and_delete(client, tmp_path: Path) -> None:
    vol = tmp_path / "ps" / "volumes" / "d2" / "d2.qcow2"
    client.post("/v1/storage/volume/create", {"path": str(vol), "size": 1 << 20})
    write = ["qemu-io", "-f", "qcow2", "-c"]
    subprocess.run([*write, "write -P 17 0 4k", str(vol)], check=True, capture_output=True)
    client.post("/v1/storage/volume/snapshot", {"path": str(vol), "name": "s1"})
    subprocess.run([*write, "write -P 34 0 4k", str(vol)], check=True, capture_output=True)
    status, body = client.post(
        "/v1/storage/volume/snapshot/revert", {"path": str(vol), "name": "s1", "vmUuid": "c" * 32}
    )
    assert status == 200 and body["reverted"] is True, body
    read = subprocess.run([*write, "read -P 17 0 4k", str(vol)], capture_output=True, text=True)
    assert read.returncode == 0 and "verification failed" not in read.stdout
    status, body = client.post(
        "/v1/storage/volume/snapshot/revert", {"path": str(vol), "name": "s9"}
    )
    assert status == 404 and body["error"]["code"] == "AGENT.NO_SNAPSHOT"
    status, body = client.post(
        "/v1/storage/volume/snapshot/revert", {"path": str(vol), "name": "a b"}
    )
    assert status == 400 and body["error"]["details"]["field"] == "name"
    status, body = client.post(
        "/v1/storage/volume/snapshot/delete", {"path": str(vol), "name": "s1"}
    )
    assert status == 200 and body == {**body, "deleted": True, "via": "qemu-img"}
    assert "snapshots" not in info(vol) or not info(vol)["snapshots"]
    # already gone, or no volume at all: nothing to do
    for path in (vol, vol.with_name("none.qcow2")):
        status, body = client.post(
            "/v1/storage/volume/snapshot/delete", {"path": str(path), "name": "s1"}
        )
        assert status == 200 and body["deleted"] is False


def test_a_volume_grows_with_qemu_img_and_never_shrinks(client, tmp_path: Path) -> None:
    vol = tmp_path / "ps" / "volumes" / "v3" / "v3.qcow2"
    client.post("/v1/storage/volume/create", {"path": str(vol), "size": 64 << 20})
    status, body = client.post("/v1/storage/volume/resize", {"path": str(vol), "size": 128 << 20})
    assert status == 200 and body["via"] == "qemu-img", body
    assert info(vol)["virtual-size"] == 128 << 20
    status, body = client.post("/v1/storage/volume/resize", {"path": str(vol), "size": 64 << 20})
    assert status == 400 and body["error"]["code"] == "VOLUME.SHRINK", body
    assert body["error"]["details"]["field"] == "size"
    assert info(vol)["virtual-size"] == 128 << 20
    status, body = client.post("/v1/storage/volume/resize", {"path": str(vol), "size": 128 << 20})
    assert status == 200 and info(vol)["virtual-size"] == 128 << 20  # same size: a no-op
    status, body = client.post(
        "/v1/storage/volume/resize", {"path": str(tmp_path / "none.qcow2"), "size": 1 << 30}
    )
    assert status == 404 and body["error"]["code"] == "AGENT.NO_VOLUME"
