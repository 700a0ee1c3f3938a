"""The VM state machine: ZStack's states as a (state, event) -> state table, and the
operations each state allows.

Transitional states (Starting, Stopping, ...) exist only while an operation runs in the VM's
task queue; each operation's failure path takes the VM back with the event named after the
state it left (``running``, ``stopped``, ``paused``, ...).
"""

from __future__ import annotations

from zmn.core.state import StateMachine

STABLE = ("Running", "Stopped", "Paused", "Destroyed", "Unknown", "Error")
TRANSITIONAL = (
    "Created",
    "Starting",
    "Stopping",
    "Rebooting",
    "Pausing",
    "Resuming",
    "Migrating",
    "Destroying",
    "Expunging",
)
# A VM in one of these states holds CPUs and memory on ``hostUuid``.
PLACED = (
    "Created",
    "Starting",
    "Running",
    "Stopping",
    "Rebooting",
    "Pausing",
    "Paused",
    "Resuming",
    "Migrating",
    "Unknown",
    "Destroying",
)

_T: dict[tuple[str, str], str] = {
    ("Created", "start"): "Starting",
    ("Created", "stopped"): "Stopped",  # strategy CreateStopped
    ("Created", "error"): "Error",
    ("Starting", "running"): "Running",
    ("Starting", "stopped"): "Stopped",
    ("Starting", "error"): "Error",
    ("Stopped", "start"): "Starting",
    ("Stopped", "destroy"): "Destroying",
    ("Stopped", "stopped"): "Stopped",
    ("Running", "stop"): "Stopping",
    ("Running", "reboot"): "Rebooting",
    ("Running", "pause"): "Pausing",
    ("Running", "migrate"): "Migrating",
    ("Running", "destroy"): "Destroying",
    ("Running", "running"): "Running",
    ("Running", "unknown"): "Unknown",
    ("Running", "stopped"): "Stopped",
    ("Stopping", "stopped"): "Stopped",
    ("Stopping", "running"): "Running",
    ("Stopping", "paused"): "Paused",
    ("Stopping", "unknown"): "Unknown",
    ("Rebooting", "running"): "Running",
    ("Rebooting", "stopped"): "Stopped",
    ("Pausing", "paused"): "Paused",
    ("Pausing", "running"): "Running",
    ("Paused", "resume"): "Resuming",
    ("Paused", "stop"): "Stopping",
    ("Paused", "destroy"): "Destroying",
    ("Paused", "paused"): "Paused",
    ("Paused", "unknown"): "Unknown",
    ("Resuming", "running"): "Running",
    ("Resuming", "paused"): "Paused",
    ("Migrating", "running"): "Running",
    ("Migrating", "unknown"): "Unknown",
    ("Unknown", "stop"): "Stopping",
    ("Unknown", "destroy"): "Destroying",
    ("Unknown", "running"): "Running",
    ("Unknown", "stopped"): "Stopped",
    ("Error", "destroy"): "Destroying",
    ("Destroying", "destroyed"): "Destroyed",
    ("Destroying", "running"): "Running",
    ("Destroying", "stopped"): "Stopped",
    ("Destroying", "paused"): "Paused",
    ("Destroying", "unknown"): "Unknown",
    ("Destroying", "error"): "Error",
    ("Destroyed", "recover"): "Stopped",
    ("Destroyed", "expunge"): "Expunging",
    ("Expunging", "destroyed"): "Destroyed",
}

ALLOWED: dict[str, set[str]] = {
    "start": {"Stopped"},
    "stop": {"Running", "Paused", "Unknown"},
    "reboot": {"Running"},
    "pause": {"Running"},
    "resume": {"Paused"},
    "migrate": {"Running"},
    "destroy": {"Running", "Stopped", "Paused", "Unknown", "Error"},
    "recover": {"Destroyed"},
    "expunge": {"Destroyed"},
    "update": {"Running", "Stopped", "Paused", "Unknown", "Error"},
    "changeInstanceOffering": {"Stopped"},
    "attachL3": {"Running", "Stopped"},
    "detachL3": {"Running", "Stopped"},
    "attachVolume": {"Running", "Stopped", "Paused"},
    "detachVolume": {"Running", "Stopped", "Paused"},
    "takeSnapshot": {"Running", "Stopped", "Paused"},
    "revertVolume": {"Stopped"},
    "resizeVolume": {"Running", "Stopped", "Paused"},
}

VM_STATE = StateMachine("VmInstance", _T, ALLOWED)

# the event that takes a VM back to a stable state after a failed operation
BACK = {
    "Running": "running",
    "Stopped": "stopped",
    "Paused": "paused",
    "Unknown": "unknown",
    "Error": "error",
}
