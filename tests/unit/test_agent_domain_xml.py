"""Domain XML: golden files, one class per element, escaping and strict VM-spec validation.

Golden files live in tests/agent_golden/ and are compared after canonical pretty-printing
(C14N, then indent), so attribute order and quoting never matter. After an intended change,
regenerate them with ``ZAGENT_UPDATE_GOLDEN=1 pytest tests/unit/test_agent_domain_xml.py``
and review the diff.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from agent.drivers import domain_xml as dx
from agent.drivers.features import QEMU_KVM, QEMU_TCG, TEST, features_for
from agent.spec import DiskSpec, NicSpec, parse_vm
from zmn.api.errors import InvalidArgument

GOLDEN = Path(__file__).resolve().parents[1] / "agent_golden"
UUID = "0123456789abcdef0123456789abcdef"
HOSTILE = 'x\' or "1"="1" <script>&amp;</domain>'


def vm(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uuid": UUID,
        "name": "web-1",
        "cpuNum": 2,
        "memorySize": 1 << 30,
        "disks": [{"path": "/var/lib/zstack/volumes/root.qcow2", "serial": "rootvol"}],
        "nics": [{"mac": "52:54:00:12:34:56", "bridge": "br_eth0", "deviceName": "vnic1.0"}],
    }
    base.update(over)
    return base


FULL = vm(
    name="db primary",
    description="line one\nline two",
    cpuNum=4,
    memorySize=4 << 30,
    bootDevices=["cdrom", "hd"],
    consoleMode="spice",
    consoleListen="192.0.2.10",
    consolePassword="spice-pw-1234",
    disks=[
        {"path": "/var/lib/zstack/volumes/root.qcow2", "deviceId": 0, "serial": "root"},
        {"path": "/dev/vg0/data", "type": "block", "format": "raw", "deviceId": 1,
         "cache": "writeback", "serial": "data1"},
        {"path": "/var/lib/zstack/iso/debian.iso", "device": "cdrom", "bus": "ide",
         "format": "raw", "deviceId": 2},
        {"path": "/var/lib/zstack/volumes/scsi.qcow2", "bus": "scsi", "deviceId": 0,
         "readOnly": True},
    ],
    nics=[
        {"mac": "52:54:00:12:34:56", "bridge": "br_eth0", "deviceName": "vnic7.0"},
        {"mac": "52:54:00:ab:cd:ef", "bridge": "br_eth1_100", "model": "e1000", "mtu": 9000},
    ],
)  # fmt: skip

CASES = {
    "kvm_minimal": (
        vm(consoleMode="vnc", consoleListen="192.0.2.10", consolePassword="k3Xp9qTz"),
        QEMU_KVM,
    ),
    "tcg_full": (FULL, QEMU_TCG),
    "test_driver": (vm(consoleMode="none"), TEST),
    "hostile_names": (vm(name=HOSTILE, description=HOSTILE + "\n<!-- -->"), QEMU_TCG),
    # CPU and memory hot-add: <vcpu current=2>4</vcpu>, <maxMemory>, one NUMA cell
    "tcg_hotplug": (vm(maxCpuNum=4, maxMemorySize=(1 << 30) + (512 << 20)), QEMU_TCG),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    raw, features = CASES[case]
    got = dx.pretty(dx.to_xml(dx.build_domain(parse_vm(raw), features)))
    path = GOLDEN / f"{case}.xml"
    if os.environ.get("ZAGENT_UPDATE_GOLDEN") == "1":
        path.write_text(got)
    assert path.exists(), f"missing golden file {path}; run with ZAGENT_UPDATE_GOLDEN=1"
    assert got == dx.pretty(path.read_text())


def test_pretty_ignores_attribute_order_and_whitespace():
    a = "<a y='2' x=\"1\"><b/>\n   <c>t</c></a>"
    b = '<a x="1" y="2"><b></b><c>t</c></a>'
    assert dx.pretty(a) == dx.pretty(b)


def test_domain_type_follows_the_feature_table():
    spec = parse_vm(vm())
    types = {f: dx.build_domain(spec, f).element().get("type") for f in (QEMU_KVM, QEMU_TCG, TEST)}
    assert types == {QEMU_KVM: "kvm", QEMU_TCG: "qemu", TEST: "test"}
    assert features_for("qemu", True) is QEMU_KVM
    assert features_for("QEMU", False) is QEMU_TCG
    with pytest.raises(ValueError, match="unsupported libvirt driver"):
        features_for("xen", False)


def test_tcg_has_no_host_passthrough_and_kvm_does():
    spec = parse_vm(vm())
    assert dx.build_domain(spec, QEMU_KVM).element().find("cpu").get("mode") == "host-passthrough"
    assert dx.build_domain(spec, QEMU_TCG).element().find("cpu").get("mode") is None


def test_hostile_names_are_escaped_and_round_trip_exactly():
    spec = parse_vm(vm(name=HOSTILE, description=HOSTILE + "\nsecond <line> & more"))
    xml = dx.to_xml(dx.build_domain(spec, QEMU_TCG))
    assert "<script>" not in xml and "</domain>" in xml and xml.count("</domain>") == 1
    assert "&lt;script&gt;" in xml and "&amp;amp;" in xml
    root = ET.fromstring(xml)
    assert root.findtext("title") == HOSTILE
    assert root.findtext("description") == HOSTILE + "\nsecond <line> & more"
    assert root.findtext("name") == UUID  # the domain name is always the UUID
    plain = parse_vm(vm(description="plain"))
    assert len(root) == len(dx.build_domain(plain, QEMU_TCG).element())  # no element injected


def test_element_classes_build_one_element_each():
    disk = dx.Disk(DiskSpec(path="/d/x.iso", device="cdrom", bus="sata", format="raw", device_id=3))
    el = disk.element()
    assert el.tag == "disk" and el.get("device") == "cdrom"
    assert el.find("target").attrib == {"dev": "sdd", "bus": "sata"}
    assert el.find("readonly") is not None and el.find("serial") is None
    nic = dx.Interface(NicSpec(mac="52:54:00:00:00:01", bridge="br0")).element()
    assert nic.find("target") is None and nic.find("model").get("type") == "virtio"
    assert dx.Memory(64 << 20).element().text == "65536"
    assert dx.Memory(64 << 20, tag="currentMemory").element().tag == "currentMemory"
    assert [b.get("dev") for b in dx.Os("x86_64", ("network", "hd")).element().iter("boot")] == [
        "network",
        "hd",
    ]
    assert dx.Lifecycle("crash", "destroy").element().tag == "on_crash"
    assert dx.Features(acpi=True).element().find("acpi") is not None


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"name": "two\nlines"}, "vm.name"),
        ({"name": "tab\there"}, "vm.name"),
        ({"name": ""}, "vm.name"),
        ({"description": "bell\x07"}, "vm.description"),
        ({"uuid": "../../etc/passwd"}, "vm.uuid"),
        ({"uuid": "0123456789abcdef0123456789abcdeg"}, "vm.uuid"),
        ({"cpuNum": 0}, "vm.cpuNum"),
        ({"cpuNum": True}, "vm.cpuNum"),
        ({"cpuNum": "2"}, "vm.cpuNum"),
        ({"memorySize": 1000}, "vm.memorySize"),
        ({"memorySize": (64 << 20) + 1}, "vm.memorySize"),
        ({"disks": [{"path": "relative.qcow2"}]}, "vm.disks[0].path"),
        ({"disks": [{"path": "/a/../etc/shadow"}]}, "vm.disks[0].path"),
        ({"disks": [{"path": "/a/b\n"}]}, "vm.disks[0].path"),
        ({"disks": [{"path": "/a", "format": "vmdk"}]}, "vm.disks[0].format"),
        ({"disks": [{"path": "/a", "serial": "a'b"}]}, "vm.disks[0].serial"),
        ({"disks": [{"path": "/a"}, {"path": "/b"}]}, "vm.disks"),
        ({"disks": [{"path": "/a", "deviceId": 26}]}, "vm.disks[0].deviceId"),
        ({"nics": [{"mac": "52:54:00:12:34", "bridge": "br0"}]}, "vm.nics[0].mac"),
        ({"nics": [{"mac": "01:00:5e:00:00:01", "bridge": "br0"}]}, "vm.nics[0].mac"),
        ({"nics": [{"mac": "52:54:00:12:34:56", "bridge": "br0'/><x a='"}]}, "vm.nics[0].bridge"),
        ({"nics": [{"mac": "52:54:00:12:34:56", "bridge": "a-very-long-bridge"}]},
         "vm.nics[0].bridge"),
        ({"nics": [{"mac": "52:54:00:12:34:56", "bridge": "br0", "deviceName": "v n"}]},
         "vm.nics[0].deviceName"),
        ({"nics": [{"mac": "52:54:00:12:34:56", "bridge": "br0"},
                   {"mac": "52:54:00:12:34:56", "bridge": "br1"}]}, "vm.nics"),
        ({"bootDevices": ["floppy"]}, "vm.bootDevices[0]"),
        ({"consoleMode": "rdp"}, "vm.consoleMode"),
        ({"consoleMode": "vnc", "consoleListen": "0.0.0.0; rm -rf /"}, "vm.consoleListen"),
        ({"consoleMode": "vnc", "consoleListen": "0.0.0.0", "consolePassword": "p" * 8},
         "vm.consoleListen"),
        ({"consoleMode": "spice", "consoleListen": "::", "consolePassword": "p" * 8},
         "vm.consoleListen"),
        ({"consoleMode": "vnc", "consolePassword": "p" * 8}, "vm.consoleListen"),
        ({"consoleMode": "vnc", "consoleListen": "192.0.2.1"}, "vm.consolePassword"),
        ({"consoleMode": "vnc", "consoleListen": "192.0.2.1", "consolePassword": "short"},
         "vm.consolePassword"),
        ({"consoleMode": "vnc", "consoleListen": "192.0.2.1", "consolePassword": "ninechars"},
         "vm.consolePassword"),
        ({"consoleMode": "vnc", "consoleListen": "192.0.2.1", "consolePassword": "a'b\"<>&cdef"},
         "vm.consolePassword"),
    ],
)  # fmt: skip
def test_bad_specs_are_rejected_naming_the_field(over, field):
    with pytest.raises(InvalidArgument) as exc:
        parse_vm(vm(**over))
    assert exc.value.field == field


def test_spec_normalises_uuid_and_mac():
    spec = parse_vm(vm(uuid=UUID.upper(), nics=[{"mac": "52:54:00:AB:CD:EF", "bridge": "br0"}]))
    assert spec.uuid == UUID and spec.nics[0].mac == "52:54:00:ab:cd:ef"
    dashed = parse_vm(vm(uuid="01234567-89ab-cdef-0123-456789abcdef"))
    assert dashed.uuid == UUID


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_files_validate_against_libvirts_schema(case):
    import shutil
    import subprocess

    from tests.conftest import need

    need(
        shutil.which("virt-xml-validate") is not None and shutil.which("xmllint") is not None,
        "virt-xml-validate and xmllint are not installed (libvirt-clients, libxml2-utils)",
    )
    res = subprocess.run(
        ["virt-xml-validate", str(GOLDEN / f"{case}.xml"), "domain"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
