"""VM consoles on KVM hosts (:class:`~zmn.core.consoles.ConsoleProvider`).

The serial console is ``zagent``'s ``/v1/vm/console``, which switches the signed HTTP
connection to a raw byte stream over libvirt's console stream; the graphical console's
address, port and password come from ``/v1/vm/graphics`` (the running domain's XML).

Graphical consoles (global config ``kvm/vm.graphics``) are off by default; when on, each
start gives the VM a new random password and the console listens on the host's management
address only (:func:`graphics_spec`), never on a wildcard address.
"""

from __future__ import annotations

import secrets
import string
from typing import TYPE_CHECKING, Any

from zmn.core.consoles import Pipe
from zmn.services.kvm import storage

if TYPE_CHECKING:
    from zmn.services.kvm.hosttype import KvmHostType

_ALPHABET = string.ascii_letters + string.digits


def graphics_spec(mode: str, management_ip: str) -> dict[str, Any]:
    """The ``consoleMode``/``consoleListen``/``consolePassword`` of a ``/v1/vm/start`` body."""
    if mode == "none":
        return {"consoleMode": "none"}
    length = 8 if mode == "vnc" else 16  # VNC authentication takes 8 characters, no more
    password = "".join(secrets.choice(_ALPHABET) for _ in range(length))
    return {"consoleMode": mode, "consoleListen": management_ip, "consolePassword": password}


class KvmConsoles:
    hypervisor_type = "KVM"

    def __init__(self, ht: KvmHostType) -> None:
        self.ht = ht

    def _client(self, host_uuid: str) -> Any:
        return self.ht.client(storage.host_ref(self.ht, host_uuid), self.ht.record(host_uuid))

    async def open_serial_console(self, host_uuid: str, vm_uuid: str, force: bool) -> Pipe:
        client = self._client(host_uuid)
        pipe: Pipe = await client.open_stream("/v1/vm/console", {"uuid": vm_uuid, "force": force})
        return pipe

    async def graphics_console(self, host_uuid: str, vm_uuid: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._client(host_uuid).post(
            "/v1/vm/graphics", {"uuid": vm_uuid}
        )
        return answer

    async def tcp_port_open(self, host_uuid: str, ip: str, port: int) -> bool:
        answer = await self._client(host_uuid).post("/v1/vm/probe", {"ip": ip, "port": port})
        return bool(answer.get("open"))
