"""Explicit state machines: the (state, event) table and the operations allowed per state."""

from __future__ import annotations

import pytest

from zmn.api.errors import Conflict, InvalidState
from zmn.core.state import StateMachine

VM = StateMachine(
    "VmInstance",
    {
        ("Stopped", "start"): "Starting",
        ("Starting", "started"): "Running",
        ("Running", "stop"): "Stopping",
        ("Stopping", "stopped"): "Stopped",
        ("Running", "reboot"): "Rebooting",
        ("Rebooting", "started"): "Running",
    },
    allowed={"start": {"Stopped"}, "migrate": {"Running"}, "destroy": {"Stopped", "Running"}},
)


def test_transitions_follow_the_table() -> None:
    state = "Stopped"
    for event in ("start", "started", "reboot", "started", "stop", "stopped"):
        state = VM.next("u1", state, event)
    assert state == "Stopped"


def test_event_not_in_the_table_is_invalid_state() -> None:
    with pytest.raises(InvalidState) as info:
        VM.next("u1", "Stopped", "stop")
    err = info.value
    assert isinstance(err, Conflict)  # clients map it to the conflict exit status
    assert err.code == "VM_INSTANCE.INVALID_STATE"
    assert err.details == {
        "resourceType": "VmInstance",
        "uuid": "u1",
        "state": "Stopped",
        "event": "stop",
    }
    assert "Stopped" in err.message and "'stop'" in err.message


def test_allowed_operations_per_state() -> None:
    VM.check("u1", "Stopped", "start")
    VM.check("u1", "Running", "destroy")
    VM.check("u1", "Anything", "unlisted-operation")  # no entry: no restriction
    with pytest.raises(InvalidState) as info:
        VM.check("u1", "Stopped", "migrate")
    err = info.value
    assert err.code == "VM_INSTANCE.INVALID_STATE"
    assert err.details["allowedStates"] == ["Running"]
    assert err.details["operation"] == "migrate"
    assert "allowed in: Running" in err.message
    with pytest.raises(InvalidState) as info:
        VM.check("u1", "Starting", "destroy")
    assert info.value.details["allowedStates"] == ["Running", "Stopped"]


def test_states_and_table() -> None:
    assert VM.states == ["Stopped", "Starting", "Running", "Stopping", "Rebooting"]
    table = VM.table()
    assert {"state": "Running", "event": "stop", "next": "Stopping"} in table
    assert len(table) == 6
