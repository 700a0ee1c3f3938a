"""How values look in the dashboard: states in colour, sizes, ages, bars and sparklines."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

from rich.text import Text

from zmn.api.ids import short_id
from zmn.api.text import inert

GOOD = {"Enabled", "Connected", "Running", "Ready", "Succeeded", "Attached", "Active"}
BUSY = {
    "Connecting",
    "PreMaintenance",
    "Maintenance",
    "Starting",
    "Stopping",
    "Rebooting",
    "Migrating",
    "Creating",
    "Deleting",
    "Destroying",
    "Pending",
}
BAD = {"Disconnected", "Error", "Failed", "Unknown", "Evicted", "Interrupted", "Crashed"}
DIM = {"Disabled", "Stopped", "Destroyed", "Expunged", "Detached", "Canceled"}
SPARKS = "▁▂▃▄▅▆▇█"


_UUID = re.compile(r"\b[0-9a-f]{32}\b")


def with_names(text: str, names: dict[str, dict[str, str]]) -> str:
    """Known resource UUIDs in a message replaced by their names (``VM 3f2a…`` -> ``VM web1``)."""

    def name(m: re.Match[str]) -> str:
        uuid = m.group(0)
        return next((n[uuid] for n in names.values() if n.get(uuid)), short_id(uuid) + "…")

    return _UUID.sub(name, text)


def fit(text: str, width: int) -> str:
    """One line of at most ``width`` characters (an ellipsis where it was cut)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def state_style(value: str) -> str:
    if value in GOOD:
        return "green"
    if value in BUSY:
        return "yellow"
    if value in BAD:
        return "bold red"
    if value in DIM:
        return "dim"
    return ""


def human_bytes(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T", "P"):
        if abs(n) < 1024 or unit == "P":
            return f"{n:.0f}{unit}" if unit == "B" or n >= 100 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}P"


def human_count(n: float) -> str:
    if abs(n) >= 10_000:
        return f"{n / 1000:.0f}k"
    return f"{n:g}"


def age(value: str, now: float | None = None) -> str:
    """``2025-11-21T10:00:00.000`` -> ``5m``, like k9s's AGE column."""
    try:
        when = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = max(0, int((now if now is not None else time.time()) - when.timestamp()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def is_bytes_field(name: str) -> bool:
    return any(k in name for k in ("Memory", "Size", "Bytes")) or (
        name.endswith("Capacity") and not any(k in name for k in ("Cpu", "Ip"))
    )


def cell(name: str, value: Any, info: dict[str, Any] | None = None, *, wide: bool = True) -> Text:
    """One table cell: states coloured, sizes human, timestamps as ages, UUIDs shortened."""
    if value is None:
        return Text("-", style="dim")
    kind = (info or {}).get("type", "")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if kind == "timestamp":
        return Text(age(str(value)))
    if isinstance(value, float) and name.endswith("Share"):
        return Text(f"{value * 100:.1f}%", justify="right")
    if isinstance(value, int | float) and is_bytes_field(name):
        return Text(human_bytes(value), justify="right")
    if isinstance(value, int | float):
        return Text(f"{value:g}" if isinstance(value, float) else str(value), justify="right")
    text = inert(str(value))
    if (info or {}).get("enum") or name in ("state", "status"):
        return Text(text, style=state_style(text))
    if not wide and (name == "uuid" or name.endswith("Uuid")) and len(text) == 32:
        return Text(text[:8], style="dim")
    if isinstance(value, list | dict):
        return Text(text[:40])
    return Text(text)


def bar(used: float, total: float, width: int = 10) -> Text:
    """``▕██████░░░░▏ 60%``, coloured by how full it is."""
    width = max(3, width)
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, used / total))
    filled = round(frac * width)
    style = "green" if frac < 0.7 else "yellow" if frac < 0.9 else "bold red"
    out = Text()
    out.append("█" * filled, style=style)
    out.append("░" * (width - filled), style="dim")
    out.append(f" {frac * 100:3.0f}%")
    return out


def sparkline(values: list[float], width: int) -> str:
    values = values[-width:] if width > 0 else []
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1)))] for v in values)


def clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def event_summary(frame: dict[str, Any], names: dict[str, dict[str, str]] | None = None) -> Text:
    """``12:03:04 /host/state/change host h1 Enabled→Disabled``."""
    data = frame.get("data") or {}
    path = str(frame.get("path", ""))
    out = Text(clock(frame.get("time") or time.time()) + " ", style="dim")
    style = "red" if path.endswith("/deleted") else "green" if path.endswith("/created") else "cyan"
    out.append(path, style=style)
    inv = data.get("inventory") if isinstance(data, dict) else None
    if isinstance(inv, dict):
        out.append(f" {inert(str(inv.get('name') or str(inv.get('uuid', ''))[:8]))}")
    if isinstance(data, dict):
        if "oldState" in data:
            out.append(f" {data['oldState']}→", style=state_style(str(data["oldState"])))
            out.append(str(data.get("newState")), style=state_style(str(data.get("newState"))))
        elif path.startswith("/job/"):
            name = data.get("name", "")
            status = data.get("state") or f"{data.get('progress', 0)}%"
            out.append(f" {name} {status}", style=state_style(str(status)))
            if data.get("text"):
                out.append(f" {data['text']}", style="dim")
    return out
