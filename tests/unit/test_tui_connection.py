"""ztui finds its endpoint and session the way zcli does."""

from __future__ import annotations

import json
from pathlib import Path

from tui.connection import resolve, stored_session


def write_sessions(tmp_path: Path, data: object) -> dict[str, str]:
    path = tmp_path / "zcli" / "sessions.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return {"XDG_CONFIG_HOME": str(tmp_path)}


def test_options_win_over_environment(tmp_path: Path) -> None:
    env = {"ZMN_ENDPOINT": "tcp://h:1", "ZMN_SESSION": "s-env", "XDG_CONFIG_HOME": str(tmp_path)}
    assert resolve("unix:/x.sock", "s-opt", env) == ("unix:/x.sock", "s-opt")
    assert resolve(None, None, env) == ("tcp://h:1", "s-env")


def test_session_file_string_or_object_values(tmp_path: Path) -> None:
    env = write_sessions(
        tmp_path,
        {
            "tcp://a:1": "plain",
            "tcp://b:1": {"session": "in-object"},
            "tcp://c:1": {"uuid": "by-uuid"},
        },
    )
    assert resolve("tcp://a:1", None, env) == ("tcp://a:1", "plain")
    assert stored_session("tcp://b:1", env) == "in-object"
    assert stored_session("tcp://c:1", env) == "by-uuid"
    assert stored_session("tcp://other:1", env) is None


def test_unreadable_session_file_means_no_session(tmp_path: Path) -> None:
    assert stored_session("tcp://a:1", write_sessions(tmp_path, "{not json")) is None
    assert stored_session("tcp://a:1", {"XDG_CONFIG_HOME": str(tmp_path / "missing")}) is None


def test_session_file_of_the_wrong_shape(tmp_path: Path) -> None:
    assert stored_session("tcp://a:1", write_sessions(tmp_path, ["tcp://a:1"])) is None


def test_default_endpoint_from_zmn_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ZMN_ENDPOINT", raising=False)
    monkeypatch.setenv("ZMN_HOME", str(tmp_path))
    endpoint, session = resolve(None, None, {"XDG_CONFIG_HOME": str(tmp_path)})
    assert endpoint == f"unix:{tmp_path / 'zmn.sock'}"
    assert session is None
