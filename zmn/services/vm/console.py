"""VM consoles: the serial console relayed on the API connection, and the graphical one.

``OpenVmConsole`` authorises an attach like any call on the VM (the owner or an admin: the
``uuid`` reference is resolved with ownership) and is audited; its reply becomes a byte
stream (:mod:`zmn.streams`) that :class:`VmConsoleStream` connects to the host's console
through the VM's host type (:class:`~zmn.core.consoles.ConsoleProvider`). A second attach is
refused with ``VM_INSTANCE.CONSOLE_BUSY`` unless ``force`` takes the console over.

``RequestConsoleAccess`` (ZStack's name) answers where the VM's VNC/SPICE console listens:
the host's management address, a port, and the password made for the VM at its last start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from zmn.api.errors import InvalidState, OperationFailed
from zmn.api.message import ApiMessage, Doc, Ref, api
from zmn.core.consoles import ConsoleProvider, Pipe, console_provider
from zmn.core.service import Call, handler
from zmn.services.vm.common import VmBase, load_vm

if TYPE_CHECKING:
    from zmn.core.node import Node

CONSOLE_ERRORS = {
    "VM_INSTANCE.NOT_RUNNING": "the VM's console is there only while it is Running",
    "VM_INSTANCE.CONSOLE_BUSY": "another session holds the VM's serial console (use force)",
    "VM_INSTANCE.CONSOLE_UNSUPPORTED": "the VM's host type has no console (simulator hosts)",
    "VM_INSTANCE.NO_GRAPHICS": "the VM was started without a graphical console",
}


@api(resource="VmInstance", verb="console")
class OpenVmConsole(ApiMessage, kw_only=True):
    """Attach to a running VM's serial console (zcli: raw terminal, Ctrl-] detaches)."""

    uuid: Annotated[str, Doc("VM UUID or name")]
    force: Annotated[bool, Doc("take the console over from the session holding it")] = False


@api(resource="VmInstance", verb="console-access")
class RequestConsoleAccess(ApiMessage, kw_only=True):
    """Where a running VM's graphical (VNC/SPICE) console listens, and its password."""

    vmInstanceUuid: Annotated[str, Doc("VM UUID or name"), Ref("VmInstance")]


def _running_vm(call: Call, uuid: str, what: str) -> tuple[dict[str, Any], ConsoleProvider]:
    vm = load_vm(call, uuid)
    if vm["state"] != "Running" or not vm.get("hostUuid"):
        raise InvalidState(
            f"VM {vm['name']} is {vm['state']}: its {what} is there only while it is Running"
            f" (start it first: zcli vm start {vm['name']})",
            code="VM_INSTANCE.NOT_RUNNING",
            field="uuid",
            state=vm["state"],
        )
    hv = str(vm.get("hypervisorType") or "")
    provider = console_provider(call.node, hv)
    if provider is None:
        raise OperationFailed(
            f"VM {vm['name']} runs on a {hv or 'unknown'} host, which has no {what}",
            code="VM_INSTANCE.CONSOLE_UNSUPPORTED",
            hypervisorType=hv,
        )
    return vm, provider


class ConsoleHandlers(VmBase):
    @handler(OpenVmConsole)
    async def open_console(self, msg: OpenVmConsole, call: Call) -> dict[str, Any]:
        vm, _ = _running_vm(call, msg.uuid, "serial console")
        return {
            "vmInstanceUuid": vm["uuid"],
            "name": vm["name"],
            "hostUuid": vm["hostUuid"],
            "hypervisorType": vm["hypervisorType"],
            "force": msg.force,
        }

    @handler(RequestConsoleAccess)
    async def console_access(self, msg: RequestConsoleAccess, call: Call) -> dict[str, Any]:
        vm, provider = _running_vm(call, msg.vmInstanceUuid, "graphical console")
        info = await provider.graphics_console(str(vm["hostUuid"]), str(vm["uuid"]))
        return {
            "inventory": {
                "vmInstanceUuid": vm["uuid"],
                "scheme": info.get("type"),
                "hostname": info.get("host"),
                "port": info.get("port"),
                "password": info.get("password"),
            }
        }


class VmConsoleStream:
    """The byte stream behind a successful ``OpenVmConsole``."""

    api = "OpenVmConsole"

    async def open_stream(self, node: Node, result: dict[str, Any]) -> Pipe:
        hv = str(result.get("hypervisorType") or "")
        provider = console_provider(node, hv)
        if provider is None:
            raise OperationFailed(
                f"a {hv} host has no serial console", code="VM_INSTANCE.CONSOLE_UNSUPPORTED"
            )
        return await provider.open_serial_console(
            str(result["hostUuid"]), str(result["vmInstanceUuid"]), bool(result.get("force"))
        )
