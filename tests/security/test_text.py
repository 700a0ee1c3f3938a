"""Tenant text is inert (issue 16, item 4).

Names, descriptions, tags and every other string a client sends have a length limit in the
catalogue (255 for names, as ZStack) and refuse control characters; text an older database
already holds is printed by zcli tables and the dashboard as visible escapes, never as
terminal control sequences, while ``-o json`` stays exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.support.inproc import Api, running_node
from tui.format import cell as tui_cell
from tui.format import event_summary
from zcli.output import cell as zcli_cell
from zmn.api.errors import InvalidArgument
from zmn.api.text import inert
from zmn.services.zone.models import ZoneVO

ROOT = Path(__file__).resolve().parents[2]
NASTY = [
    "\x1b[2J\x1b]0;owned\x07",  # clear screen, retitle the terminal
    "evil\x9b31m",  # C1 CSI
    "invoice\u202egnp.exe",  # right-to-left override
    "a\u2066b\u2069",  # isolates
    "two\nlines",
    "nul\x00byte",
    "del\x7f",
]


@pytest.mark.parametrize("text", NASTY)
async def test_names_descriptions_and_tags_refuse_control_characters(
    node_api: Api, text: str
) -> None:
    for args in (
        {"name": text},
        {"name": "z", "description": text},
        {"name": "z", "userTags": ["ok", text]},
        {"name": "z", "systemTags": [text]},
    ):
        with pytest.raises(InvalidArgument) as info:
            await node_api("CreateZone", **args)
        assert info.value.code == "ARG.INVALID"
        field = next(k for k in args if k != "name" or len(args) == 1)
        assert info.value.field is not None and info.value.field.startswith(field)
        assert "control character" in info.value.message
    assert (await node_api("QueryZone", count=True))["total"] == 0


async def test_length_limits_are_in_the_catalogue_and_enforced(node_api: Api) -> None:
    catalogue = (await node_api("GetApiCatalogue"))["catalogue"]
    for entry in catalogue["apis"]:
        for p in entry["params"]:
            kind = p["type"] if p["type"] != "list" else p["items"]["type"]
            if kind == "string":
                assert isinstance(p.get("maxLength"), int), (entry["name"], p["name"])
            if p["name"] == "name":
                assert p["maxLength"] == 255, entry["name"]
    with pytest.raises(InvalidArgument) as info:
        await node_api("CreateZone", name="n" * 256)
    assert (info.value.code, info.value.field) == ("ARG.INVALID", "name")
    assert "at most 255" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        await node_api("CreateZone", name="z", description="d" * 2049)
    assert info.value.field == "description"
    ok = await node_api("CreateZone", name="n" * 255, description="ünïcode — fine 雲")
    assert ok["inventory"]["description"] == "ünïcode — fine 雲"
    with pytest.raises(InvalidArgument) as info:  # updates are checked the same way
        await node_api("UpdateZone", uuid=ok["inventory"]["uuid"], name="x\x1by")
    assert info.value.field == "name"


def test_inert_shows_every_terminal_control_as_an_escape() -> None:
    for text in NASTY:
        shown = inert(text)
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown), shown
        assert not any(c in shown for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2069")
    assert inert("\x1b[2J") == "\\x1b[2J"
    assert inert("a\u202eb") == "a\\u202eb"
    assert inert("tab\tnl\n") == "tab\\tnl\\n"
    assert inert("plain é 雲") == "plain é 雲"


def test_zcli_and_tui_cells_are_inert() -> None:
    for text in NASTY:
        assert zcli_cell(text) == inert(text)
        assert zcli_cell({"k": text}) == inert(zcli_cell({"k": text}))
        assert tui_cell("name", text).plain == inert(text)
        assert tui_cell("description", [text]).plain == inert(str([text]))[:40]
    frame = {"path": "/zone/created", "data": {"inventory": {"name": NASTY[0]}}}
    assert "\x1b" not in event_summary(frame).plain


async def zcli(home: Path, tmp: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZMN_", "XDG_"))}
    env.update(
        ZMN_ENDPOINT=f"unix:{home / 'zmn.sock'}",
        ZMN_HOME=str(home),
        XDG_CONFIG_HOME=str(tmp / "config"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        PYTHONPATH=str(ROOT),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zcli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_text_stored_by_an_older_node_prints_inert(tmp_path: Path) -> None:
    """A name with escapes already in the database (written before the checks existed)."""
    home = tmp_path / "home"
    async with running_node(home) as (node, _server):
        api = Api(node)
        uuid = (await api("CreateZone", name="placeholder"))["inventory"]["uuid"]
        evil = "\x1b]0;pwned\x07\x1b[2Jz\u202eevil"
        with node.db.tx() as s:  # what an older database holds
            s.execute(update(ZoneVO).where(ZoneVO.uuid == uuid).values(name=evil, description=evil))
        for args in (("zone", "list"), ("zone", "get", uuid), ("-o", "value", "zone", "list")):
            out = await zcli(home, tmp_path, *args)
            assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, out
            assert "\\x1b]0;pwned\\x07\\x1b[2Jz\\u202eevil" in out
        exact = json.loads(await zcli(home, tmp_path, "-o", "json", "zone", "get", uuid))
        assert exact["name"] == evil and exact["description"] == evil
