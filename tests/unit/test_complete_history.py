"""The shell's history never keeps a secret: scrubbing, and the file it writes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from zcli.catalogue import Catalogue
from zcli.shell.history import ScrubbingFileHistory, history_path, scrub, secret_names

SECRETS = {"password", "sessionUuid"}


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("login --account a --password s3cret", "login --account a --password ***"),
        ("api CreateAccount name=x password=abc", "api CreateAccount name=x password=***"),
        ("account update a --password=xyz", "account update a --password=***"),
        ("CreateAccount name=x password='a b c'", "CreateAccount name=x password=***"),
        ("LogOut sessionUuid=0123", "LogOut sessionUuid=***"),
        ("login --password 'never closed", "login --password ***"),
        ("zone list name='two words'", "zone list name='two words'"),  # untouched
        ("user create --name u --password p \\\n  --description d",
         "user create --name u --password *** --description d"),
    ],
)  # fmt: skip
def test_scrub(line: str, kept: str) -> None:
    assert scrub(line, SECRETS) == kept


def test_secret_names_come_from_the_catalogue() -> None:
    cat = Catalogue(
        {
            "apis": [
                {"name": "LogIn", "params": [{"name": "token", "type": "string", "secret": True}]},
                {"name": "Other", "params": [{"name": "name", "type": "string"}]},
            ]
        }
    )
    assert secret_names(cat) == {"password", "token"}
    assert secret_names(None) == {"password"}


def test_history_file_is_private_and_scrubbed(tmp_path: Path) -> None:
    path = tmp_path / "state" / "zcli" / "history"
    history = ScrubbingFileHistory(path, SECRETS)
    history.append_string("CreateAccount name=a password=hunter2")
    history.append_string("zone list")
    text = path.read_text()
    assert "hunter2" not in text and "password=***" in text and "zone list" in text
    assert history.get_strings()[-2:] == ["CreateAccount name=a password=***", "zone list"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_history_path_follows_xdg_state_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert history_path() == tmp_path / "zcli" / "history"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert history_path() == tmp_path / ".local" / "state" / "zcli" / "history"
