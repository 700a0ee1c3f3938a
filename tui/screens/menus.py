"""What the resource view's pickers and confirmation show: actions, related views, outcomes.

Pure functions of the catalogue's actions and drill-downs, kept apart from the screen so that
the screen holds only the flow (pick, confirm, run, report).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tui.catalogue import Action, Drill
from tui.screens.confirm import ConfirmScreen
from zmn.api.errors import ZmnError

Items = list[tuple[Text | str, Any]]


def action_items(actions: list[Action]) -> Items:
    return [
        (
            Text.assemble(
                (f"{a.label:<12}", "bold red" if a.dangerous else "bold"),
                (f" {a.describe()}", "dim"),
            ),
            a,
        )
        for a in actions
    ]


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


def outcome(action: Action, results: list[tuple[str, ZmnError | None]]) -> tuple[str, bool]:
    """The notification after a (bulk) action, and whether it reports a failure."""
    failed = [e for _u, e in results if e is not None]
    verb = "started" if action.long else "done"
    message = f"{action.label.rstrip('…')}: {len(results) - len(failed)} {verb}"
    if failed:
        message += f", {len(failed)} failed: {failed[0].code} {failed[0].message}"
    return message, bool(failed)
