"""``WaitVmInstance``: wait until VMs are usable (``zcli vm wait NAME... --for ...``).

``for`` is one of

* ``running``: the VM is Running;
* ``ip``: Running, and the guest took the DHCP lease of its default NIC's address from the
  host's DHCP server since it last started (``VmNic.leaseDate``, see :mod:`.leases`);
* ``ssh``: ``ip``, and the guest's port 22 accepts a TCP connection from its host.

The call returns the VMs' inventories when all of them are there, or fails with
``VM_INSTANCE.WAIT_TIMEOUT`` (a Timeout: zcli exits 124) naming those that are not.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import msgspec

from zmn.api.errors import NotFound, OperationFailed, Timeout
from zmn.api.message import ApiMessage, Doc, Ref, api
from zmn.core.consoles import console_provider
from zmn.core.service import Call, handler
from zmn.services.vm.common import VmBase, load_vm

POLL = 0.5
WAIT_ERRORS = {
    "VM_INSTANCE.WAIT_TIMEOUT": "the VMs waited for were not there within the timeout",
    "VM_INSTANCE.WAIT_UNSUPPORTED": "the VM's host type cannot tell its address or open ports",
    "VM_INSTANCE.NO_NIC": "waiting for an address of a VM without NICs",
}

# ``for`` is a Python keyword, so the message is made with defstruct (msgspec takes any
# field name); handlers read it with getattr(msg, "for").
WaitVmInstance: Any = msgspec.defstruct(
    "WaitVmInstance",
    [
        ("uuids", Annotated[list[str], Doc("the VMs (UUIDs or names)"), Ref("VmInstance")]),
        (
            "for",
            Annotated[
                Literal["running", "ip", "ssh"],
                Doc("running; ip: the guest took its DHCP lease; ssh: its port 22 answers"),
            ],
            "running",
        ),
        ("timeout", Annotated[float, Doc("seconds to wait at most")], 300.0),
    ],
    bases=(ApiMessage,),
    kw_only=True,
    forbid_unknown_fields=True,
    module=__name__,
)
WaitVmInstance.__doc__ = "Wait until VMs are running, have taken their address, or answer SSH."
WaitVmInstance = api(resource="VmInstance", verb="wait", mutating=False)(WaitVmInstance)


def default_nic(vm: dict[str, Any]) -> dict[str, Any] | None:
    nics = vm.get("vmNics") or []
    wanted = vm.get("defaultL3NetworkUuid")
    return next((n for n in nics if n.get("l3NetworkUuid") == wanted), nics[0] if nics else None)


class WaitHandlers(VmBase):
    @handler(WaitVmInstance)
    async def wait_vms(self, msg: Any, call: Call) -> dict[str, Any]:
        until = str(getattr(msg, "for"))
        if not 0 <= msg.timeout <= 86400:
            from zmn.api.errors import InvalidArgument

            raise InvalidArgument("timeout must be 0-86400 seconds", field="timeout")
        deadline = time.monotonic() + msg.timeout
        waiting = list(dict.fromkeys(msg.uuids))
        ready: dict[str, dict[str, Any]] = {}
        last: dict[str, str] = {}
        while True:
            for uuid in list(waiting):
                vm = load_vm(call, uuid)
                ok, why = await self._ready(call, vm, until)
                if ok:
                    ready[uuid] = vm
                    waiting.remove(uuid)
                else:
                    last[uuid] = f"{vm['name']}: {why}"
            if not waiting:
                return {"inventories": [ready[u] for u in dict.fromkeys(msg.uuids)]}
            if time.monotonic() >= deadline:
                raise Timeout(
                    f"not {until} within {msg.timeout:g} s: " + "; ".join(last[u] for u in waiting),
                    code="VM_INSTANCE.WAIT_TIMEOUT",
                    uuids=waiting,
                )
            await asyncio.sleep(min(POLL, max(deadline - time.monotonic(), 0)))

    async def _ready(self, call: Call, vm: dict[str, Any], until: str) -> tuple[bool, str]:
        if vm["state"] != "Running":
            return False, f"state {vm['state']}"
        if until == "running":
            return True, ""
        hv = str(vm.get("hypervisorType") or "")
        provider = console_provider(call.node, hv)
        if provider is None:
            raise OperationFailed(
                f"VM {vm['name']} runs on a {hv or 'unknown'} host, which cannot tell whether"
                f" the guest took its address (wait for running instead)",
                code="VM_INSTANCE.WAIT_UNSUPPORTED",
                hypervisorType=hv,
            )
        nic = default_nic(vm)
        if nic is None or not nic.get("ip"):
            raise NotFound(
                f"VM {vm['name']} has no NIC with an address to wait for",
                code="VM_INSTANCE.NO_NIC",
                field="uuids",
            )
        if not nic.get("leaseDate"):
            return False, f"{nic['ip']} not leased yet"
        if until == "ip":
            return True, ""
        if await provider.tcp_port_open(str(vm["hostUuid"]), str(nic["ip"]), 22):
            return True, ""
        return False, f"port 22 of {nic['ip']} does not answer"
