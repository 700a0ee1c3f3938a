"""drives_vms: the HypervisorDriver protocol check, remembered per class."""

from __future__ import annotations

from typing import Any

from zmn.services.host.hosttype import HypervisorDriver, drives_vms
from zmn.services.host.simulator import SimulatorHostType


class NoVmOps:
    hypervisor_type = "none"


class WithVmOps:
    hypervisor_type = "some"

    async def vm_op(self, host: Any, op: str, vm: Any, args: Any) -> dict[str, Any]:
        return {"state": "Running"}

    async def apply_security_group_rules(self, host: Any, nic: str, rules: Any) -> None:
        return None


class OnlyVmOp(NoVmOps):
    async def vm_op(self, host: Any, op: str, vm: Any, args: Any) -> dict[str, Any]:
        return {"state": "Running"}


def test_drives_vms_answers_as_the_protocol_check_does_every_time() -> None:
    simulator = SimulatorHostType.__new__(SimulatorHostType)
    for candidate in (simulator, NoVmOps(), OnlyVmOp(), WithVmOps(), object()):
        expected = isinstance(candidate, HypervisorDriver)
        assert drives_vms(candidate) is expected
        assert drives_vms(candidate) is expected  # from the per-class answer now
    assert drives_vms(simulator) and drives_vms(WithVmOps())
    assert not drives_vms(NoVmOps()) and not drives_vms(OnlyVmOp())
