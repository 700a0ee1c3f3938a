"""Extension points for VM consoles (the VM service offers them, host-type plugins fill them).

* :class:`ConsoleProvider`: a host type that can open a VM's serial console as a byte stream,
  say where its graphical console listens and whether a guest's TCP port answers from the
  host (the KVM plugin, through ``zagent``).
* :class:`StreamOpener`: an API whose successful reply turns into a byte stream relayed on
  the client's API connection (``OpenVmConsole``); the API server looks openers up by API
  name (see :mod:`zmn.streams` and ``docs/protocol.md``, "Streams").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import asyncio

    from zmn.core.node import Node

Pipe = tuple["asyncio.StreamReader", "asyncio.StreamWriter"]


@runtime_checkable
class ConsoleProvider(Protocol):
    hypervisor_type: str

    async def open_serial_console(self, host_uuid: str, vm_uuid: str, force: bool) -> Pipe:
        """A byte stream to the VM's serial console; Conflict ``VM_INSTANCE.CONSOLE_BUSY``
        when another session holds it and ``force`` is false."""

    async def graphics_console(self, host_uuid: str, vm_uuid: str) -> dict[str, Any]:
        """``{"type", "host", "port", "password"}`` of the VM's VNC/SPICE console."""

    async def tcp_port_open(self, host_uuid: str, ip: str, port: int) -> bool:
        """Whether the guest's ``ip``:``port`` accepts a TCP connection from the host."""


@runtime_checkable
class StreamOpener(Protocol):
    api: str

    async def open_stream(self, node: Node, result: dict[str, Any]) -> Pipe:
        """The byte stream the API's ``result`` (already authorised and audited) stands for."""


def console_provider(node: Node, hypervisor_type: str) -> ConsoleProvider | None:
    return node.extensions.first(ConsoleProvider, hypervisor_type=hypervisor_type)  # type: ignore[type-abstract]
