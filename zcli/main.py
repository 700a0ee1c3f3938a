"""Entry point of ``zcli`` (also ``python -m zcli.main``): global options, then one command
or a batch file. See ``zcli help`` for the grammar and the exit statuses.
"""

from __future__ import annotations

import os
import sys

from zmn.api.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ZmnError


def main(argv: list[str] | None = None) -> int:
    from zcli.options import parse_globals
    from zcli.runner import Runner

    argv = sys.argv[1:] if argv is None else argv
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
        runner = Runner(opts)
        if opts.file is not None:
            if rest:
                runner.err.write(f"error: CLI.USAGE: -f takes no command, got {rest[0]!r}\n")
                return 2
            from zcli.batch import run_file

            return run_file(runner, opts)
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


if __name__ == "__main__":
    sys.exit(main())
