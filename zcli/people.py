"""Tables and summaries for people at a terminal (and ``-o wide``): names for references,
short ids, human sizes, ages, coloured states, sorted by name, fitted to the terminal's width
with an ellipsis (a row never wraps). Piped ``-o table`` output does not come here: it stays
what scripts read (see :mod:`zcli.output`).
"""

from __future__ import annotations

import datetime as dt
import os

from zcli.columns import (
    Column,
    Resolver,
    chosen_columns,
    default_columns,
    field_info,
    kind_of,
    short_header,
)
from zcli.output import cell

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any, TextIO

    from zcli.catalogue import Resource

GAP = "  "
ELLIPSIS = "\u2026"
_GOOD = {"Running", "Enabled", "Connected", "Ready", "Succeeded", "Active", "Attached"}
_BAD = {"Error", "Failed", "Disconnected", "Unknown", "Crashed", "Interrupted", "Deleted"}
_MOVING = {"Starting", "Stopping", "Rebooting", "Creating", "Migrating", "Connecting", "Pending",
           "Processing", "Destroying", "Expunging", "Downloading", "Paused", "Pausing"}  # fmt: skip
COLOURS = {"good": "32", "bad": "31", "moving": "33", "other": "2"}


def colour_on(out: TextIO) -> bool:
    return out.isatty() and not os.environ.get("NO_COLOR")


def width_of(out: TextIO) -> int | None:
    """The terminal's width, None off a terminal (``-o wide`` into a pipe: no limit)."""
    if not out.isatty():
        return None
    try:
        columns = os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError):
        columns = 0
    if columns:
        return columns
    # a terminal that cannot tell (or says 0 columns: `script`, some serial consoles):
    # shutil.get_terminal_size()'s fallback, without importing shutil (and its
    # compression modules) into every cold command
    try:
        return int(os.environ.get("COLUMNS", "")) or 80
    except ValueError:
        return 80


# ----------------------------------------------------------------- cells


def human_size(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return "" if value is None else str(value)
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{value} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)  # pragma: no cover - the loop returns


