"""Tables through rich; imported only when a table is printed, so other formats start fast.

Colour is used only when the output is a terminal and ``NO_COLOR`` is unset. When the output
is not a terminal the table keeps its natural width instead of wrapping at 80 columns.

Printed to a pipe or a file, a table of plain ASCII cells is laid out here without rich
(importing rich costs a cold ``zcli`` about 30 ms): the same characters rich prints, which a
property test compares with rich's own output. Anything else (a terminal, other characters,
an empty column) goes through rich.
"""

from __future__ import annotations

import io
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import TextIO

    from rich.table import Table

RULE = "\u2500"  # the line under the header (rich's box.SIMPLE_HEAD)
_MAX_PLAIN = 50_000  # far below the console width rich is given, so it would not wrap either


def _plain(columns: list[list[str]], gap: str, rule: bool) -> str | None:
    """Lines of left-justified columns joined by ``gap``, right-stripped, a rule under the
    first line when ``rule``; None when the cells are not all printable ASCII or a column is
    empty (then rich decides)."""
    widths = []
    for col in columns:
        width = 0
        for text in col:
            if not (text.isascii() and text.isprintable()):
                return None
            width = max(width, len(text))
        if width == 0:
            return None
        widths.append(width)
    if not widths or sum(widths) + len(gap) * len(widths) > _MAX_PLAIN:
        return None
    lines = []
    for cells in zip(*columns, strict=True):
        lines.append(gap.join(t.ljust(w) for t, w in zip(cells, widths, strict=True)).rstrip())
    if rule and lines:
        lines.insert(1, RULE * (sum(widths) + len(gap) * (len(widths) - 1)))
    return "".join(line + "\n" for line in lines)


def _write_plain(out: TextIO, text: str | None) -> bool:
    if text is None:
        return False
    out.write(text)
    return True


def _print(renderable: Table, out: TextIO) -> None:
    from rich.console import Console

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
    if rows or header:
        if not out.isatty() and all(len(r) == len(columns) for r in rows):
            cols = [[c, *(r[i] for r in rows)] if header else [r[i] for r in rows]
                    for i, c in enumerate(columns)]  # fmt: skip
            if _write_plain(out, _plain(cols, "   ", rule=header)):
                return
    rich_table(columns, rows, out, header=header)


def rich_table(
    columns: list[str], rows: list[list[str]], out: TextIO, *, header: bool = True
) -> None:
    from rich import box
    from rich.table import Table

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
    if pairs and not out.isatty():
        cols = [[k for k, _ in pairs], [v for _, v in pairs]]
        if _write_plain(out, _plain(cols, "  ", rule=False)):
            return
    rich_properties(pairs, out)


def rich_properties(pairs: list[tuple[str, str]], out: TextIO) -> None:
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, value)
    _print(table, out)
