"""What the resource view's pickers and confirmation show: actions, related views, outcomes.

Pure functions of the catalogue's actions and drill-downs, kept apart from the screen so that
the screen holds only the flow (pick, confirm, run, report).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tui.catalogue import Action, Drill
from tui.format import fit, with_names
from tui.screens.confirm import ConfirmScreen
from zmn.api.errors import ZmnError

Items = list[tuple[Text | str, Any]]


def action_items(actions: list[Action], counts: list[int] | None = None, of: int = 1) -> Items:
    """One line an action; ``counts[i]`` of the ``of`` targets allow action ``i`` (shown when
    not all do)."""
    items: Items = []
    for i, a in enumerate(actions):
        label = Text.assemble(
            (f"{a.label:<12}", "bold red" if a.dangerous else "bold"), (f" {a.describe()}", "dim")
        )
        if counts is not None and counts[i] < of:
            label.append(f"  ({counts[i]} of {of})", style="yellow")
        items.append((label, a))
    return items


def drill_items(
    drills: list[Drill], counts: list[Any], row: dict[str, Any], names: dict[str, dict[str, str]]
) -> Items:
    """``↓ cluster 2`` for children (with their count), ``↑ zone z1`` for parents."""
    items: Items = []
    for drill, count in zip(drills, counts, strict=True):
        if drill.parent:
            target = names.get(drill.target, {}).get(str(row.get(drill.source_field)), "")
            label = Text.assemble(("↑ ", "dim"), (drill.label, "bold"), f" {target}".rstrip())
        else:
            shown = f" {count:,}" if isinstance(count, int) else ""
            label = Text.assemble(("↓ ", "dim"), (drill.label, "bold"), (shown, "cyan"))
        items.append((label, drill))
    return items


def confirm_screen(
    action: Action,
    targets: list[dict[str, Any]],
    cli: str,
    values: dict[str, Any] | None = None,
    names: dict[str, dict[str, str]] | None = None,
) -> ConfirmScreen:
    who = [str(t.get("name") or t["uuid"]) for t in targets]
    shown = ", ".join(who[:10]) + (f" and {len(who) - 10} more" if len(who) > 10 else "")
    noun = cli if len(targets) == 1 else f"{len(targets)} {cli}s"
    label = action.label.rstrip("…")
    body = f"{label} {noun}: {shown}?\n\n{action.describe(values)}"
    for key, value in (values or {}).items():
        known = next((n[value] for n in (names or {}).values() if n.get(str(value))), None)
        if known:
            body += f"\n{key} = {known}"
    if action.doc:
        body += f"\n{action.doc}"
    return ConfirmScreen(f"confirm {label}", body, confirm_label=label, dangerous=action.dangerous)


# characters a notification line holds without wrapping on an 80-column terminal (a toast
# is 60 wide there, less its border and padding)
NOTE_WIDTH = 56
NOTE_FAILURES = 3  # failures named one a line; the rest counted


def outcome(
    action: Action,
    results: list[tuple[str, ZmnError | None]],
    names: dict[str, dict[str, str]] | None = None,
) -> tuple[str, bool]:
    """The notification after a (bulk) action, and whether it reports a failure: a count,
    then the first failures one a line, each naming its resource (not its UUID) and cut to
    fit an 80-column terminal."""
    names = names or {}
    failed = [(u, e) for u, e in results if e is not None]
    verb = "started" if action.long else "done"
    lines = [f"{action.label.rstrip('…')}: {len(results) - len(failed)} {verb}"]
    if failed:
        lines[0] += f", {len(failed)} failed"
        for uuid, exc in failed[:NOTE_FAILURES]:
            who = with_names(uuid, names)
            lines.append(fit(f"{who}: {with_names(exc.message, names)} ({exc.code})", NOTE_WIDTH))
        if len(failed) > NOTE_FAILURES:
            lines.append(f"and {len(failed) - NOTE_FAILURES} more")
    return "\n".join(fit(line, NOTE_WIDTH) for line in lines), bool(failed)
