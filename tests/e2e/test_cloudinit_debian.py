"""Seeds checked by Debian's real cloud-init 22.4 (unpacked from its packages).

cloud-init's NoCloud datasource finds the ISO by label and type (the real ``blkid``), reads
its files and parses them: instance ID, host name, public keys, user data and the version 2
network configuration come out as the node meant them. ``cloud-init schema`` accepts the
user data the docs show and refuses a broken one. Needs root (the package cache under
/var/cache) and Debian's ``/usr/bin/python3``.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from agent import nocloud
from tests.conftest import need
from tests.support import debian_cloudinit as cloudinit

pytestmark = [pytest.mark.root, pytest.mark.slow]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIALvk7yGVXTUS/H2Eu4E5IRiXIjxrAZwurR7U+5EdZ6r me@laptop"
USER_DATA = """#cloud-config
hostname: web-1
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIALvk7yGVXTUS/H2Eu4E5IRiXIjxrAZwurR7U+5EdZ6r me@laptop
runcmd:
  - echo hello > /root/hello
  - [sh, -c, "date > /root/first-boot"]
"""


@pytest.fixture(scope="module")
def root() -> Path:
    need(os.geteuid() == 0, "needs root (the package cache under /var/cache)")
    need(os.path.exists(cloudinit.PYTHON), "Debian's /usr/bin/python3 is not installed")
    need(shutil.which("blkid") is not None, "blkid (util-linux) is not installed")
    return cloudinit.unpacked()


def test_cloud_inits_nocloud_reader_reads_our_seed(root: Path, tmp_path: Path) -> None:
    s = nocloud.parse_seed({
        "instanceId": "iid-5f0c2a", "hostname": "web-1",
        "userData": base64.b64encode(USER_DATA.encode()).decode(), "sshKeys": [KEY],
        "nics": [{"mac": "52:54:00:12:34:56", "address": "10.0.0.5", "prefix": 24,
                  "gateway": "10.0.0.1", "dns": ["10.0.0.1"]},
                 {"mac": "52:54:00:ab:cd:ef"}],
    })  # fmt: skip
    iso = tmp_path / "seed.iso"
    nocloud.write_iso(str(iso), s)
    files = tmp_path / "files"
    files.mkdir()
    for name, data in nocloud.read_iso(str(iso)).items():
        (files / name).write_bytes(data)
    got = cloudinit.read_seed(iso, files, tmp_path / "work", root)
    assert got["found"] and got["seed"] == str(iso)
    assert got["instance_id"] == "iid-5f0c2a" and got["hostname"] == "web-1"
    assert got["public_keys"] == [KEY]
    assert got["userdata_raw"] == USER_DATA
    assert got["network_config"] == {
        "version": 2,
        "ethernets": {
            "nic0": {
                "match": {"macaddress": "52:54:00:12:34:56"},
                "dhcp4": False,
                "addresses": ["10.0.0.5/24"],
                "gateway4": "10.0.0.1",
                "nameservers": {"addresses": ["10.0.0.1"]},
            },
            "nic1": {"match": {"macaddress": "52:54:00:ab:cd:ef"}, "dhcp4": True},
        },
    }


def test_a_seed_without_the_cidata_label_is_not_taken(root: Path, tmp_path: Path) -> None:
    s = nocloud.parse_seed({"instanceId": "iid-1", "hostname": "h"})
    iso = tmp_path / "seed.iso"
    nocloud.write_iso(str(iso), s)
    data = bytearray(iso.read_bytes())
    at = data.index(b"cidata", 0x8000)  # the primary volume descriptor's volume identifier
    data[at : at + 6] = b"xxdata"
    iso.write_bytes(bytes(data))
    files = tmp_path / "files"
    files.mkdir()
    assert cloudinit.read_seed(iso, files, tmp_path / "work", root) == {"found": False}


def test_cloud_init_schema_accepts_the_documented_user_data(root: Path, tmp_path: Path) -> None:
    good = tmp_path / "user-data"
    good.write_text(USER_DATA)
    ok = cloudinit.schema(good, root)
    assert ok.returncode == 0 and "Valid cloud-config" in ok.stdout, ok.stdout + ok.stderr
    bad = tmp_path / "bad"
    bad.write_text("#cloud-config\nruncmd: 3\n")
    refused = cloudinit.schema(bad, root)
    assert refused.returncode != 0 and "runcmd" in refused.stdout + refused.stderr
