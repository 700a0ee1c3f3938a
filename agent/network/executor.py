"""The one place where host networking touches the system: argv lists and file writes.

Builders return argv lists and file contents; an :class:`Executor` carries them out. The real
one runs programs without a shell (``shell=False``, argv only) and writes files atomically;
:class:`RecordingExecutor` records everything and answers queries from canned outputs, so
unit tests assert exactly what would run.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from zmn.api.errors import OperationFailed


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""


class Executor(Protocol):
    def run(self, argv: list[str], *, stdin: str | None = None, check: bool = True) -> Result: ...
    def write_file(self, path: str, content: str, mode: int = 0o644) -> bool: ...
    def read_file(self, path: str) -> str | None: ...


def _failed(argv: list[str], res: Result) -> OperationFailed:
    return OperationFailed(
        f"{argv[0]} failed ({res.returncode}): {res.stderr.strip()[:500]}",
        code="AGENT.COMMAND_FAILED",
        argv=argv,
        returncode=res.returncode,
    )


class SystemExecutor:
    """Runs argv lists with subprocess (never a shell) and writes files atomically."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout

    def run(self, argv: list[str], *, stdin: str | None = None, check: bool = True) -> Result:
        try:
            proc = subprocess.run(  # noqa: S603 - argv list, no shell
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise OperationFailed(
                f"{argv[0]} is not installed", code="AGENT.COMMAND_MISSING", argv=argv
            ) from None
        except subprocess.TimeoutExpired:
            raise OperationFailed(
                f"{argv[0]} timed out after {self.timeout} s", code="AGENT.COMMAND_TIMEOUT"
            ) from None
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and res.returncode != 0:
            raise _failed(argv, res)
        return res

    def write_file(self, path: str, content: str, mode: int = 0o644) -> bool:
        """Write if different (temp file + rename); True when the file changed."""
        if self.read_file(path) == content:
            return False
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".zagent-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return True

    def read_file(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None


@dataclass
class RecordingExecutor:
    """Records argv lists (with their stdin) and file writes; replies from ``outputs``.

    ``outputs`` maps a tuple prefix of argv to the stdout it returns, e.g.
    ``{("ip", "-j", "link", "show"): "[]"}``; unmatched commands return an empty stdout.
    ``fail`` holds argv prefixes that return exit status 1.
    """

    outputs: dict[tuple[str, ...], str] = field(default_factory=dict)
    fail: set[tuple[str, ...]] = field(default_factory=set)
    commands: list[list[str]] = field(default_factory=list)
    stdins: list[str | None] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def _match(table: Iterable[tuple[str, ...]], argv: list[str]) -> tuple[str, ...] | None:
        best: tuple[str, ...] | None = None
        for prefix in table:
            if tuple(argv[: len(prefix)]) == prefix and (best is None or len(prefix) > len(best)):
                best = prefix
        return best

    def run(self, argv: list[str], *, stdin: str | None = None, check: bool = True) -> Result:
        self.commands.append(list(argv))
        self.stdins.append(stdin)
        if self._match(self.fail, argv) is not None:
            res = Result(1, "", "simulated failure")
            if check:
                raise _failed(argv, res)
            return res
        key = self._match(self.outputs, argv)
        return Result(0, self.outputs[key] if key is not None else "", "")

    def write_file(self, path: str, content: str, mode: int = 0o644) -> bool:
        changed = self.files.get(path) != content
        self.files[path] = content
        return changed

    def read_file(self, path: str) -> str | None:
        return self.files.get(path)
