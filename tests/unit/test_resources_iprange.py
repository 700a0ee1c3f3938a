"""IPv4 range checks, without a node."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zmn.api.errors import Conflict, InvalidArgument
from zmn.services.network.iprange import (
    ExistingRange,
    check_against,
    check_range,
    parse_netmask,
    range_from_cidr,
)


def test_a_good_range_is_normalised() -> None:
    spec = check_range(" 10.0.0.100", "10.0.0.200 ", "255.255.255.0", "10.0.0.1")
    assert (spec.startIp, spec.endIp, spec.netmask, spec.gateway, spec.networkCidr) == (
        "10.0.0.100",
        "10.0.0.200",
        "255.255.255.0",
        "10.0.0.1",
        "10.0.0.0/24",
    )
    assert check_range("10.0.0.5", "10.0.0.5", "255.255.255.0", "10.0.0.1").endIp == "10.0.0.5"


@pytest.mark.parametrize(
    ("args", "code", "field"),
    [
        (
            ("10.0.0.1000", "10.0.0.2", "255.255.255.0", "10.0.0.1"),
            "IP_RANGE.INVALID_IP",
            "startIp",
        ),
        (
            ("10.0.0.010", "10.0.0.20", "255.255.255.0", "10.0.0.1"),
            "IP_RANGE.INVALID_IP",
            "startIp",
        ),
        (("10.0.0.2", "", "255.255.255.0", "10.0.0.1"), "IP_RANGE.INVALID_IP", "endIp"),
        (("10.0.0.2", "10.0.0.9", "255.255.255.0", "::1"), "IP_RANGE.INVALID_IP", "gateway"),
        (("10.0.0.2", "10.0.0.9", "/24", "10.0.0.1"), "IP_RANGE.INVALID_IP", "netmask"),
        (
            ("10.0.0.2", "10.0.0.9", "255.255.0.255", "10.0.0.1"),
            "IP_RANGE.INVALID_NETMASK",
            "netmask",
        ),
        (("10.0.0.9", "10.0.0.2", "255.255.255.0", "10.0.0.1"), "IP_RANGE.INVALID_RANGE", "endIp"),
        (
            ("10.0.0.2", "10.0.1.2", "255.255.255.0", "10.0.0.1"),
            "IP_RANGE.OUTSIDE_NETWORK",
            "endIp",
        ),
        (
            ("10.0.0.0", "10.0.0.9", "255.255.255.0", "10.0.0.1"),
            "IP_RANGE.OUTSIDE_NETWORK",
            "startIp",
        ),
        (
            ("10.0.0.2", "10.0.0.9", "255.255.255.0", "10.0.0.255"),
            "IP_RANGE.OUTSIDE_NETWORK",
            "gateway",
        ),
        (
            ("10.0.0.2", "10.0.0.9", "255.255.255.0", "10.0.0.5"),
            "IP_RANGE.GATEWAY_IN_RANGE",
            "gateway",
        ),
    ],
)
def test_bad_ranges_name_the_field(args: tuple[str, str, str, str], code: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_range(*args)
    assert (info.value.code, info.value.field) == (code, field)
    assert info.value.message.startswith(f"{field}:") or field in info.value.message


def test_netmask_prefixes() -> None:
    assert parse_netmask("255.255.255.0") == 24
    assert parse_netmask("255.255.255.252") == 30
    for bad in ("255.255.255.254", "0.0.0.0", "255.255.255.255"):
        with pytest.raises(InvalidArgument):
            parse_netmask(bad)


def test_range_from_cidr() -> None:
    spec = range_from_cidr("192.168.1.0/24")
    assert (spec.gateway, spec.startIp, spec.endIp) == (
        "192.168.1.1",
        "192.168.1.2",
        "192.168.1.254",
    )
    spec = range_from_cidr("192.168.1.0/24", gateway="192.168.1.254")
    assert (spec.gateway, spec.startIp, spec.endIp) == (
        "192.168.1.254",
        "192.168.1.1",
        "192.168.1.253",
    )
    assert range_from_cidr("192.168.1.77/24").networkCidr == "192.168.1.0/24"
    for cidr in ("192.168.1.0/30", "nope", "10.0.0.0/33"):
        with pytest.raises(InvalidArgument) as info:
            range_from_cidr(cidr)
        assert info.value.field == "networkCidr"


def existing(
    start: str, end: str, gateway: str = "10.0.0.1", cidr: str = "10.0.0.0/24"
) -> ExistingRange:
    return ExistingRange("u" * 32, "old", start, end, gateway, cidr)


def test_overlap_and_network_mismatch() -> None:
    spec = check_range("10.0.0.100", "10.0.0.200", "255.255.255.0", "10.0.0.1")
    check_against(spec, [existing("10.0.0.2", "10.0.0.99"), existing("10.0.0.201", "10.0.0.254")])
    for start, end in (
        ("10.0.0.200", "10.0.0.210"),
        ("10.0.0.50", "10.0.0.100"),
        ("10.0.0.120", "10.0.0.130"),
    ):
        with pytest.raises(Conflict) as info:
            check_against(spec, [existing(start, end)])
        assert (info.value.code, info.value.field) == ("IP_RANGE.OVERLAP", "startIp")
    with pytest.raises(InvalidArgument) as mismatch:
        check_against(spec, [existing("10.0.0.2", "10.0.0.9", gateway="10.0.0.254")])
    assert (mismatch.value.code, mismatch.value.field) == ("IP_RANGE.NETWORK_MISMATCH", "gateway")


addresses = st.integers(min_value=2, max_value=253)


@given(a=addresses, b=addresses, c=addresses, d=addresses)
def test_overlap_agrees_with_set_intersection(a: int, b: int, c: int, d: int) -> None:
    lo1, hi1, lo2, hi2 = min(a, b), max(a, b), min(c, d), max(c, d)
    gateway = "10.0.0.254"
    spec = check_range(f"10.0.0.{lo1}", f"10.0.0.{hi1}", "255.255.255.0", gateway)
    other = existing(f"10.0.0.{lo2}", f"10.0.0.{hi2}", gateway=gateway)
    overlaps = bool(set(range(lo1, hi1 + 1)) & set(range(lo2, hi2 + 1)))
    try:
        check_against(spec, [other])
        assert not overlaps
    except Conflict:
        assert overlaps
    assert ipaddress.IPv4Address(spec.startIp) <= ipaddress.IPv4Address(spec.endIp)
