"""System-tag patterns: matching, token extraction, validation against declared patterns."""

from __future__ import annotations

import pytest

from zmn.api.errors import InvalidArgument
from zmn.core.tags import TagPattern, TagPatterns

HOSTNAME = TagPattern("hostname::{hostname}", "VmInstance", "guest host name")
STATIC_IP = TagPattern("staticIp::{l3NetworkUuid}::{ip}", "VmInstance")
CLUSTER_ONLY = TagPattern("hypervisor.cpuModel::{model}", "Cluster")


def _no_spaces(tokens: dict[str, str]) -> str | None:
    return "hostname must not contain spaces" if " " in tokens["hostname"] else None


CHECKED = TagPattern("host::{hostname}", "Host", validator=_no_spaces)


def test_match_extracts_tokens() -> None:
    assert HOSTNAME.match("hostname::web1") == {"hostname": "web1"}
    assert STATIC_IP.match("staticIp::abc::10.0.0.5") == {"l3NetworkUuid": "abc", "ip": "10.0.0.5"}
    # the first token is as short as possible, so an IPv6 address keeps its colons
    assert STATIC_IP.match("staticIp::abc::fe80::1") == {"l3NetworkUuid": "abc", "ip": "fe80::1"}
    assert STATIC_IP.tokens == ["l3NetworkUuid", "ip"]


@pytest.mark.parametrize(
    "tag",
    [
        "hostname::",  # empty token
        "hostname:web1",
        "Hostname::web1",  # case matters
        "xhostname::web1",
        "hostname::web1\n",  # a trailing newline is not part of a valid tag
        "hostname::a\nb",
    ],
)
def test_non_matching(tag: str) -> None:
    assert HOSTNAME.match(tag) is None


def test_literal_parts_are_not_regex() -> None:
    pattern = TagPattern("a.b::{x}", "T")
    assert pattern.match("a.b::1") == {"x": "1"}
    assert pattern.match("axb::1") is None


def test_make_builds_a_tag_that_matches() -> None:
    tag = STATIC_IP.make(l3NetworkUuid="n1", ip="1.2.3.4")
    assert tag == "staticIp::n1::1.2.3.4"
    assert STATIC_IP.match(tag) == {"l3NetworkUuid": "n1", "ip": "1.2.3.4"}


def test_validate_against_the_resources_patterns() -> None:
    patterns = TagPatterns()
    for p in (HOSTNAME, STATIC_IP, CLUSTER_ONLY, CHECKED):
        patterns.add(p)
    found, tokens = patterns.validate("VmInstance", "staticIp::n1::1.2.3.4")
    assert found is STATIC_IP
    assert tokens["ip"] == "1.2.3.4"
    with pytest.raises(InvalidArgument) as info:
        patterns.validate("VmInstance", "hypervisor.cpuModel::x")  # a Cluster pattern
    err = info.value
    assert err.code == "TAG.NO_PATTERN"
    assert err.details["choices"] == ["hostname::{hostname}", "staticIp::{l3NetworkUuid}::{ip}"]
    with pytest.raises(InvalidArgument) as info:
        patterns.validate("Zone", "anything")
    assert "accepted: none" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        patterns.validate("Host", "host::a b")
    assert info.value.code == "TAG.INVALID"
    assert "must not contain spaces" in info.value.message
    assert patterns.validate("Host", "host::ab")[1] == {"hostname": "ab"}
