"""Batch files: ``zcli -f FILE`` (or ``-f -`` for stdin), one command a line, one connection.

Lines are split like a shell would (``shlex``); blank lines and ``#`` comments are skipped
(``#`` starts a comment at the start of a word only: ``name=z#1`` is a value);
a leading ``zcli`` is optional and a line may start with its own output options
(``-o json zone list``). The run stops at the first failing line unless
``--continue-on-error``; its exit status is that of the first failing line.

``--parallel N`` keeps N lines in flight on the connection (:mod:`zcli.parallel`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from zcli.inputs import split_line
from zcli.options import Options, parse_globals
from zcli.runner import Runner
from zmn.api.errors import EXIT_OK, EXIT_USAGE, ZmnError


class Line(NamedTuple):
    """One command of a batch: where it stands, its tokens and options, or its error."""

    where: str
    tokens: list[str]
    opts: Options
    error: ZmnError | str | None = None  # str: a line that cannot be split


def run_file(runner: Runner, opts: Options) -> int:
    path = opts.file or "-"
    opts = opts.copy()
    opts.yes = True  # a batch is a script: it never stops to ask, even run from a terminal
    if path == "-":
        runner.stdin_busy = True
        return run_lines(runner, opts, sys.stdin)
    try:
        with open(path, encoding="utf-8") as f:
            return run_lines(runner, opts, f)
    except OSError as exc:
        runner.err.write(
            f"error: CLI.FILE: cannot read {path}: {exc.strerror or exc}\nfield: file\n"
        )
        return EXIT_USAGE


def commands(opts: Options, lines: Iterable[str]) -> Iterator[Line]:
    """The batch's commands in order (blank lines and comments left out)."""
    for number, line in enumerate(lines, 1):
        where = f"line {number}: {line.strip()}"
        try:
            tokens = split_line(line)
        except ValueError as exc:
            yield Line(where, [], opts, f"cannot split the line: {exc}")
            continue
        if not tokens:
            continue
        if tokens[0] == "zcli":
            tokens = tokens[1:]
        try:
            line_opts, rest = parse_globals(tokens, opts, in_batch=True)
        except ZmnError as exc:
            yield Line(where, tokens, opts, exc)
        else:
            yield Line(where, rest, line_opts)


def run_line(runner: Runner, line: Line) -> int:
    """Run one command of the batch with ``runner``; its exit status."""
    if isinstance(line.error, str):
        runner.err.write(f"error: CLI.USAGE: {line.error}\nat {line.where}\n")
        return EXIT_USAGE
    if line.error is not None:
        return runner.report(line.error, line.where)
    return runner.run(line.tokens, line.opts, line.where)


def run_lines(runner: Runner, opts: Options, lines: Iterable[str]) -> int:
    if opts.parallel > 1:
        from zcli.parallel import run_parallel

        return run_parallel(runner, opts, commands(opts, lines))
    status = EXIT_OK
    for line in commands(opts, lines):
        code = run_line(runner, line)
        if code != EXIT_OK:
            status = status or code
            if not opts.continue_on_error:
                break
    return status
