"""No domain XML the agent writes has a graphics device listening on a wildcard address or
without a password, whatever the node (or an attacker holding a host's secret) sends."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers import domain_xml as dx
from agent.drivers.fake import FakeDriver
from agent.drivers.features import QEMU_KVM, QEMU_TCG, TEST
from agent.spec import parse_vm
from zmn.api.errors import InvalidArgument

GOLDEN = Path(__file__).parent.parent / "agent_golden"
UUID = "0123456789abcdef0123456789abcdef"

listens = st.one_of(
    st.sampled_from(["0.0.0.0", "::", "0:0::0", "127.0.0.1", "192.0.2.10", "fe80::1", ""]),
    st.ip_addresses().map(str),
    st.text(max_size=20),
    st.none(),
    st.integers(),
)
passwords = st.one_of(st.none(), st.text(max_size=70), st.integers(), st.just("k3Xp9qTz"))
modes = st.one_of(st.sampled_from(["vnc", "spice", "none", "rdp"]), st.none())


def assert_safe(xml: str) -> None:
    for el in ET.fromstring(xml).iter("graphics"):
        assert el.get("passwd"), xml
        addresses = [el.get("listen")] + [
            li.get("address") for li in el.iter("listen") if li.get("type") == "address"
        ]
        assert all(a for a in addresses), xml
        for a in addresses:
            assert not ipaddress.ip_address(a).is_unspecified, xml
        assert not [li for li in el.iter("listen") if li.get("type") not in ("address",)], xml


@settings(max_examples=300, deadline=None)
@given(mode=modes, listen=listens, password=passwords)
def test_every_domain_written_has_safe_graphics(mode, listen, password):
    raw = {"uuid": UUID, "name": "v", "cpuNum": 1, "memorySize": 1 << 30}
    for key, value in (("consoleMode", mode), ("consoleListen", listen),
                       ("consolePassword", password)):  # fmt: skip
        if value is not None:
            raw[key] = value
    try:
        spec = parse_vm(raw)
    except InvalidArgument:
        return
    for features in (QEMU_KVM, QEMU_TCG, TEST):
        assert_safe(dx.to_xml(dx.build_domain(spec, features)))
    driver = FakeDriver()
    driver.define(spec)
    assert_safe(driver.xml(spec.uuid))


def test_graphics_is_off_unless_asked_for():
    spec = parse_vm({"uuid": UUID, "name": "v", "cpuNum": 1, "memorySize": 1 << 30})
    assert spec.console_mode == "none"
    root = ET.fromstring(dx.to_xml(dx.build_domain(spec, QEMU_KVM)))
    assert root.find("devices/graphics") is None


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.xml")), ids=lambda p: p.name)
def test_golden_files_are_safe(path):
    assert_safe(path.read_text())


def test_the_graphics_element_itself_refuses_a_wildcard_or_no_password():
    for listen, password in (("0.0.0.0", "k3Xp9qTz"), ("::", "k3Xp9qTz"), ("192.0.2.1", "")):
        with pytest.raises(ValueError):
            dx.Graphics("vnc", listen, password).element()


def test_graphics_of_reads_the_live_address_port_and_password():
    xml = (
        "<domain><devices><graphics type='vnc' port='5901' listen='192.0.2.10'"
        " passwd='k3Xp9qTz'><listen type='address' address='192.0.2.10'/></graphics>"
        "</devices></domain>"
    )
    assert dx.graphics_of(xml) == {
        "type": "vnc", "host": "192.0.2.10", "port": 5901, "password": "k3Xp9qTz"
    }  # fmt: skip
    assert dx.graphics_of("<domain><devices/></domain>") is None
