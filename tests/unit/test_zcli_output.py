"""zcli output formats, sessions file and catalogue cache, without a node."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_zcli_parser import CATALOGUE
from zcli import cache, session, table
from zcli.catalogue import Catalogue
from zcli.help import render_help
from zcli.options import Options
from zcli.output import render, shape
from zcli.parser import Help, UsageError
from zcli.progress import Progress, follow_hint

ZONES = [
    {"uuid": "a" * 32, "name": "z1", "description": None, "state": "Enabled", "createDate": "2024"},
    {
        "uuid": "b" * 32,
        "name": "z2",
        "description": "two",
        "state": "Disabled",
        "createDate": "2024",
    },
]
ZONE = Catalogue(CATALOGUE).resource("zone")


def out_of(result: Any, **opts: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    render(result, Options(**opts), ZONE, out, err)
    return out.getvalue(), err.getvalue()


def test_shapes() -> None:
    assert shape({"inventories": ZONES}).data == ZONES
    assert shape({"inventories": ZONES, "total": 9}).data == {"inventories": ZONES, "total": 9}
    assert shape({"total": 2}).kind == "count"
    assert shape({"inventory": ZONES[0]}).data == ZONES[0]
    assert shape({}).kind == "nothing"
    assert shape({"version": "1"}).kind == "object"


def test_json_unwraps_and_keeps_camel_case() -> None:
    assert json.loads(out_of({"inventories": ZONES}, output="json")[0]) == ZONES
    assert json.loads(out_of({"inventory": ZONES[0]}, output="json")[0]) == ZONES[0]
    assert json.loads(out_of({"total": 2}, output="json")[0]) == {"total": 2}
    assert json.loads(out_of({}, output="json")[0]) == {}
    assert yaml.safe_load(out_of({"inventories": ZONES}, output="yaml")[0]) == ZONES


def test_table_columns_come_from_the_catalogue() -> None:
    text, err = out_of({"inventories": ZONES})
    lines = text.splitlines()
    assert lines[0].split() == ["uuid", "name", "state"]  # the catalogue's columns, not every field
    assert "createDate" not in text and "\x1b[" not in text  # no colour into a pipe
    assert lines[2].split() == ["a" * 32, "z1", "Enabled"]
    assert all(line == line.rstrip() for line in lines)
    assert err == ""
    text, _ = out_of({"inventories": ZONES}, no_header=True)
    assert text.splitlines()[0].split() == ["a" * 32, "z1", "Enabled"]


def test_single_object_table_is_field_value_lines() -> None:
    text, _ = out_of({"inventory": ZONES[1]})
    assert [line.split(None, 1) for line in text.splitlines()][:3] == [
        ["uuid", "b" * 32],
        ["name", "z2"],
        ["description", "two"],
    ]


def test_value_csv_and_columns() -> None:
    assert out_of({"inventories": ZONES}, output="value", columns=["name"])[0] == "z1\nz2\n"
    assert (
        out_of({"inventory": ZONES[0]}, output="value", columns=["name", "state"])[0]
        == "z1\tEnabled\n"
    )
    assert out_of({"total": 2}, output="value")[0] == "2\n"
    csv_text = out_of({"inventories": ZONES}, output="csv")[0]
    assert csv_text == f"uuid,name,state\n{'a' * 32},z1,Enabled\n{'b' * 32},z2,Disabled\n"
    assert out_of({"inventories": ZONES}, output="csv", no_header=True)[0].count("\n") == 2
    with pytest.raises(UsageError) as exc:  # an unknown column is an error, not an empty one
        out_of({"inventories": ZONES}, output="value", columns=["nmae"])
    assert "no column 'nmae'; did you mean name" in exc.value.message


def test_group_by_rows_keep_their_own_columns() -> None:
    groups = {"groups": [{"state": "Enabled", "total": 2}, {"state": "Disabled", "total": 1}]}
    assert out_of(groups, output="csv")[0] == "state,total\nEnabled,2\nDisabled,1\n"


def test_quiet_prints_uuids_only() -> None:
    assert out_of({"inventories": ZONES}, quiet=True)[0] == f"{'a' * 32}\n{'b' * 32}\n"
    assert out_of({"inventory": ZONES[0]}, quiet=True, output="json")[0] == f"{'a' * 32}\n"
    assert out_of({}, quiet=True)[0] == ""


def test_cells_render_nested_values_compactly() -> None:
    text = out_of({"inventories": [{"uuid": "u", "name": True, "state": [1, 2]}]}, output="value")[
        0
    ]
    assert text == "u\ttrue\t[1,2]\n"


def test_help_lists_resources_verbs_parameters_and_exit_statuses() -> None:
    cat = Catalogue(CATALOGUE)
    top = render_help(Help([]), cat)
    assert "l2-network (l2)" in top and "create-l2-vlan-network" in top
    assert "124" in top and "130" in top and "exit status" in top
    verb = render_help(Help(["zone", "create"]), cat)
    assert "--name, name=  string; required" in verb and "the name" in verb
    assert "--system-tags, systemTags=  list of string; default []" in verb
    lst = render_help(Help(["zone", "list"]), cat)
    assert "--sort-by, sortBy=" in lst and "Enabled|Disabled" in lst
    assert "StartVmInstance" in render_help(Help(["api"]), cat)
    with pytest.raises(UsageError):
        render_help(Help(["zone", "crate"]), cat)
    assert "exit status" in render_help(Help([]), None)


def test_progress_plain_lines_when_not_a_terminal() -> None:
    err = io.StringIO()
    progress = Progress(err)
    for pct in (10, 10, 50):
        progress(
            {
                "type": "event",
                "path": "/job/j1",
                "data": {"jobUuid": "j1", "name": "StartVm", "progress": pct, "text": "boot"},
            }
        )
    progress(
        {
            "type": "event",
            "path": "/job/j1",
            "data": {"jobUuid": "j1", "state": "Succeeded", "progress": 100},
        }
    )
    assert err.getvalue() == "StartVm: 10% boot\nStartVm: 50% boot\n"
    assert progress.job == "j1"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("zcli.progress.TICK", 3600)  # no spinner frame during the test
    err = Tty()
    progress = Progress(err)
    progress({"path": "/job/j1", "data": {"jobUuid": "j1", "name": "StartVm", "state": "Running"}})
    assert progress.job == "j1"  # known from the job's start, before any progress
    for pct in (10, 50):
        data = {"jobUuid": "j1", "name": "StartVm", "progress": pct, "text": "boot"}
        progress({"path": "/job/j1", "data": {**data, "step": pct // 10, "steps": 10}})
    progress.done()
    lines = err.getvalue().split("\r\x1b[K")
    assert lines[0] == "" and lines[-1] == ""  # every line rewritten in place, then cleared
    assert lines[1].startswith("⠋  StartVm  ") and lines[1].endswith("  0s")
    assert "  1/10 boot  10%  " in lines[2] and "  5/10 boot  50%  " in lines[3]
    assert "\n" not in err.getvalue() and progress.job is None


def test_progress_line_counts_elapsed_time_and_turns() -> None:
    progress = Progress(Tty())
    progress._state = {"name": "CreateVmInstance", "progress": 42, "text": "alloc", "step": 3}
    progress._state["steps"] = 7
    progress._started = 100.0
    assert progress.line(now=172.5) == "⠋  CreateVmInstance  3/7 alloc  42%  1m12s"
    progress._frame = 1
    assert progress.line(now=100.0 + 3 * 3600).startswith("⠙  ")
    assert progress.line(now=100.0 + 3 * 3600).endswith("  3h00m")


def test_progress_spinner_turns_while_a_step_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("zcli.progress.TICK", 0.01)
    err = Tty()
    progress = Progress(err)
    progress({"path": "/job/j1", "data": {"jobUuid": "j1", "name": "StartVm", "progress": 5}})
    import time

    time.sleep(0.2)
    progress.done()
    frames = {line[:1] for line in err.getvalue().split("\r\x1b[K") if line}
    assert len(frames) > 1  # redrawn with other spinner frames without any new event


def test_follow_hint_names_the_commands() -> None:
    hint = follow_hint("j1")
    assert "zcli job wait j1" in hint and "zcli job cancel j1" in hint


def test_no_color_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = Tty()
    render({"inventories": ZONES}, Options(), ZONE, out, io.StringIO())
    assert "z1" in out.getvalue() and "\x1b[" not in out.getvalue()
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "xterm-256color")
    out = Tty()
    render({"inventories": ZONES}, Options(), ZONE, out, io.StringIO())
    assert "\x1b[" in out.getvalue()  # a terminal without NO_COLOR gets colour (bold header)


def test_sessions_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    session.save("unix:/a.sock", "s1")
    session.save("tcp://h:1", "s2")
    path = tmp_path / "zcli" / "sessions.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert session.get("unix:/a.sock") == "s1"
    monkeypatch.chdir("/")
    assert session.get("unix:a.sock") == "s1"  # the same socket, named relatively
    assert session.forget("unix:/a.sock") is True
    assert session.load_all() == {"tcp://h:1": "s2"}
    path.write_text("not json")
    assert session.get("tcp://h:1") is None


def test_catalogue_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.load("abc") is None
    cache.store("abc", {"apis": []})
    assert cache.load("abc") == {"apis": []}
    assert (tmp_path / "zcli" / "catalogue-abc.json").exists()
    fast = f"catalogue-abc.{sys.implementation.cache_tag}.marshal"  # the quick-to-read copy
    sliced = f"catalogue-abc.{sys.implementation.cache_tag}.queries.marshal"  # list and get's
    assert sorted(p.name for p in (tmp_path / "zcli").iterdir()) == sorted(
        ["catalogue-abc.json", fast, sliced]
    )  # no temp left
    assert cache.newest() == ("abc", {"apis": []})
    assert cache.load("../evil") is None
    for n in range(cache.KEEP + 3):
        cache.store(f"h{n}", {"n": n})
    assert len(list((tmp_path / "zcli").glob("catalogue-*.json"))) == cache.KEEP
    assert (
        len(list((tmp_path / "zcli").glob("catalogue-*.marshal"))) == 2 * cache.KEEP
    )  # pruned too


QUERY_ZONE = {"name": "QueryZone", "resource": "Zone", "verb": "query", "params": []}
CREATE_ZONE = {"name": "CreateZone", "resource": "Zone", "verb": "create", "params": []}
WHOLE = {
    "version": "1",
    "apis": [CREATE_ZONE, QUERY_ZONE, {"name": "CreateVip", "resource": "Vip", "verb": "create"}],
    "resources": [{"name": "Zone", "cli": "zone"}, {"name": "Vip", "cli": "vip"}],
    "errorKinds": {"NOT_FOUND": 4},
    "errorCodes": {"ZONE.NOT_FOUND": "no such zone"},
    "globalConfigs": [{"name": "x"}],
}


def test_the_read_only_slice_has_every_type_and_query_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache.store("abc", WHOLE)
    sliced = cache.load("abc", cache.QUERIES)
    assert sliced == {
        "version": "1",
        "errorKinds": {"NOT_FOUND": 4},
        "resources": WHOLE["resources"],
        "apis": [QUERY_ZONE],
    }
    assert cache.load("abc") == WHOLE
    # a cache written before slices: the first read of the slice makes it from the whole
    part = tmp_path / "zcli" / f"catalogue-abc.{sys.implementation.cache_tag}.queries.marshal"
    part.unlink()
    assert cache.load("abc", cache.QUERIES) == sliced
    assert part.exists()


def test_a_one_shot_list_or_get_reads_the_slice_and_anything_else_the_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zcli.runner import reads_only

    assert reads_only(["zone", "list", "name=z1"]) == "zone"
    assert reads_only(["zone", "get", "z1"]) == "zone"
    assert reads_only(["zone", "create", "z1"]) is None
    assert reads_only(["zone", "list", "--help"]) is None
    assert reads_only(["zone"]) is None
    assert reads_only(["api", "QueryZone", "count=true"]) == "QueryZone"
    assert reads_only(["api", "CreateZone", "name=z1"]) is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache.store("abc", WHOLE)

    def apis(reads: str | None) -> list[str]:
        cat = cache.catalogue("abc", reads)
        assert cat is not None and cat.hash == "abc"
        return sorted(cat.apis)

    sliced, whole = ["QueryZone"], ["CreateVip", "CreateZone", "QueryZone"]
    assert apis("zone") == apis("QueryZone") == sliced
    assert apis(None) == whole
    # no QueryVip, no such word: the whole catalogue, which may know more than the slice
    assert apis("vip") == apis("nothing") == apis("QueryVip") == whole
    assert cache.catalogue("unknown-hash", "zone") is None


def test_catalogue_cache_reads_the_json_when_its_fast_copy_is_bad(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache.store("abc", {"apis": [1]})
    fast = tmp_path / "zcli" / f"catalogue-abc.{sys.implementation.cache_tag}.marshal"
    fast.write_bytes(b"\xff not marshal")
    assert cache.load("abc") == {"apis": [1]}
    fast.unlink()  # a cache written by an older zcli has no copy: the first read makes it
    assert cache.load("abc") == {"apis": [1]}
    assert fast.exists()
    assert cache.load("abc") == {"apis": [1]}


def test_cold_start_imports_neither_rich_nor_the_server() -> None:
    # a one-shot command (a table for people too) imports neither typing nor shutil: each
    # costs milliseconds of every cold zcli (docs/benchmarks.md, Cold CLI); batch files may
    code = (
        "import sys, io\n"
        "import zcli.main, zcli.runner, zcli.people, zcli.columns, zcli.table\n"
        "from zcli.output import render\nfrom zcli.options import Options\n"
        "render({'inventories': []}, Options(output='json'), None, io.StringIO(), io.StringIO())\n"
        "heavy = ('rich', 'yaml', 'sqlalchemy', 'typer', 'textual', 'prompt_toolkit')\n"
        "cold = heavy + ('typing', 'shutil', 'asyncio')\n"
        "def bad(names):\n"
        "    return [m for m in sys.modules if m.split('.')[0] in names"
        " or m.startswith(('zmn.core', 'zmn.server', 'zmn.services'))]\n"
        "one_shot = bad(cold)\n"
        "import zcli.batch\n"
        "print(one_shot, bad(heavy))\n"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
    )
    assert res.stdout.strip() == "[] []"


# Cells as zcli prints them: mostly plain ASCII (laid out without rich), sometimes not.
_cells = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    st.sampled_from(["", " ", "zéro", "名前", "a\tb", "two\nlines", "\x1b[1m"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=4).flatmap(
        lambda n: st.tuples(
            st.lists(_cells, min_size=n, max_size=n),
            st.lists(st.lists(_cells, min_size=n, max_size=n), max_size=5),
            st.booleans(),
        )
    )
)
def test_plain_tables_print_what_rich_prints(case: tuple[list[str], list[list[str]], bool]) -> None:
    columns, rows, header = case
    fast, slow = io.StringIO(), io.StringIO()
    table.print_table(columns, rows, fast, header=header)
    table.rich_table(columns, rows, slow, header=header)
    assert fast.getvalue() == slow.getvalue()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_cells, _cells), max_size=6))
def test_plain_properties_print_what_rich_prints(pairs: list[tuple[str, str]]) -> None:
    fast, slow = io.StringIO(), io.StringIO()
    table.print_properties(pairs, fast)
    table.rich_properties(pairs, slow)
    assert fast.getvalue() == slow.getvalue()


def test_a_table_to_a_pipe_imports_no_rich() -> None:
    code = (
        "import io, sys\n"
        "from zcli.output import render\nfrom zcli.options import Options\n"
        "rows = {'inventories': [{'uuid': 'a' * 32, 'name': 'z1', 'description': None}]}\n"
        "render(rows, Options(), None, sys.stdout, io.StringIO())\n"
        "render({'total': 1}, Options(), None, sys.stdout, io.StringIO())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))\n"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert res.stdout == (
        "uuid                               name   description\n"
        + "\u2500" * 53
        + "\n" + "a" * 32 + "   z1\ntotal  1\n[]\n"
    )  # fmt: skip
