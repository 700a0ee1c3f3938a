"""Run a command on a real pseudo-terminal of a given size, as a person's terminal would."""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import struct
import subprocess
import termios
import time


def run_on_pty(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    *,
    columns: int = 80,
    rows: int = 24,
    answer: str | None = None,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on one pty of ``columns`` x ``rows``;
    ``answer`` is typed once the program prints ``[y/N]``. The exit status and every
    byte it wrote (``\\r\\n`` turned back into ``\\n``)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    typed = answer is None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the program closed the terminal
                break
            if not data:
                break
            chunks.append(data)
            if not typed and b"[y/N]" in b"".join(chunks):
                os.write(master, (answer or "").encode() + b"\n")
                typed = True
        elif proc.poll() is not None:
            break
    os.close(master)
    try:
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return status, text


async def arun_on_pty(
    argv: list[str], env: dict[str, str], cwd: str, **kw: object
) -> tuple[int, str]:
    """:func:`run_on_pty` in a thread, so that a node on the test's loop keeps serving."""
    return await asyncio.to_thread(run_on_pty, argv, env, cwd, **kw)  # type: ignore[arg-type]
