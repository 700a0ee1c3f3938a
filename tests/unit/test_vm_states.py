"""The VM state table: every operation can leave the states it is allowed in, every failure
path has its way back, and transitional states are exactly those that are not stable."""

from __future__ import annotations

import pytest

from zmn.api.errors import InvalidState
from zmn.services.vm.states import ALLOWED, BACK, PLACED, STABLE, TRANSITIONAL, VM_STATE

# operation -> the event the handler sends to enter its transitional state
ENTRY = {
    "start": "start",
    "stop": "stop",
    "reboot": "reboot",
    "pause": "pause",
    "resume": "resume",
    "migrate": "migrate",
    "destroy": "destroy",
    "recover": "recover",
    "expunge": "expunge",
}


def test_states_are_zstacks() -> None:
    assert set(VM_STATE.states) == set(STABLE) | set(TRANSITIONAL)
    assert set(STABLE) & set(TRANSITIONAL) == set()


@pytest.mark.parametrize("operation", sorted(ENTRY))
def test_every_allowed_state_can_start_the_operation_and_come_back(operation: str) -> None:
    for state in ALLOWED[operation]:
        entered = VM_STATE.next("u" * 32, state, ENTRY[operation])
        if entered in TRANSITIONAL and operation not in ("expunge",):
            assert VM_STATE.next("u" * 32, entered, BACK[state]) == state


def test_refusal_names_the_state() -> None:
    with pytest.raises(InvalidState) as err:
        VM_STATE.check("u" * 32, "Stopped", "pause")
    assert err.value.details["state"] == "Stopped" and "in state Stopped" in err.value.message
    assert err.value.exit_status == 4
    with pytest.raises(InvalidState):
        VM_STATE.next("u" * 32, "Destroyed", "start")


def test_placed_states_hold_a_host() -> None:
    assert "Stopped" not in PLACED and "Destroyed" not in PLACED
    assert {"Running", "Paused", "Migrating", "Unknown"} <= set(PLACED)
