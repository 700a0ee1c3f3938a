"""``--<param>-file PATH``: a string parameter from a file's text, a list one from its lines.

``zcli vm create ... --user-data-file F --ssh-key-file K`` gives ``userData`` (F's text, or
base64 when it is not UTF-8) and ``sshKeys`` (one key a line, as in authorized_keys).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from zcli.catalogue import Catalogue
from zcli.parser import ApiCall, UsageError, parse

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIALvk7yGVXTUS/H2Eu4E5IRiXIjxrAZwurR7U+5EdZ6r me@a,b"


def _p(name: str, typ: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "required": False, "type": typ, "default": None, **kw}


CATALOGUE = {
    "apis": [{
        "name": "CreateVmInstance", "resource": "VmInstance", "verb": "create", "summary": "",
        "doc": "", "long": True,
        "params": [{"name": "name", "required": True, "type": "string"},
                   _p("userData", "string", nullable=True),
                   _p("sshKeys", "list", items={"type": "string"}),
                   _p("description", "string", nullable=True)],
    }],
    "resources": [{"name": "VmInstance", "cli": "vm", "columns": ["uuid", "name"],
                   "fields": [{"name": "uuid", "type": "string"}]}],
}  # fmt: skip


def call(*tokens: str) -> ApiCall:
    cmd = parse(["vm", "create", *tokens], Catalogue(CATALOGUE, "h"))
    assert isinstance(cmd, ApiCall)
    return cmd


def test_user_data_and_key_files_fill_the_parameters(tmp_path: Path) -> None:
    ud = tmp_path / "user-data"
    ud.write_text("#cloud-config\nruncmd:\n  - echo a,b\n")
    keys = tmp_path / "keys"
    keys.write_text(f"# my keys\n{KEY}\n\n")
    more = tmp_path / "more.pub"
    more.write_text(KEY.replace("me@a,b", "other") + "\n")
    cmd = call("web", f"--user-data-file={ud}", "--ssh-key-file", str(keys),
               "--ssh-key-file", str(more))  # fmt: skip
    assert cmd.args["userData"] == ud.read_text()
    assert cmd.args["sshKeys"] == [KEY, KEY.replace("me@a,b", "other")]  # commas kept


def test_a_binary_user_data_file_goes_as_base64(tmp_path: Path) -> None:
    gz = tmp_path / "ud.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00\xff")
    assert call("web", "--user-data-file", str(gz)).args["userData"] == base64.b64encode(
        gz.read_bytes()
    ).decode()


def test_a_missing_file_is_a_usage_error_naming_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as bad:
        call("web", "--ssh-key-file", str(tmp_path / "missing.pub"))
    assert bad.value.field == "sshKeys" and bad.value.code == "CLI.FILE"
    with pytest.raises(UsageError) as unknown:
        call("web", "--name-of-thing-file", "x")
    assert unknown.value.code == "ARG.UNKNOWN"
