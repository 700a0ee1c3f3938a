"""The pieces of tables for people, without a node: sizes, ages, widths, headers, columns."""

from __future__ import annotations

import datetime as dt
import io
import os

import pytest

from zcli.act import past, said
from zcli.catalogue import Catalogue
from zcli.columns import Resolver, chosen_columns, default_columns, short_header
from zcli.inputs import UsageError
from zcli.people import age, clip, fit, human_size, print_rows

CAT = Catalogue(
    {
        "resources": [
            {
                "name": "VmInstance",
                "cli": "vm",
                "columns": ["uuid", "name", "state", "memorySize", "hostUuid"],
                "fields": [
                    {"name": "uuid", "type": "string"},
                    {"name": "name", "type": "string"},
                    {"name": "state", "type": "string"},
                    {"name": "memorySize", "type": "int", "unit": "bytes"},
                    {"name": "hostUuid", "type": "string", "resource": "Host"},
                    {"name": "createDate", "type": "timestamp"},
                ],
                "joins": [
                    {"name": "host", "resource": "Host"},
                    {"name": "vmNics", "resource": "VmNic"},
                ],
            },
            {
                "name": "Host",
                "cli": "host",
                "columns": ["uuid", "name"],
                "fields": [{"name": "uuid", "type": "string"}, {"name": "name", "type": "string"}],
                "joins": [{"name": "vmInstance", "resource": "VmInstance"}],
            },
        ],
        "apis": [
            {"name": "QueryVmInstance", "resource": "VmInstance", "verb": "query", "params": []},
            {"name": "QueryHost", "resource": "Host", "verb": "query", "params": []},
        ],
    }
)
VM = CAT.resource("vm")
ROWS = [
    {"uuid": "b" * 32, "name": "web2", "state": "Stopped", "memorySize": 2 * 1024**3,
     "hostUuid": "h" * 32, "createDate": "2026-01-01T00:00:00.000",
     "vmNics": [{"ip": "10.0.0.2"}, {"ip": "10.0.1.2"}]},
    {"uuid": "a" * 32, "name": "web1", "state": "Running", "memorySize": 1024**3,
     "hostUuid": "h" * 32, "createDate": "2026-01-01T00:00:00.000", "vmNics": [{"ip": "10.0.0.1"}]},
]  # fmt: skip


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_sizes_ages_and_clipping() -> None:
    assert human_size(1024**3) == "1.0 GiB" and human_size(512) == "512 B"
    assert human_size(10 * 1024**4) == "10.0 TiB" and human_size(None) == ""
    now = dt.datetime(2026, 1, 3, 0, 0, tzinfo=dt.UTC)
    assert age("2026-01-01T00:00:00.000", now) == "2d"
    assert age("2026-01-02T23:57:00", now) == "3m" and age("2026-01-03T00:00:00", now) == "0s"
    assert clip("abcdef", 4) == "abc…" and clip("abc", 4) == "abc"


def test_fit_shrinks_the_widest_then_drops_from_the_right() -> None:
    assert fit([30, 8, 7], [12, 8, 7], 40) == [21, 8, 7]  # 21 + 8 + 7 + 2 gaps of 2 = 40
    assert fit([30, 8, 7], [12, 8, 7], 25) == [12, 8, 0]
    assert fit([30, 8, 7], [12, 8, 7], None) == [30, 8, 7]
    widths = fit([50, 40, 30, 20], [12, 12, 12, 12], 60)
    assert sum(w for w in widths if w) + 2 * (len([w for w in widths if w]) - 1) <= 60


def test_headers_people_say() -> None:
    assert [short_header(n) for n in ("l3Network", "vmInstance", "instanceOffering", "host")] == [
        "l3", "vm", "offering", "host",
    ]  # fmt: skip


def test_default_columns_and_join_lookups_once_per_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    asked: list[tuple[str, str, list[str]]] = []

    def lookup(kind: str, field: str, values: list[str]) -> list[dict[str, object]]:
        asked.append((kind, field, values))
        return [{"uuid": "h" * 32, "name": "h1"}]

    cols = default_columns(VM, ROWS, wide=False)
    assert [c.header for c in cols] == ["name", "id", "state", "ip", "memory", "host", "age"]
    out = Tty()
    print_rows(
        ROWS, VM, Resolver(CAT, lookup), out, columns=[], wide=False, header=True, keep_order=False
    )
    lines = out.getvalue().splitlines()
    assert (
        lines[0] == "\x1b[1mname  id        state    ip                 memory   host  age\x1b[0m"
    )
    assert lines[1].split()[:4] == ["web1", "aaaaaaaa", "\x1b[32mRunning\x1b[0m", "10.0.0.1"]
    assert "10.0.0.2,10.0.1.2" in lines[2] and "2.0 GiB" in lines[2] and "h1" in lines[2]
    assert asked == [("Host", "uuid", ["h" * 32])]  # one lookup for every row


def test_chosen_columns_unknown_is_an_error() -> None:
    assert [c.path for c in chosen_columns(VM, ["name", "host.name", "vmNics.ip"], ROWS)] == [
        "name", "host.name", "vmNics.ip",
    ]  # fmt: skip
    with pytest.raises(UsageError) as exc:
        chosen_columns(VM, ["hots.name"], ROWS)
    assert exc.value.code == "CLI.UNKNOWN_COLUMN" and "host." in exc.value.message


def test_what_was_done_in_one_line() -> None:
    assert [past(v) for v in ("stop", "create", "destroy", "add-nic", "copy")] == [
        "stopped", "created", "destroyed", "added nic to", "copied",
    ]  # fmt: skip
    line = said(
        VM, "stop", {"uuid": "web1"}, "web1", {"inventory": {"uuid": "a" * 32, "name": "web1"}}
    )
    assert line == "stopped vm web1 (aaaaaaaa)\n"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1


def test_a_terminal_of_zero_columns_gets_the_fallback_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`script` and some serial consoles report 0 columns: rows then were cut to nothing."""
    from zcli.people import width_of

    monkeypatch.setattr(os, "get_terminal_size", lambda _fd: os.terminal_size((0, 0)))
    monkeypatch.delenv("COLUMNS", raising=False)
    assert width_of(_Tty()) == 80
    monkeypatch.setenv("COLUMNS", "132")
    assert width_of(_Tty()) == 132
    monkeypatch.setattr(os, "get_terminal_size", lambda _fd: os.terminal_size((100, 30)))
    assert width_of(_Tty()) == 100
    assert width_of(io.StringIO()) is None  # not a terminal: no limit
