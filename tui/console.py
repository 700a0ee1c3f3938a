"""The ``console`` action of a VM: the dashboard steps aside for the serial console.

``App.suspend()`` gives the terminal back (Textual leaves its screen and input modes), the
console runs exactly as ``zcli vm console`` does (:func:`zcli.console.attach`, on its own
blocking connection with the dashboard's endpoint and session), and ``Ctrl-]`` brings the
dashboard back as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zmn.api.errors import ZmnError

if TYPE_CHECKING:
    from textual.app import App

CONSOLE_API = "OpenVmConsole"


def attach_console(
    app: App[None], endpoint: str, session: str | None, vm: str, *, force: bool = False
) -> str | None:
    """Suspend ``app``, attach to ``vm``'s console until detached; a message to show after."""
    from zcli.console import attach
    from zmn.client import Client

    with app.suspend():
        try:
            with Client(endpoint, session) as client:
                status = attach(client, vm, force=force)
        except ZmnError as exc:
            return f"console: {exc.code}: {exc.message}"
    return None if status == 0 else "console closed by the host"