def parse_date(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def age(value: Any, now: dt.datetime | None = None) -> str:
    """``3m``, ``2h``, ``5d``: how long ago (kubectl's AGE)."""
    when = parse_date(value)
    if when is None:
        return "" if value is None else str(value)
    now = now or dt.datetime.now(dt.UTC)
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def text_of(kind: str, value: Any) -> str:
    if kind == "short":
        return str(value or "")[:8]
    if kind == "bytes":
        return human_size(value)
    if kind == "age":
        return age(value)
    return cell(value)


def paint(kind: str, text: str, colour: bool) -> str:
    if not colour or kind != "state" or not text:
        return text
    word = text.strip()
    tone = (
        "good"
        if word in _GOOD
        else "bad"
        if word in _BAD
        else "moving"
        if word in _MOVING
        else "other"
    )
    return f"\x1b[{COLOURS[tone]}m{text}\x1b[0m"


def fit(widths: list[int], floor: list[int], limit: int | None) -> list[int]:
    """Widths that fit ``limit``: the widest columns shrink first, down to ``floor``; the
    columns that still do not fit are left out (width 0) from the right, the first one is
    cut further if need be. A row never wraps."""
    widths = list(widths)
    if limit is None:
        return widths

    def total() -> int:
        shown = [w for w in widths if w]
        return sum(shown) + len(GAP) * (len(shown) - 1)

    while total() > limit:
        shrinkable = [i for i, w in enumerate(widths) if w > floor[i]]
        if not shrinkable:
            break
        widths[max(shrinkable, key=lambda i: widths[i])] -= 1
    for i in range(len(widths) - 1, 0, -1):
        if total() <= limit:
            break
        widths[i] = 0
    if total() > limit:
        widths[0] = max(1, limit)
    return widths


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


# ----------------------------------------------------------------- tables


def print_rows(
    rows: list[dict[str, Any]],
    res: Resource | None,
    resolver: Resolver,
    out: TextIO,
    *,
    columns: list[str],
    wide: bool,
    header: bool,
    keep_order: bool,
) -> None:
    cols = chosen_columns(res, columns, rows) if columns else default_columns(res, rows, wide)
    texts = [[text_of(c.kind, v) for v in resolver.values(res, rows, c.path)] for c in cols]
    texts = [[t.replace("\n", " ") for t in col] for col in texts]
    if not keep_order and cols:
        # by name; rows without one (NICs) by their first column that is not an id
        key = next((i for i, c in enumerate(cols) if c.header not in ("id", "uuid")), 0)
        order = sorted(range(len(rows)), key=lambda r: (texts[key][r].lower(), texts[key][r]))
        texts = [[col[r] for r in order] for col in texts]
    natural = [
        max([len(c.header)] + [len(t) for t in col]) for c, col in zip(cols, texts, strict=True)
    ]
    floor = [  # a full UUID is never cut: a cut one is of no use
        n if c.header == "uuid" else min(n, max(len(c.header), 12))
        for c, n in zip(cols, natural, strict=True)
    ]
    widths = fit(natural, floor, width_of(out))
    colour = colour_on(out)
    lines = []
    shown = [(c, col, w) for c, col, w in zip(cols, texts, widths, strict=True) if w]
    if header:
        head = GAP.join(clip(c.header, w).ljust(w) for c, _, w in shown)
        lines.append(f"\x1b[1m{head.rstrip()}\x1b[0m" if colour else head.rstrip())
    for i in range(len(rows)):
        cells = []
        for c, col, w in shown:
            text = clip(col[i], w)
            cells.append(paint(c.kind, text, colour) + " " * (w - len(text)))
        lines.append(GAP.join(cells).rstrip())
    out.write("".join(line + "\n" for line in lines))


# ----------------------------------------------------------------- one resource


def summary_pairs(
    obj: dict[str, Any], res: Resource | None, resolver: Resolver, tags: list[str]
) -> list[tuple[str, str]]:
    """FIELD, VALUE lines of one resource, for people: references by name (with a short
    id), sizes, dates with their age, nested rows one a line, tags."""
    pairs: list[tuple[str, str]] = []
    for key, value in obj.items():
        info = field_info(res, key)
        if value in (None, "", []) and key not in ("name",):
            continue
        if info.get("resource") and key.endswith("Uuid") and value:
            name = resolver.values(res, [obj], f"{key[:-4]}.name")[0]
            label = short_header(key[:-4])
            pairs.append((label, f"{name} ({str(value)[:8]})" if name else str(value)))
            continue
        kind = kind_of(res, key)
        if kind == "age":
            pairs.append((key, f"{str(value).replace('T', ' ')} ({age(value)} ago)"))
        elif kind == "bytes":
            pairs.append((key, human_size(value)))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            names = _networks(resolver, res, key, value)
            pairs.append((key, "\n".join(_item(v, n) for v, n in zip(value, names, strict=True))))
        elif isinstance(value, list):
            pairs.append((key, ", ".join(cell(v) for v in value)))
        else:
            pairs.append((key, cell(value)))
    if tags:
        pairs.append(("tags", "\n".join(tags)))
    return pairs


_ITEM_KEYS = ("ip", "mac", "type", "size", "deviceId", "state", "status")


def _networks(resolver: Resolver, res: Resource | None, key: str, rows: list[Any]) -> list[Any]:
    """The L3 network names of nested rows that have one (a VM's NICs: its addresses), in
    one lookup for them all."""
    if not any(r.get("l3NetworkUuid") for r in rows):
        return [None for _ in rows]
    return resolver.values(resolver.join_target(res, key), rows, "l3Network.name")


def _item(row: dict[str, Any], network: Any = None) -> str:
    """One nested row (a NIC, a volume) on one line; a NIC's network first."""
    head = row.get("name") or row.get("ip") or str(row.get("uuid") or "")[:8]
    parts = [str(head), *([f"on {network}"] if network else [])]
    for key in _ITEM_KEYS:
        value = row.get(key)
        if value in (None, "") or value == head:
            continue
        parts.append(human_size(value) if key == "size" else f"{key} {cell(value)}")
    if row.get("uuid") and head != str(row["uuid"])[:8]:
        parts.append(f"({str(row['uuid'])[:8]})")
    return "  ".join(parts)


def print_summary(pairs: list[tuple[str, str]], out: TextIO) -> None:
    colour = colour_on(out)
    width = max((len(k) for k, _ in pairs), default=0)
    limit = width_of(out)
    lines = []
    for key, value in pairs:
        label = key.ljust(width)
        if colour:
            label = f"\x1b[1m{label}\x1b[0m"
        for n, part in enumerate(value.split("\n") or [""]):
            text = clip(part, limit - width - len(GAP)) if limit else part
            lines.append(((label if n == 0 else " " * width) + GAP + text).rstrip())
    out.write("".join(line + "\n" for line in lines))


__all__ = ["Column", "print_rows", "print_summary", "summary_pairs"]
