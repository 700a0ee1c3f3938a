"""CPU and memory hot-add on the agent: the domain XML a start writes, the limits read back
from it, the check that refuses a change naming the limit, and the fake driver applying it."""

from __future__ import annotations

from typing import Any

import pytest

from agent.drivers import domain_xml as dx
from agent.drivers import hotplug
from agent.drivers.fake import FakeDriver
from agent.drivers.features import QEMU_TCG, TEST
from agent.spec import parse_vm
from zmn.api.errors import InvalidArgument, InvalidState, OperationFailed
from zmn.api.hotplug import Limits, check

UUID = "0123456789abcdef0123456789abcdef"
MiB = 1 << 20


def spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"uuid": UUID, "name": "hot", "cpuNum": 1, "memorySize": 256 * MiB}
    base.update(over)
    return base


def test_limits_round_trip_through_the_domain_xml() -> None:
    xml = dx.to_xml(dx.build_domain(parse_vm(spec(maxCpuNum=4, maxMemorySize=768 * MiB)), QEMU_TCG))
    have = hotplug.limits_of(xml)
    assert have == Limits(1, 4, 256 * MiB, 768 * MiB, dx.MEMORY_SLOTS)
    root = dx.build_domain(parse_vm(spec(maxCpuNum=4, maxMemorySize=768 * MiB)), QEMU_TCG).element()
    assert root.find("cpu/numa/cell").attrib == {
        "id": "0", "cpus": "0-3", "memory": str(256 * 1024), "unit": "KiB"
    }  # fmt: skip
    assert root.find("cpu/topology").get("cores") == "4"


def test_without_limits_or_support_the_domain_is_unchanged() -> None:
    plain = dx.to_xml(dx.build_domain(parse_vm(spec()), QEMU_TCG))
    assert "maxMemory" not in plain and "current=" not in plain and "numa" not in plain
    on_test = dx.to_xml(dx.build_domain(parse_vm(spec(maxCpuNum=4)), TEST))
    assert "current=" not in on_test  # libvirt's test driver: no hot-add in the feature row
    assert hotplug.limits_of(plain) == Limits(1, 1, 256 * MiB, 256 * MiB, 0)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"maxCpuNum": 0.5}, "vm.maxCpuNum"),
        ({"cpuNum": 2, "maxCpuNum": 1}, "vm.maxCpuNum"),
        ({"maxMemorySize": 128 * MiB}, "vm.maxMemorySize"),
        ({"maxMemorySize": 300 * MiB}, "vm.maxMemorySize"),  # not whole 128 MiB blocks
    ],
)
def test_bad_limits_are_refused_naming_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_vm(spec(**over))
    assert err.value.field == field


def test_check_names_the_limit_and_its_config_key() -> None:
    have = Limits(2, 4, 512 * MiB, 1024 * MiB, 15)
    check(UUID, have, 4, 1024 * MiB)  # within: no error
    with pytest.raises(InvalidState) as err:
        check(UUID, have, 5, 512 * MiB)
    assert err.value.code == "VM_INSTANCE.HOTPLUG_LIMIT" and err.value.field == "cpuNum"
    assert "at most 4 vCPUs" in err.value.message and "vm/cpu.hotplugMax" in err.value.message
    with pytest.raises(InvalidState) as err:
        check(UUID, have, 2, 1152 * MiB)
    assert "vm/memory.hotplugMax" in err.value.message
    with pytest.raises(InvalidState) as err:
        check(UUID, have, 1, 512 * MiB)
    assert err.value.code == "VM_INSTANCE.HOTPLUG_SHRINK"
    with pytest.raises(InvalidArgument) as arg:
        check(UUID, have, 2, 600 * MiB)
    assert arg.value.code == "VM_INSTANCE.HOTPLUG_BLOCK"
    with pytest.raises(InvalidState) as err:
        check(UUID, Limits(2, 4, 512 * MiB, 1024 * MiB, 0), 2, 640 * MiB)
    assert "no free memory slot" in err.value.message


def test_the_fake_driver_grows_a_running_domain_with_a_dimm() -> None:
    d = FakeDriver(QEMU_TCG)
    d.define(parse_vm(spec(maxCpuNum=2, maxMemorySize=512 * MiB)))
    with pytest.raises(InvalidState):  # not running
        d.set_cpu_memory(UUID, 2, 256 * MiB)
    d.start(UUID)
    got = d.set_cpu_memory(UUID, 2, 384 * MiB)
    assert got == {"cpuNum": 2, "maxCpuNum": 2, "memorySize": 384 * MiB, "maxMemorySize": 512 * MiB}
    xml = d.xml(UUID)
    assert '<memory model="dimm">' in xml and f'<size unit="KiB">{128 * 1024}</size>' in xml
    with pytest.raises(InvalidState):
        d.set_cpu_memory(UUID, 3, 384 * MiB)
    assert hotplug.limits_of(d.xml(UUID)).cpu_num == 2  # the refused change changed nothing
    on_test = FakeDriver(TEST)
    on_test.define(parse_vm(spec()))
    on_test.start(UUID)
    with pytest.raises(OperationFailed):
        on_test.set_cpu_memory(UUID, 1, 256 * MiB)


def test_a_pvm_kvm_module_means_tcg(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """PVM's /dev/kvm (kvm_pvm) boots no ordinary guest: the driver falls back to TCG."""
    from agent.drivers.features import kvm_runs_plain_guests, kvm_vendor_module

    (tmp_path / "kvm").mkdir()
    assert kvm_vendor_module(str(tmp_path)) is None and kvm_runs_plain_guests(str(tmp_path))
    (tmp_path / "kvm_pvm").mkdir()
    assert kvm_vendor_module(str(tmp_path)) == "kvm_pvm"
    assert not kvm_runs_plain_guests(str(tmp_path))
    (tmp_path / "kvm_intel").mkdir()
    assert kvm_runs_plain_guests(str(tmp_path))
