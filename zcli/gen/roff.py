"""A little roff (man macros) writer: escaping, fonts, sections, tagged paragraphs, examples.

Text is escaped once, here: backslashes, minus signs (so that options copy and paste as
ASCII hyphens), and a leading dot or quote that roff would read as a request. ``code`` marks
(double backquotes, as in our docstrings) become bold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CODE_RE = re.compile(r"``(.+?)``")


def esc(text: str) -> str:
    out = text.replace("\\", "\\e").replace("-", "\\-").replace("'", "\\(aq")
    return out.replace('"', "\\(dq")


def line(text: str) -> str:
    """One line of running text: escaped, with ``code`` in bold, safe at line start."""
    parts = _CODE_RE.split(text)
    out = "".join(bold(p) if i % 2 else esc(p) for i, p in enumerate(parts))
    return "\\&" + out if out.startswith((".", "'")) else out


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


class Page:
    """Accumulates one man page."""

    def __init__(self, name: str, section: int, source: str, manual: str) -> None:
        self.lines = [
            f'.TH {name.upper()} {section} "" "{esc(source)}" "{esc(manual)}"',
            ".nh",
            ".ad l",
        ]

    def raw(self, *lines: str) -> Page:
        self.lines.extend(lines)
        return self

    def section(self, title: str) -> Page:
        return self.raw(f".SH {title.upper()}")

    def subsection(self, title: str) -> Page:
        return self.raw(f'.SS "{esc(title)}"')

    def para(self, text: str) -> Page:
        return self.raw(".PP", line(text))

    def tagged(self, tag: str, text: str, *, indent: int | None = None) -> Page:
        """A tagged paragraph; ``tag`` is roff already (use :func:`bold` and friends)."""
        self.raw(f".TP {indent}" if indent else ".TP", tag)
        return self.raw(line(text) if text else "\\&")

    def literal(self, lines: Iterable[str]) -> Page:
        """Lines shown as typed, in a monospace block."""
        self.raw(".RS 4", ".nf", *(line(t) for t in lines), ".fi", ".RE")
        return self

    def example(self, what: str, commands: Iterable[str]) -> Page:
        """An EXAMPLES entry: a sentence, then the commands (tests run them)."""
        self.para(what)
        return self.literal(commands)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def unescape(text: str) -> str:
    """The inverse of :func:`line` for a literal line (tests read examples back)."""
    text = text.removeprefix("\\&")
    text = text.replace("\\fB", "").replace("\\fI", "").replace("\\fR", "")
    text = text.replace("\\-", "-").replace("\\(aq", "'").replace("\\(dq", '"')
    return text.replace("\\e", "\\")
