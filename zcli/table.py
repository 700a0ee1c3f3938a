"""Tables through rich; imported only when a table is printed, so other formats start fast.

Colour is used only when the output is a terminal and ``NO_COLOR`` is unset. When the output
is not a terminal the table keeps its natural width instead of wrapping at 80 columns.
"""

from __future__ import annotations

import io
import os
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table


def _print(renderable: Table, out: TextIO) -> None:
    tty = out.isatty()
    no_color = not tty or bool(os.environ.get("NO_COLOR"))
    target: TextIO = out if tty else io.StringIO()
    console = Console(
        file=target,
        no_color=no_color,
        color_system=None if no_color else "auto",
        highlight=False,
        markup=False,
        emoji=False,
        width=None if tty else 100_000,
        soft_wrap=False,
    )
    console.print(renderable)
    if not tty:
        assert isinstance(target, io.StringIO)  # noqa: S101 - type narrowing for mypy, not a runtime check
        # rich pads cells to the column width; trailing blanks only get in the way of scripts
        out.write("".join(line.rstrip() + "\n" for line in target.getvalue().splitlines()))


def print_table(
    columns: list[str], rows: list[list[str]], out: TextIO, *, header: bool = True
) -> None:
    table = Table(
        box=box.SIMPLE_HEAD,
        show_header=header,
        header_style="bold",
        pad_edge=False,
        show_edge=False,
    )
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    _print(table, out)


def print_properties(pairs: list[tuple[str, str]], out: TextIO) -> None:
    """One object as FIELD VALUE lines."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, value)
    _print(table, out)
