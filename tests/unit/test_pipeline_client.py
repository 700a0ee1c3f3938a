"""PipelinedClient: several threads with requests in flight on one connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zcli.pipeline import PipelinedClient
from zmn.api.errors import Timeout, Unavailable
from zmn.api.wire import encode_std, read_frame_sync

Serve = Callable[[socket.socket], None]


def node(tmp_path: Path, serve: Serve) -> str:
    """A one-connection fake node on a unix socket; its endpoint."""
    path = str(tmp_path / "n.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def accept() -> None:
        conn, _ = listener.accept()
        conn.sendall(encode_std({"type": "hello"}))
        try:
            serve(conn)
        finally:
            conn.close()
            listener.close()

    threading.Thread(target=accept, daemon=True).start()
    return f"unix:{path}"


def in_threads(client: PipelinedClient, names: list[str], **kw: Any) -> dict[str, Any]:
    got: dict[str, Any] = {}

    def one(name: str) -> None:
        try:
            got[name] = client.call("Echo", {"name": name}, **kw)
        except Exception as exc:  # the test looks at it
            got[name] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return got


def test_replies_out_of_order_reach_their_callers(tmp_path: Path) -> None:
    def serve(conn: socket.socket) -> None:
        frames = [read_frame_sync(conn) for _ in range(4)]  # all four in flight at once
        conn.sendall(encode_std({"type": "event", "path": "x"}))
        conn.sendall(encode_std({"type": "reply", "id": 999, "ok": True, "result": "stray"}))
        for f in reversed(frames):
            assert f is not None
            reply = {"type": "reply", "id": f["id"], "ok": True, "result": f["args"]["name"]}
            conn.sendall(encode_std(reply))
        read_frame_sync(conn)

    client = PipelinedClient(node(tmp_path, serve))
    client.connect()
    got = in_threads(client, ["a", "b", "c", "d"], timeout=5)
    assert got == {"a": "a", "b": "b", "c": "c", "d": "d"}
    client.close()


def test_a_timeout_is_one_callers_and_a_closed_connection_everyones(tmp_path: Path) -> None:
    def serve(conn: socket.socket) -> None:
        first = read_frame_sync(conn)  # never answered
        assert first is not None
        second = read_frame_sync(conn)
        assert second is not None
        reply = {"type": "reply", "id": second["id"], "ok": True, "result": "late"}
        threading.Event().wait(0.5)
        conn.sendall(encode_std(reply))
        read_frame_sync(conn)  # the last request: the connection closes under it

    client = PipelinedClient(node(tmp_path, serve))
    client.connect()
    with pytest.raises(Timeout):
        client.call("Echo", {"name": "lost"}, timeout=0.2)
    assert client.call("Echo", {"name": "b"}, timeout=5) == "late"
    with pytest.raises(Unavailable):
        client.call("Echo", {"name": "c"}, timeout=5)
