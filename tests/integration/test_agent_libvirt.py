"""The libvirt driver on libvirt's in-process ``test:///default`` driver, alone and behind HTTP.

test:///default lives inside this process (no daemon) and its domains are visible only
through connections this process opens; it starts with one running domain named ``test``.
The state resets when the last connection closes, which each fixture does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.drivers.base import LifecycleEvent
from agent.testing import TEST_SECRET, CallbackReceiver, running_agent
from tests.conftest import need
from zmn.api.errors import InvalidArgument, InvalidState, NotFound, OperationFailed

pytestmark = pytest.mark.libvirt

UUID = "4" * 32
HOSTILE = 'it\'s <b>"bold"</b> & more'


def _libvirt_driver():
    try:
        from agent.drivers.libvirt_driver import LibvirtDriver
    except ImportError:
        need(False, "libvirt-python is not installed (pip install '.[agent]')")
        raise
    return LibvirtDriver


def _cleanup(drv: Any) -> None:
    """Undefine what a test left: test:///default outlives a connection while references
    to it (domain objects) are alive, so tests must not rely on it resetting."""
    drv.set_event_listener(None)
    for dom in drv.list():
        if dom.name != "test":
            drv.undefine(dom.name)


@pytest.fixture
def driver() -> Iterator[Any]:
    drv = _libvirt_driver()("test:///default")
    _cleanup(drv)
    try:
        yield drv
    finally:
        _cleanup(drv)
        drv.close()


def spec(uuid: str = UUID, **over: Any):
    from agent.spec import parse_vm

    raw: dict[str, Any] = {
        "uuid": uuid,
        "name": HOSTILE,
        "cpuNum": 2,
        "memorySize": 128 << 20,
        "disks": [{"path": "/var/lib/zstack/root.qcow2"}],
        "nics": [{"mac": "52:54:00:00:00:01", "bridge": "br0", "deviceName": "vnic1.0"}],
    }
    raw.update(over)
    return parse_vm(raw)


def test_feature_row_and_facts(driver):
    assert driver.features.domain_type == "test"
    facts = driver.facts()
    assert facts["hypervisor"] == "TEST" and facts["qemuVersion"] is None
    assert facts["libvirtVersion"].count(".") == 2
    assert facts["cpuNum"] == 16 and facts["memorySize"] > 0
    # the built-in "test" domain runs with 2 vCPUs
    assert facts["capacity"]["usedCpu"] == 2


def test_lifecycle_and_states(driver):
    driver.define(spec())
    row = next(d for d in driver.list() if d.name == UUID)
    assert (row.uuid, row.title, row.state) == (UUID, HOSTILE, "Stopped")
    driver.start(UUID)
    assert driver.state(UUID) == "Running"
    driver.start(UUID)  # idempotent
    driver.suspend(UUID)
    assert driver.state(UUID) == "Paused"
    driver.resume(UUID)
    assert driver.state(UUID) == "Running"
    driver.reboot(UUID)
    assert driver.state(UUID) == "Running"
    assert driver.shutdown(UUID, timeout=5) is False
    assert driver.state(UUID) == "Stopped"
    driver.start(UUID)
    driver.destroy(UUID)
    assert driver.state(UUID) == "Stopped"
    driver.destroy(UUID)  # already off: nothing to do
    states = {d.name: d.state for d in driver.list()}
    assert states == {"test": "Running", UUID: "Stopped"}
    driver.undefine(UUID)
    driver.undefine(UUID)  # already gone
    assert [d.name for d in driver.list()] == ["test"]


def test_hostile_title_survives_libvirt(driver):
    driver.define(spec())
    xml = driver.xml(UUID)
    assert "&lt;b&gt;" in xml and "<b>" not in xml
    assert next(d.title for d in driver.list() if d.name == UUID) == HOSTILE


def test_paused_domain_is_forced_off(driver):
    driver.define(spec())
    driver.start(UUID)
    driver.suspend(UUID)
    assert driver.shutdown(UUID, timeout=5) is True
    assert driver.state(UUID) == "Stopped"


def test_errors_are_mapped(driver):
    with pytest.raises(NotFound) as exc:
        driver.start("5" * 32)
    assert exc.value.code == "VM_INSTANCE.NOT_FOUND"
    driver.define(spec())
    with pytest.raises(InvalidState):
        driver.suspend(UUID)
    with pytest.raises(InvalidState):
        driver.resume(UUID)
    with pytest.raises(OperationFailed) as exc:
        driver.migrate(UUID, "qemu+ssh://root@10.0.0.2/system?keyfile=/var/lib/k&no_tty=1")
    assert exc.value.code == "AGENT.MIGRATE_UNSUPPORTED"
    # an unauthenticated or unencrypted libvirt transport is never used
    for uri in ("qemu+tcp://10.0.0.2/system", "qemu+ssh://10.0.0.2/system?keyfile=/k&x=1"):
        with pytest.raises(InvalidArgument) as bad:
            driver.migrate(UUID, uri)
        assert bad.value.field == "destUri"


def test_devices_on_a_stopped_domain_are_edited_by_redefinition(driver):
    from agent.spec import parse_disk, parse_nic

    driver.define(spec())
    disk = parse_disk({"path": "/var/lib/zstack/data.qcow2", "deviceId": 1}, "disk")
    nic = parse_nic({"mac": "52:54:00:00:00:02", "bridge": "br1"}, "nic")
    driver.attach_disk(UUID, disk)
    driver.attach_disk(UUID, disk)  # same disk again: no change
    driver.attach_nic(UUID, nic)
    xml = driver.xml(UUID)
    assert xml.count("<disk") == 2 and "vdb" in xml and "52:54:00:00:00:02" in xml
    driver.detach_disk(UUID, "vdb")
    driver.detach_nic(UUID, "52:54:00:00:00:02")
    driver.detach_nic(UUID, "52:54:00:00:00:02")  # gone already
    xml = driver.xml(UUID)
    assert xml.count("<disk") == 1 and "52:54:00:00:00:02" not in xml


def test_hotplug_is_refused_where_the_feature_table_says_so(driver):
    from agent.spec import parse_disk

    driver.define(spec())
    driver.start(UUID)
    with pytest.raises(OperationFailed) as exc:
        driver.attach_disk(UUID, parse_disk({"path": "/x/d.qcow2", "deviceId": 2}, "disk"))
    assert exc.value.code == "AGENT.HOTPLUG_UNSUPPORTED"


def test_lifecycle_events_reach_the_listener(driver):
    # events of the fixture's clean-up may still be on their way: let them drain first
    stale: list[LifecycleEvent] = []
    driver.set_event_listener(stale.append)
    time.sleep(0.3)
    events: list[LifecycleEvent] = []
    driver.set_event_listener(events.append)
    driver.define(spec())
    driver.start(UUID)
    driver.destroy(UUID)
    expected = [("defined", "added"), ("started", "booted"), ("stopped", "destroyed")]

    def ours() -> list[tuple[str, str]]:
        return [(e.event, e.detail) for e in events if e.uuid == UUID]

    deadline = time.monotonic() + 10
    while ours()[:3] != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ours()[:3] == expected


def test_full_stack_over_http_with_events_and_callbacks(tmp_path: Path):
    with CallbackReceiver(TEST_SECRET) as rx:
        drv = _libvirt_driver()("test:///default")
        _cleanup(drv)
        with running_agent(tmp_path, driver=drv, callback_url=rx.url) as (_server, client):
            body = {"vm": spec_raw(), "callback": True, "taskId": "start-1"}
            assert client.post("/v1/vm/start", body) == (202, {"taskId": "start-1"})
            result = rx.wait_for(lambda r: r.get("taskId") == "start-1")
            assert result["success"] is True and result["result"]["state"] == "Running"
            rx.wait_for(lambda r: r.get("event") == "started" and r["vmUuid"] == UUID)
            vms = {v["name"]: v["state"] for v in client.get("/v1/vm/list")[1]["vms"]}
            assert vms == {"test": "Running", UUID: "Running"}
            # stopped behind the agent's back, straight through libvirt: the node hears it
            drv._conn.lookupByName(UUID).destroy()
            stopped = rx.wait_for(lambda r: r.get("event") == "stopped")
            assert (stopped["vmUuid"], stopped["detail"], stopped["state"]) == (
                UUID,
                "destroyed",
                "Stopped",
            )
            assert client.post("/v1/vm/destroy", {"uuid": UUID})[0] == 200
        assert rx.refused == []


def spec_raw() -> dict[str, Any]:
    return {
        "uuid": UUID,
        "name": "web",
        "cpuNum": 1,
        "memorySize": 64 << 20,
        "disks": [{"path": "/var/lib/zstack/root.qcow2"}],
    }
