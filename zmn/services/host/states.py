"""The host's two state tables: the operator's ``state`` and the connection ``status``."""

from __future__ import annotations

from zmn.core.state import StateMachine

ALL_STATES = {"Enabled", "Disabled", "PreMaintenance", "Maintenance"}

# ``maintain`` from the API is applied as preMaintain (VMs leave: extension point), then maintain.
HOST_STATE = StateMachine(
    "Host",
    {
        ("Enabled", "enable"): "Enabled",
        ("Enabled", "disable"): "Disabled",
        ("Enabled", "preMaintain"): "PreMaintenance",
        ("Disabled", "enable"): "Enabled",
        ("Disabled", "disable"): "Disabled",
        ("Disabled", "preMaintain"): "PreMaintenance",
        ("PreMaintenance", "maintain"): "Maintenance",
        ("PreMaintenance", "enable"): "Enabled",
        ("PreMaintenance", "disable"): "Disabled",
        ("Maintenance", "maintain"): "Maintenance",
        ("Maintenance", "enable"): "Enabled",
        ("Maintenance", "disable"): "Disabled",
    },
    allowed={
        "reconnect": ALL_STATES - {"PreMaintenance"},
        "allocate": {"Enabled"},  # new VMs land only on enabled hosts
    },
)

# Named apart from ``Host`` so that the catalogue lists both tables.
HOST_STATUS = StateMachine(
    "HostStatus",
    {
        ("Connecting", "connect"): "Connecting",
        ("Connecting", "connected"): "Connected",
        ("Connecting", "disconnected"): "Disconnected",
        ("Connected", "connect"): "Connecting",
        ("Connected", "connected"): "Connected",
        ("Connected", "disconnected"): "Disconnected",
        ("Disconnected", "connect"): "Connecting",
        ("Disconnected", "connected"): "Connected",
        ("Disconnected", "disconnected"): "Disconnected",
    },
    allowed={"allocate": {"Connected"}},
)
