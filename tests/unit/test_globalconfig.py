"""Global config: typed parsing and validation, and the store that caches DB values."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.querymodel import build_node
from zmn.api.errors import InvalidArgument, NotFound
from zmn.core.globalconfig import GlobalConfigDef, GlobalConfigStore
from zmn.core.models import GlobalConfigVO

INT = GlobalConfigDef("host", "ping.interval", 60, "int", "seconds between pings", min=1, max=3600)
FLOAT = GlobalConfigDef("host", "cpu.overProvisioning", 1.0, "float", min=0.1, max=20)
BOOL = GlobalConfigDef("vm", "deleteDataVolumes", False, "bool")
CHOICE = GlobalConfigDef("vm", "deletionPolicy", "Direct", choices=("Direct", "Delay", "Never"))
EVEN = GlobalConfigDef(
    "vm", "even", 2, "int", validator=lambda v: None if v % 2 == 0 else "must be even"
)


@pytest.mark.parametrize(
    ("d", "text", "value"),
    [
        (INT, "30", 30),
        (INT, " 1 ", 1),
        (INT, "3600", 3600),
        (FLOAT, "2.5", 2.5),
        (FLOAT, "20", 20.0),
        (BOOL, "true", True),
        (BOOL, " FALSE ", False),
        (CHOICE, "Delay", "Delay"),
        (EVEN, "4", 4),
    ],
)
def test_parse_valid(d: GlobalConfigDef, text: str, value: object) -> None:
    assert d.parse(text) == value
    assert type(d.parse(text)) is type(value)


@pytest.mark.parametrize(
    ("d", "text", "needle"),
    [
        (INT, "abc", "takes a int"),
        (INT, "1.5", "takes a int"),
        (INT, "0", ">= 1"),
        (INT, "3601", "<= 3600"),
        (FLOAT, "x", "takes a float"),
        (FLOAT, "0.01", ">= 0.1"),
        (FLOAT, "nan", "takes a float"),
        (FLOAT, "inf", "takes a float"),
        (BOOL, "yes", "takes a bool"),
        (BOOL, "1", "takes a bool"),
        (CHOICE, "delay", "one of Direct, Delay, Never"),
        (EVEN, "3", "must be even"),
    ],
)
def test_parse_invalid(d: GlobalConfigDef, text: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        d.parse(text)
    assert needle in info.value.message
    assert f"{d.category}/{d.name}" in info.value.message
    assert info.value.field == "value"


def test_render_round_trips() -> None:
    for d, value in [(INT, 5), (FLOAT, 1.5), (BOOL, True), (BOOL, False), (CHOICE, "Never")]:
        assert d.parse(d.render(value)) == value
    assert BOOL.render(True) == "true"


def test_store_declare_definition_and_duplicates() -> None:
    store = GlobalConfigStore()
    store.declare(INT)
    assert store.get("host", "ping.interval") == 60
    with pytest.raises(ValueError, match="declared twice"):
        store.declare(INT)
    with pytest.raises(NotFound) as info:
        store.definition("host", "ping.intervall")
    assert info.value.code == "GLOBAL_CONFIG.NOT_FOUND"
    assert "host/ping.interval" in info.value.message


def test_store_load_writes_missing_rows_and_reads_values(tmp_path: Path) -> None:
    node = build_node(tmp_path, [])
    store = GlobalConfigStore()
    for d in (INT, BOOL):
        store.declare(d)
    store.load(node.db)
    with node.db.tx() as s:
        rows = {(r.category, r.name): r for r in s.scalars(select(GlobalConfigVO))}
        assert rows[("host", "ping.interval")].value == "60"
        assert rows[("vm", "deleteDataVolumes")].value == "false"
        assert rows[("host", "ping.interval")].description == "seconds between pings"
        rows[("host", "ping.interval")].value = "15"
        rows[("vm", "deleteDataVolumes")].value = "garbage"  # unreadable: falls back to default
    again = GlobalConfigStore()
    again.declare(INT)
    again.declare(BOOL)
    again.load(node.db)
    assert again.get("host", "ping.interval") == 15
    assert again.get("vm", "deleteDataVolumes") is False
    again.set_cached("host", "ping.interval", "20")
    assert again.get("host", "ping.interval") == 20
    with pytest.raises(InvalidArgument):
        again.set_cached("host", "ping.interval", "0")
    assert again.get("host", "ping.interval") == 20
    node.db.dispose()
