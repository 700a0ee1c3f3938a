"""The NoCloud seed: its files (golden), the cidata ISO, input checks, and the domain with it.

Golden files in tests/agent_golden/ (``seed/`` for the seed's files, ``seed_iso_boot.xml``
for a VM booting an ISO with its seed attached); regenerate with
``ZAGENT_UPDATE_GOLDEN=1 pytest tests/unit/test_agent_nocloud.py``. Debian's cloud-init reads
the same seeds in tests/e2e/test_cloudinit_debian.py.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pycdlib
import pytest

from agent import nocloud
from agent.drivers import domain_xml as dx
from agent.drivers.features import QEMU_TCG
from agent.spec import parse_vm
from zmn.api import cloudinit
from zmn.api.errors import InvalidArgument

GOLDEN = Path(__file__).resolve().parents[1] / "agent_golden"
UUID = "0123456789abcdef0123456789abcdef"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIALvk7yGVXTUS/H2Eu4E5IRiXIjxrAZwurR7U+5EdZ6r me@laptop"
USER = "#cloud-config\nruncmd:\n  - echo hi > /root/ran\n"


def seed(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "instanceId": "iid-0123456789abcdef",
        "hostname": "web-1",
        "userData": base64.b64encode(USER.encode()).decode(),
        "sshKeys": [KEY],
        "nics": [
            {"mac": "52:54:00:12:34:56", "address": "10.0.0.5", "prefix": 24,
             "gateway": "10.0.0.1", "dns": ["10.0.0.1"]},
            {"mac": "52:54:00:ab:cd:ef"},
        ],
    }  # fmt: skip
    base.update(over)
    return base


def golden(path: Path, got: str) -> None:
    if os.environ.get("ZAGENT_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"missing golden file {path}; run with ZAGENT_UPDATE_GOLDEN=1"
    assert got == path.read_text()


@pytest.mark.parametrize("name", ["meta-data", "user-data", "network-config"])
def test_seed_files_match_the_golden_layout(name: str) -> None:
    files = nocloud.seed_files(nocloud.parse_seed(seed()))
    assert sorted(files) == ["meta-data", "network-config", "user-data"]
    golden(GOLDEN / "seed" / name, files[name].decode())


def test_hostile_values_stay_scalars_in_the_yaml() -> None:
    import yaml

    s = nocloud.parse_seed(seed(instanceId="iid-x", hostname="h"))
    evil = nocloud.Seed(s.instance_id, s.hostname, ssh_keys=(KEY + ' "\n- injected: 1',))
    meta = yaml.safe_load(nocloud.meta_data(evil))
    assert meta["public-keys"] == [KEY + ' "\n- injected: 1'] and "injected" not in meta


def test_no_nics_means_no_network_config_and_empty_user_data_is_kept() -> None:
    files = nocloud.seed_files(nocloud.parse_seed(seed(nics=[], userData="")))
    assert files["user-data"] == b"" and "network-config" not in files


def test_the_iso_is_labelled_cidata_with_the_files_under_their_names(tmp_path: Path) -> None:
    path = tmp_path / "seed.iso"
    s = nocloud.parse_seed(seed())
    nocloud.write_iso(str(path), s)
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
    finally:
        iso.close()
    assert nocloud.read_iso(str(path)) == nocloud.seed_files(s)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"sshKeys": ["not a key"]}, "seed.sshKeys[0]"),
        ({"sshKeys": ["-----BEGIN OPENSSH PRIVATE KEY----- abc"]}, "seed.sshKeys[0]"),
        ({"sshKeys": ["ssh-rsa " + KEY.split()[1]]}, "seed.sshKeys[0]"),  # wrong type inside
        ({"userData": base64.b64encode(b"x" * (64 * 1024 + 1)).decode()}, "seed.userData"),
        ({"userData": "#cloud-config not base64"}, "seed.userData"),
        ({"hostname": "bad host"}, "seed.hostname"),
        ({"instanceId": "iid/../x"}, "seed.instanceId"),
        ({"nics": [{"mac": "52:54:00:12:34:56", "address": "10.0.0.5"}]}, "seed.nics[0].prefix"),
    ],
)
def test_bad_seeds_are_refused_naming_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        nocloud.parse_seed(seed(**over))
    assert bad.value.field == field


def test_user_data_is_text_or_base64_and_at_most_64_kib() -> None:
    assert cloudinit.user_data_bytes(USER) == USER.encode()
    assert cloudinit.user_data_bytes(base64.b64encode(b"\x1f\x8bgzip").decode()) == b"\x1f\x8bgzip"
    assert cloudinit.user_data_bytes("#" + "x" * (64 * 1024 - 1)) == b"#" + b"x" * (64 * 1024 - 1)
    with pytest.raises(InvalidArgument) as big:
        cloudinit.user_data_bytes("#" + "x" * 64 * 1024)
    assert big.value.field == "userData" and "64 KiB" in big.value.message


def test_public_keys_are_checked_and_deduplicated() -> None:
    assert cloudinit.public_keys([KEY, KEY + "\n", KEY]) == [KEY]
    for bad in ("", "ssh-ed25519", "ssh-ed25519 !!!", "/home/me/.ssh/id_ed25519.pub"):
        with pytest.raises(InvalidArgument) as err:
            cloudinit.public_keys([bad])
        assert err.value.field == "sshKeys[0]"


def test_attach_seed_writes_the_iso_and_adds_a_read_only_ide_cdrom(tmp_path: Path) -> None:
    spec = parse_vm({"uuid": UUID, "cpuNum": 1, "memorySize": 1 << 28, "seed": seed(),
                     "disks": [{"path": "/v/root.qcow2"}]})  # fmt: skip
    with_seed = nocloud.attach_seed(spec, str(tmp_path))
    iso = tmp_path / "seeds" / f"{UUID}.iso"
    assert iso.exists()
    cdrom = with_seed.disks[-1]
    assert (cdrom.path, cdrom.device, cdrom.bus, cdrom.target) == (str(iso), "cdrom", "ide", "hdd")
    assert with_seed.disks[:-1] == spec.disks
    nocloud.remove_seed(UUID, str(tmp_path))
    nocloud.remove_seed(UUID, str(tmp_path))  # twice: nothing left, no error
    assert not iso.exists()


def test_a_vm_booting_an_iso_with_its_seed_matches_the_golden_domain(tmp_path: Path) -> None:
    spec = parse_vm({
        "uuid": UUID, "name": "installer", "cpuNum": 1, "memorySize": 1 << 30,
        "bootDevices": ["cdrom", "hd"],
        "disks": [
            {"path": "/var/lib/zagent/local/volumes/root.qcow2", "serial": "root"},
            {"path": "/var/lib/zagent/local/cache/debian.iso", "device": "cdrom", "bus": "ide",
             "format": "raw", "deviceId": 2},
        ],
        "nics": [{"mac": "52:54:00:12:34:56", "bridge": "br_eth0"}],
        "consoleMode": "none", "seed": seed(),
    })  # fmt: skip
    xml = dx.pretty(dx.to_xml(dx.build_domain(nocloud.attach_seed(spec, str(tmp_path)),
                                              QEMU_TCG)))  # fmt: skip
    golden(GOLDEN / "seed_iso_boot.xml", xml.replace(str(tmp_path), "/var/lib/zagent"))
