"""The ``/`` filter: query-language conditions with completion of fields, joins and enums.

``state=Disabled cluster.zone.name=z1`` becomes two ``Query<Type>`` conditions; a word with
no operator matches names (``web`` -> ``name~=web``).
"""

from __future__ import annotations

import shlex

from textual.suggester import Suggester
from textual.widgets import Input

from tui.catalogue import Catalogue
from zmn.api.querylang import parse_condition, split_field


def to_conditions(text: str, has_name: bool = True) -> list[str]:
    """Split a filter line into conditions; raises ``InvalidArgument`` on a bad one."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    out = []
    for token in tokens:
        _field, op, _value = split_field(token)
        if op is None and not token.endswith(("=null", "!=null")):
            out.append(f"name~={token}" if has_name else f"uuid~={token}")
            continue
        out.append(str(parse_condition(token)))
    return out


class QuerySuggester(Suggester):
    """Completes the last word: a field or join path, or an enum value after the operator."""

    def __init__(self, catalogue: Catalogue, type_name: str) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.catalogue = catalogue
        self.type_name = type_name

    async def get_suggestion(self, value: str) -> str | None:
        if not value or value.endswith(" "):
            return None
        head, _sep, last = value.rpartition(" ")
        prefix = head + " " if head else ""
        field, op, partial = split_field(last)
        if op is None:
            matches = self.catalogue.complete(self.type_name, last)
            return prefix + matches[0] if matches else None
        for choice in self.catalogue.enum_of(self.type_name, field):
            if choice.startswith(partial) and choice != partial:
                return prefix + field + op + choice
        return None


class FilterBar(Input):
    """The filter line; shown by ``/`` (the screen's stylesheet places it)."""
