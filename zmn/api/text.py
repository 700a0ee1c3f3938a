"""Text that is safe to print on a terminal.

A name or description stored by an older node (before the API refused control characters)
could carry an escape sequence that recolours, retitles or clears the operator's terminal, or a
bidirectional override that shows ``exe.txt`` as ``txt.exe``. Tables and dashboards pass every
cell through :func:`inert`, which shows such characters as visible escapes (``\\x1b``,
``\\u202e``) instead of sending them to the terminal. JSON output is not touched: it stays exact.
"""

from __future__ import annotations

import re

# C0 and DEL, C1, the Unicode line and paragraph separators, and the bidirectional
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069). Every one of them is
# not printable (str.isprintable), so printable text, nearly every cell, is returned as it
# is without the expression, which is compiled at first use: a cold zcli table seldom does.
UNSAFE = "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
_unsafe_re: re.Pattern[str] | None = None
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: str) -> str:
    """``text`` with every character that acts on a terminal shown as a visible escape."""
    global _unsafe_re
    if text.isprintable():
        return text
    if _unsafe_re is None:
        _unsafe_re = re.compile(UNSAFE)
    return _unsafe_re.sub(_escape, text) if _unsafe_re.search(text) else text
