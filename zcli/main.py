"""Entry point of ``zcli`` (also ``python -m zcli.main``): global options, then one command
or a batch file. See ``zcli help`` for the grammar and the exit statuses.
"""

from __future__ import annotations

import os
import sys

# Set by the commands after which the process may end without the interpreter's teardown
# (see run): a one-shot command and a completion request, which leave no thread, no atexit
# work and no open file behind. Not the shell, a batch or the dashboard.
_done = False


def run() -> None:
    """The ``zcli`` console script: :func:`main`, then, after a one-shot command or a
    completion, ``os._exit`` once stdout and stderr are flushed. Freeing every module and
    object at exit costs a cold command several milliseconds of CPU (about a sixth of its
    budget in docs/benchmarks.md, Cold CLI) and does nothing for a process that is done."""
    status = main()
    if not _done:
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away (or the stream closed)
            status = status or 1
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    global _done
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["__complete"]:  # shell-script completion: imports no client until needed
        from zcli.complete import main as complete

        _done = True
        return complete(argv[1:])
    from zcli.options import parse_globals
    from zcli.runner import Runner, reads_only
    from zmn.api.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ZmnError

    runner: Runner | None = None
    try:
        try:
            opts, rest = parse_globals(argv)
        except ZmnError as exc:
            sys.stderr.write(f"error: {exc.code}: {exc.message}\n")
            if exc.field:
                sys.stderr.write(f"field: {exc.field}\n")
            return exc.exit_status
        if opts.version:
            from zmn import __version__

            sys.stdout.write(f"zcli {__version__}\n")
            return EXIT_OK
        if rest[:1] == ["dashboard"]:
            return _dashboard(opts, rest[1:])
        if opts.file is None and (rest[:1] == ["shell"] or (not rest and _on_terminal())):
            from zcli.shell.app import main as shell

            return shell(opts, rest[1:])
        if opts.parallel != 1 and opts.file is None:
            sys.stderr.write(
                "error: CLI.USAGE: --parallel needs a batch: -f FILE\nfield: parallel\n"
            )
            return 2
        runner = Runner(opts)
        if opts.file is not None:
            if rest:
                runner.err.write(f"error: CLI.USAGE: -f takes no command, got {rest[0]!r}\n")
                return 2
            from zcli.batch import run_file

            return run_file(runner, opts)
        if len(rest) >= 2 and rest[0] in ("vm", "host") and rest[1] == "top":
            from zcli.top import top  # hand-written: many calls per refresh

            return top(runner, opts, rest[0], rest[2:])
        runner.reads = reads_only(rest)
        _done = True
        return runner.run(rest)
    except KeyboardInterrupt:
        if runner is not None:
            runner.progress.done()
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (zcli zone list | head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    finally:
        if runner is not None:
            runner.close()


def _dashboard(opts: object, extra: list[str]) -> int:
    """``zcli dashboard`` runs ``ztui`` with the same endpoint and session."""
    import os
    import shutil

    argv = [shutil.which("ztui") or "ztui"]
    endpoint = getattr(opts, "endpoint", None)
    session = getattr(opts, "session", None)
    if endpoint:
        argv += ["--endpoint", endpoint]
    if session:
        argv += ["--session", session]
    try:
        os.execvp(argv[0], argv + extra)  # noqa: S606 - our own dashboard, no shell
    except OSError as exc:
        sys.stderr.write(f"error: CLI.NO_DASHBOARD: cannot run ztui: {exc}\n")
        return 5
    return 0


def _on_terminal() -> bool:
    """Bare ``zcli`` opens the shell only when a person is typing and reading."""
    return sys.stdin.isatty() and sys.stdout.isatty()


if __name__ == "__main__":
    run()
