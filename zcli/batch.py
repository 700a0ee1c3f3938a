"""Batch files: ``zcli -f FILE`` (or ``-f -`` for stdin), one command a line, one connection.

Lines are split like a shell would (``shlex``); blank lines and ``#`` comments are skipped
(``#`` starts a comment at the start of a word only: ``name=z#1`` is a value);
a leading ``zcli`` is optional and a line may start with its own output options
(``-o json zone list``). The run stops at the first failing line unless
``--continue-on-error``; its exit status is that of the first failing line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from zcli.inputs import split_line
from zcli.options import Options, parse_globals
from zcli.runner import Runner
from zmn.api.errors import EXIT_OK, EXIT_USAGE, ZmnError


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


def run_lines(runner: Runner, opts: Options, lines: Iterable[str]) -> int:
    status = EXIT_OK
    for number, line in enumerate(lines, 1):
        where = f"line {number}: {line.strip()}"
        try:
            tokens = split_line(line)
        except ValueError as exc:
            runner.err.write(f"error: CLI.USAGE: cannot split the line: {exc}\nat {where}\n")
            code = EXIT_USAGE
        else:
            if not tokens:
                continue
            if tokens[0] == "zcli":
                tokens = tokens[1:]
            try:
                line_opts, rest = parse_globals(tokens, opts, in_batch=True)
            except ZmnError as exc:
                code = runner.report(exc, where)
            else:
                code = runner.run(rest, line_opts, where)
        if code != EXIT_OK:
            status = status or code
            if not opts.continue_on_error:
                break
    return status
