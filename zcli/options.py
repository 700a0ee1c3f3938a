"""Global options: accepted anywhere on the line, before or after the command and its
arguments (``zcli -o json zone list`` = ``zcli zone list -o json``); ``--`` ends them.

A batch line (and a shell line) may repeat the output options for itself; the connection
options (endpoint, session, batch file) are fixed for the whole run.
"""

from __future__ import annotations

from zcli.catalogue import Record
from zcli.parser import UsageError, did_you_mean
from zcli.words import GLOBAL_OPTIONS as _OPTIONS
from zcli.words import OUTPUTS

__all__ = ["CONNECTION_OPTIONS", "OUTPUTS", "_OPTIONS", "Options", "parse_globals"]
CONNECTION_OPTIONS = (
    "endpoint",
    "session",
    "file",
    "continue_on_error",
    "parallel",
    "version",
)
MAX_PARALLEL = 64  # requests in flight on a batch's connection (zcli -f FILE --parallel N)


class Options(Record):
    _fields = (
        "output",
        "columns",
        "quiet",
        "no_header",
        "no_wait",
        "timeout",
        "endpoint",
        "session",
        "file",
        "continue_on_error",
        "version",
        "yes",
        "parallel",
    )

    def __init__(
        self,
        output: str = "table",
        columns: list[str] | None = None,
        quiet: bool = False,
        no_header: bool = False,
        no_wait: bool = False,
        timeout: float | None = None,
        endpoint: str | None = None,
        session: str | None = None,
        file: str | None = None,
        continue_on_error: bool = False,
        version: bool = False,
        yes: bool = False,
        parallel: int = 1,
    ) -> None:
        self.output = output
        self.columns: list[str] = [] if columns is None else columns
        self.quiet = quiet
        self.no_header = no_header
        self.no_wait = no_wait
        self.timeout = timeout
        self.endpoint = endpoint
        self.session = session
        self.file = file
        self.continue_on_error = continue_on_error
        self.version = version
        self.yes = yes  # destroy/delete without asking, even on a terminal
        self.parallel = parallel  # batch lines in flight at once (1: one at a time, in order)

    def copy(self) -> Options:
        """A copy with its own list of columns."""
        new = Options(**{f: getattr(self, f) for f in self._fields})
        new.columns = list(self.columns)
        return new


def parse_globals(
    argv: list[str], base: Options | None = None, *, in_batch: bool = False
) -> tuple[Options, list[str]]:
    """The global options found anywhere in ``argv`` and the command tokens left
    (``["help", ...]`` for a ``--help`` before the command).

    ``--`` ends the options: it stays in the command tokens, so that the command parser
    reads what follows as plain words. An unknown ``-x`` is an error wherever it stands, an
    unknown ``--key`` before the command too; after it, ``--key`` is the command's own
    option (the command parser refuses it if the command has no such option)."""
    opts = base.copy() if base else Options()
    fresh_columns = True  # a line's -c replaces the run's -c instead of adding to it
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":  # before the command it only ends the global options
            rest.extend(argv[i:] if rest else argv[i + 1 :])
            break
        if arg in ("-h", "--help") and not rest:
            return opts, ["help", *argv[i + 1 :]]
        if not arg.startswith("-") or arg == "-" or arg in ("-h", "--help") or _number(arg):
            rest.append(arg)
            i += 1
            continue
        name, sep, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", arg[2:])
        spec = _OPTIONS.get(name)
        if spec is None:
            if rest and arg.startswith("--"):  # the command's own option
                rest.append(arg)
                i += 1
                nxt = argv[i] if i < len(argv) else ""
                if not sep and _dash_value(nxt):
                    rest.append(nxt)  # its value: --sort-by -name, --sort-by -createDate
                    i += 1
                continue
            where = f" after {' '.join(rest[:2])!r}" if rest else ""
            raise UsageError(
                f"unknown option {arg!r}{where}{did_you_mean(name, list(_OPTIONS))}"
                " (global options: zcli help; a value starting with - goes after --)",
                code="CLI.UNKNOWN_OPTION",
                field=name,
            )
        attr, takes_value = spec
        if in_batch and attr in CONNECTION_OPTIONS:
            raise UsageError(f"{name} cannot be used on a batch line", field=name)
        i += 1
        if not takes_value:
            if sep or value:
                raise UsageError(f"{name} takes no value", field=name)
            setattr(opts, attr, True)
            continue
        if not sep and not value:
            if i >= len(argv):
                raise UsageError(f"{name} needs a value", field=name)
            value, i = argv[i], i + 1
        if attr == "columns" and fresh_columns:
            opts.columns, fresh_columns = [], False
        _set(opts, attr, name, value)
    return opts, rest


def _dash_value(arg: str) -> bool:
    """After a command's ``--key``, ``-word`` is its value (``-createDate``: descending), not
    ``-c reateDate``; a short option there is written alone (``-c name``)."""
    return arg[:1] == "-" and arg[1:2].isalpha() and len(arg) > 2


def _number(arg: str) -> bool:
    """``-1``, ``-0.5``: a negative value, not an option."""
    return arg[1:2].isdigit() or arg[1:2] == "."


def _set(opts: Options, attr: str, name: str, value: str) -> None:
    if attr == "output":
        if value not in OUTPUTS:
            raise UsageError(
                f"{name}: unknown output {value!r}{did_you_mean(value, list(OUTPUTS))}"
                f" (one of {', '.join(OUTPUTS)})",
                field="output",
            )
        opts.output = value
    elif attr == "columns":
        opts.columns.extend(c.strip() for c in value.split(",") if c.strip())
    elif attr == "timeout":
        try:
            opts.timeout = float(value)
        except ValueError:
            raise UsageError(f"{name}: expected seconds, got {value!r}", field="timeout") from None
        if opts.timeout <= 0:
            raise UsageError(f"{name}: must be more than 0 seconds", field="timeout")
    elif attr == "parallel":
        if not value.isdigit() or not 1 <= int(value) <= MAX_PARALLEL:
            raise UsageError(
                f"{name}: expected a whole number of requests in flight from 1 to"
                f" {MAX_PARALLEL}, got {value!r}",
                field="parallel",
            )
        opts.parallel = int(value)
    else:
        setattr(opts, attr, value)
