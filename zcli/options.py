"""Global options: the ones before the command (``zcli -o json zone list``).

A batch line may repeat the output options for itself; the connection options (endpoint,
session, batch file) are fixed for the whole run.
"""

from __future__ import annotations

from zcli.catalogue import Record
from zcli.parser import UsageError, did_you_mean
from zcli.words import GLOBAL_OPTIONS as _OPTIONS
from zcli.words import OUTPUTS

__all__ = ["CONNECTION_OPTIONS", "OUTPUTS", "_OPTIONS", "Options", "parse_globals"]
CONNECTION_OPTIONS = ("endpoint", "session", "file", "continue_on_error", "version")


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

    def copy(self) -> Options:
        """A copy with its own list of columns."""
        new = Options(**{f: getattr(self, f) for f in self._fields})
        new.columns = list(self.columns)
        return new


def parse_globals(
    argv: list[str], base: Options | None = None, *, in_batch: bool = False
) -> tuple[Options, list[str]]:
    """Options before the command, and the command tokens (``["help"]`` for ``--help``)."""
    opts = base.copy() if base else Options()
    fresh_columns = True  # a line's -c replaces the run's -c instead of adding to it
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return opts, ["help", *argv[i + 1 :]]
        if not arg.startswith("-") or arg == "-":
            break
        name, sep, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", arg[2:])
        spec = _OPTIONS.get(name)
        if spec is None:
            raise UsageError(
                f"unknown option {arg!r}{did_you_mean(name, list(_OPTIONS))}"
                " (global options go before the command; see zcli help)",
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
    return opts, argv[i:]


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
    else:
        setattr(opts, attr, value)
