"""Explicit state machines: a (state, event) -> state table and the operations allowed per state."""

from __future__ import annotations

from dataclasses import dataclass, field

from zmn.api.errors import InvalidState, invalid_state


@dataclass
class StateMachine:
    """Transitions and allowed operations of one resource type's state field."""

    resource: str
    transitions: dict[tuple[str, str], str]
    allowed: dict[str, set[str]] = field(default_factory=dict)  # operation -> states

    @property
    def states(self) -> list[str]:
        seen: dict[str, None] = {}
        for (state, _), nxt in self.transitions.items():
            seen.setdefault(state)
            seen.setdefault(nxt)
        return list(seen)

    def next(self, uuid: str, state: str, event: str) -> str:
        nxt = self.transitions.get((state, event))
        if nxt is None:
            raise InvalidState(
                f"{self.resource} {uuid} in state {state} cannot take event {event!r}",
                code=f"{_code(self.resource)}.INVALID_STATE",
                resourceType=self.resource,
                uuid=uuid,
                state=state,
                event=event,
            )
        return nxt

    def check(self, uuid: str, state: str, operation: str) -> None:
        states = self.allowed.get(operation)
        if states is not None and state not in states:
            raise invalid_state(self.resource, uuid, state, operation, sorted(states))

    def table(self) -> list[dict[str, str]]:
        return [{"state": s, "event": e, "next": n} for (s, e), n in self.transitions.items()]


def _code(name: str) -> str:
    from zmn.api.errors import upper_snake

    return upper_snake(name)
