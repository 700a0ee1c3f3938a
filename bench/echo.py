"""A tiny framed-JSON echo server: the raw socket baseline and the lean reference's fake agent.

It speaks the node's wire format (:mod:`zmn.api.wire`: 4-byte length + JSON), greets with a
``hello`` frame so :class:`zmn.client.AsyncClient` can talk to it unchanged, and answers every
request at once with its arguments. Run as ``python -m bench.echo SOCKET``; it serves until
killed. Anything slower than this is what the node adds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from zmn.api.wire import encode, read_frame


async def _serve(path: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(encode({"type": "hello", "version": "echo", "protocol": 1}))
        try:
            while True:
                frame = await read_frame(reader)
                if frame is None:
                    break
                writer.write(
                    encode(
                        {
                            "type": "reply",
                            "id": frame.get("id"),
                            "ok": True,
                            "result": frame.get("args") or {},
                        }
                    )
                )
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=path, limit=2**24)
    async with server:
        await server.serve_forever()


class EchoProcess:
    """The echo server in its own process (like the node), started and stopped by pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"unix:{self.path}"

    def __enter__(self) -> EchoProcess:
        self.path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.echo", str(self.path)],
            cwd=str(Path(__file__).resolve().parent.parent),
            env=dict(os.environ),
        )
        deadline = time.monotonic() + 30
        while not self.path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the echo server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        self.path.unlink(missing_ok=True)


if __name__ == "__main__":
    try:
        asyncio.run(_serve(sys.argv[1]))
    except KeyboardInterrupt:
        pass
