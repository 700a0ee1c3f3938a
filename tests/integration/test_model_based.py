"""Model-based testing: Hypothesis drives random API sequences against a real in-process node
and checks, after every step, that the node agrees with a small model and with itself.

Rules: create (running or stopped), start, stop, reboot, pause, resume, migrate, destroy,
recover, expunge VMs and any VM operation in a state that does not allow it (it must be
refused by name); create, attach (to a running, stopped or paused VM), detach and delete data
volumes; VIP + EIP create, detach, attach, delete; security groups with a rule and a NIC,
deleted; a host failure (the simulator fails the next stop, pause, migrate or volume attach
on the VM's host: the operation fails and changes nothing, the attach chain rolls back); a
node restart (stop the node, start a new one on the same home: nothing changes); a
reconciler pass (finds no drift).

Invariants after each step: ``CheckConsistency`` is empty, no VM is transitional, every
model VM has its modelled state (and no other VM exists), data-volume attachments and EIP
attachments are as modelled, addresses in use = NICs + VIPs, and no job is left Running.

Every mutating call is written to the node's API log (``api.log``); the last test replays a
recorded log on a fresh node with the replay used by ``zmn replay``. A failing sequence
found here is copied into ``tests/regressions/`` with its fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.support.inproc import Api, running_node
from tests.support.vmcloud import GiB, build_cloud
from zmn.api.errors import ZmnError
from zmn.services.testing.replay import Replayer, read_log
from zmn.services.vm.states import TRANSITIONAL

# 20 sequences of 30 steps with node restarts: under a minute on a quiet machine, more than
# the suite's 300 s hang guard beside stress-ng --cpu 2 at load average 20
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# what each operation needs and leaves (deletion policy Delay: destroy keeps the VM)
OPS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "start": ("StartVmInstance", ("Stopped",), "Running"),
    "stop": ("StopVmInstance", ("Running", "Paused"), "Stopped"),
    "reboot": ("RebootVmInstance", ("Running",), "Running"),
    "pause": ("PauseVmInstance", ("Running",), "Paused"),
    "resume": ("ResumeVmInstance", ("Paused",), "Running"),
    "migrate": ("MigrateVm", ("Running",), "Running"),
    "destroy": ("DestroyVmInstance", ("Running", "Stopped", "Paused"), "Destroyed"),
    "recover": ("RecoverVmInstance", ("Destroyed",), "Stopped"),
    "expunge": ("ExpungeVmInstance", ("Destroyed",), None),
}
PLUGGABLE = ("Running", "Stopped", "Paused")  # VM states a data volume attaches and detaches in


async def build(api: Api) -> None:
    await build_cloud(api, hosts=((8, 16 * GiB), (8, 16 * GiB)))
    await api("UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Delay")
    await api("CreateL3Network", name="public", l2NetworkUuid="l2", category="Public")
    await api(
        "AddIpRange",
        name="public-range",
        l3NetworkUuid="public",
        startIp="192.168.100.10",
        endIp="192.168.100.60",
        netmask="255.255.255.0",
        gateway="192.168.100.1",
    )


class NodeMachine(RuleBasedStateMachine):
    """The model: VM name -> state; volume -> VM or None; EIP -> VM or None; SG names."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="zmn-model-"))
        self.home = self.tmp / "home"
        self.loop = asyncio.new_event_loop()
        self.conf = {"api.log": str(self.tmp / "api.log")}
        self.stack: contextlib.AsyncExitStack | None = None
        self.vms: dict[str, str] = {}
        self.volumes: dict[str, str | None] = {}
        self.eips: dict[str, str | None] = {}
        self.sgs: dict[str, set[str]] = {}  # security group -> VMs with a NIC in it
        self.n = 0
        self.run(self._start())
        self.run(build(self.api))

    # ---------------------------------------------------------------- plumbing

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _start(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        node, _server = await self.stack.enter_async_context(
            running_node(self.home, conf=self.conf)
        )
        self.node = node
        self.api = Api(node)

    async def _stop(self) -> None:
        assert self.stack is not None
        await self.stack.aclose()
        self.stack = None

    def teardown(self) -> None:
        try:
            if self.stack is not None:
                self.run(self._stop())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def call(self, api: str, **args: Any) -> Any:
        if not api.startswith(("Query", "Check")):  # shown by --hypothesis-show-statistics
            event(f"call {api}")
        return self.run(self.api(api, **args))

    def fails(self, api: str, **args: Any) -> ZmnError:
        with pytest.raises(ZmnError) as err:
            self.call(api, **args)
        event(f"refused {api}")
        return err.value

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def nic(self, vm: str) -> str:
        rows = self.call("QueryVmNic", conditions=[f"vmInstance.name={vm}"])["inventories"]
        assert len(rows) == 1, rows
        return str(rows[0]["uuid"])

    def vm_with(self, data: Any, *states: str) -> str:
        return str(
            data.draw(st.sampled_from(sorted(v for v, s in self.vms.items() if s in states)))
        )

    def has(self, *states: str) -> bool:
        return any(s in states for s in self.vms.values())

    # ---------------------------------------------------------------- VM rules

    @precondition(lambda self: len(self.vms) < 8)
    @rule(stopped=st.booleans())
    def create_vm(self, stopped: bool) -> None:
        name = self.name("vm")
        strategy = "CreateStopped" if stopped else "InstantStart"
        inv = self.call(
            "CreateVmInstance",
            name=name,
            imageUuid="img",
            instanceOfferingUuid="small",
            l3NetworkUuids=["l3"],
            strategy=strategy,
        )["inventory"]
        self.vms[name] = inv["state"]
        assert inv["state"] == ("Stopped" if stopped else "Running")

    # one rule per operation, so that each is as likely as a volume or EIP rule (a single
    # rule drawing the operation made each VM operation rare in a short sequence)

    @precondition(lambda self: bool(self.vms))
    @rule(data=st.data())
    def start(self, data: Any) -> None:
        self.operate(data, "start")

    @precondition(lambda self: bool(self.vms))
    @rule(data=st.data())
    def stop(self, data: Any) -> None:
        self.operate(data, "stop")

    @precondition(lambda self: bool(self.vms))
    @rule(data=st.data())
    def reboot(self, data: Any) -> None:
        self.operate(data, "reboot")

    @precondition(lambda self: bool(self.vms))
    @rule(data=st.data())
    def pause(self, data: Any) -> None:
        self.operate(data, "pause")

    @precondition(lambda self: bool(self.vms))
    @rule(data=st.data())
    def resume(self, data: Any) -> None:
        self.operate(data, "resume")

    @precondition(lambda self: bool(self.vms))
    @rule(data=st.data())
    def migrate(self, data: Any) -> None:
        self.operate(data, "migrate")

    @precondition(lambda self: bool(self.vms))
    @rule(data=st.data())
    def destroy(self, data: Any) -> None:
        self.operate(data, "destroy")

    @precondition(lambda self: bool(self.vms))
    @rule(data=st.data())
    def recover(self, data: Any) -> None:
        self.operate(data, "recover")

    @precondition(lambda self: bool(self.vms))
    @rule(data=st.data())
    def expunge(self, data: Any) -> None:
        self.operate(data, "expunge")

    def operate(self, data: Any, op: str) -> None:
        """``op`` on a VM; in a state that does not allow it, refused by name."""
        api, allowed, after = OPS[op]
        vm = str(data.draw(st.sampled_from(sorted(self.vms))))
        key = "vmInstanceUuid" if api == "MigrateVm" else "uuid"
        if self.vms[vm] not in allowed:
            err = self.fails(api, **{key: vm})
            assert err.code == "VM_INSTANCE.INVALID_STATE", err.to_wire()
            return
        self.call(api, **{key: vm})
        if after is None:
            del self.vms[vm]
            for vol, owner in self.volumes.items():  # expunge detaches data volumes
                if owner == vm:
                    self.volumes[vol] = None
            for eip, owner in self.eips.items():
                if owner == vm:
                    self.eips[eip] = None
            for members in self.sgs.values():
                members.discard(vm)
        else:
            self.vms[vm] = after

    @precondition(lambda self: self.has("Running"))
    @rule(data=st.data(), op=st.sampled_from(["stop", "pause", "migrate"]))
    def host_failure(self, data: Any, op: str) -> None:
        """The simulator fails the next ``op`` on the VM's host: the VM stays as it was."""
        vm = self.vm_with(data, "Running")
        host = self.call("QueryVmInstance", conditions=[f"name={vm}"])["inventories"][0]["hostUuid"]
        self.call("SimulatorInjectFailure", hostUuid=host, operation=op, message="model")
        api, key = {
            "stop": ("StopVmInstance", "uuid"),
            "pause": ("PauseVmInstance", "uuid"),
            "migrate": ("MigrateVm", "vmInstanceUuid"),
        }[op]
        err = self.fails(api, **{key: vm})
        assert err.code == "SIMULATOR.INJECTED_FAILURE", err.to_wire()
        self.call("SimulatorClearFailures")
        after = self.call("QueryVmInstance", conditions=[f"name={vm}"])["inventories"][0]
        assert (after["state"], after["hostUuid"]) == ("Running", host)

    @rule()
    def restart_node(self) -> None:
        event("node restart")
        self.run(self._stop())
        self.run(self._start())

    @rule()
    def reconcile(self) -> None:
        drift = self.run(self.node.services["vm"].reconciler.run_once())  # type: ignore[attr-defined]
        assert drift == [], drift

    # ---------------------------------------------------------------- volumes

    @precondition(lambda self: len(self.volumes) < 5)
    @rule()
    def create_volume(self) -> None:
        name = self.name("data")
        self.call("CreateDataVolume", name=name, diskOfferingUuid="d10")
        self.volumes[name] = None

    @precondition(lambda self: None in self.volumes.values() and self.has(*PLUGGABLE))
    @rule(data=st.data())
    def attach_volume(self, data: Any) -> None:
        vol = data.draw(st.sampled_from(sorted(v for v, o in self.volumes.items() if o is None)))
        vm = self.vm_with(data, *PLUGGABLE)
        self.call("AttachDataVolumeToVm", volumeUuid=vol, vmInstanceUuid=vm)
        self.volumes[vol] = vm

    @precondition(lambda self: None in self.volumes.values() and self.has("Running"))
    @rule(data=st.data())
    def volume_attach_host_failure(self, data: Any) -> None:
        """The hot-plug fails on the host: the attach chain rolls back (the volume is
        detached, and NotInstantiated again if this attach gave it its storage)."""
        vol = data.draw(st.sampled_from(sorted(v for v, o in self.volumes.items() if o is None)))
        before = self.call("QueryVolume", conditions=[f"name={vol}"])["inventories"][0]
        vm = self.vm_with(data, "Running")
        host = self.call("QueryVmInstance", conditions=[f"name={vm}"])["inventories"][0]["hostUuid"]
        self.call("SimulatorInjectFailure", hostUuid=host, operation="attachVolume", message="m")
        err = self.fails("AttachDataVolumeToVm", volumeUuid=vol, vmInstanceUuid=vm)
        assert err.code == "SIMULATOR.INJECTED_FAILURE", err.to_wire()
        assert err.details.get("chain") == "volume-attach", err.to_wire()
        self.call("SimulatorClearFailures")
        after = self.call("QueryVolume", conditions=[f"name={vol}"])["inventories"][0]
        keys = ("status", "primaryStorageUuid", "installPath", "vmInstanceUuid", "deviceId")
        assert [after[k] for k in keys] == [before[k] for k in keys]

    @precondition(
        lambda self: any(
            o is not None and self.vms.get(o) in PLUGGABLE for o in self.volumes.values()
        )
    )
    @rule(data=st.data())
    def detach_volume(self, data: Any) -> None:
        vol = data.draw(
            st.sampled_from(
                sorted(
                    v
                    for v, o in self.volumes.items()
                    if o is not None and self.vms.get(o) in PLUGGABLE
                )
            )
        )
        self.call("DetachDataVolumeFromVm", uuid=vol)
        self.volumes[vol] = None

    @precondition(lambda self: None in self.volumes.values())
    @rule(data=st.data())
    def delete_volume(self, data: Any) -> None:
        vol = data.draw(st.sampled_from(sorted(v for v, o in self.volumes.items() if o is None)))
        self.call("DeleteDataVolume", uuid=vol)
        del self.volumes[vol]

    # ---------------------------------------------------------------- EIPs, security groups

    @precondition(lambda self: len(self.eips) < 4 and self.has("Running", "Stopped"))
    @rule(data=st.data())
    def create_eip(self, data: Any) -> None:
        vm = self.vm_with(data, "Running", "Stopped")
        name = self.name("eip")
        self.call("CreateVip", name=f"vip-{name}", l3NetworkUuid="public")
        self.call("CreateEip", name=name, vipUuid=f"vip-{name}", vmNicUuid=self.nic(vm))
        self.eips[name] = vm

    @precondition(lambda self: any(o is not None for o in self.eips.values()))
    @rule(data=st.data())
    def detach_eip(self, data: Any) -> None:
        eip = data.draw(st.sampled_from(sorted(e for e, o in self.eips.items() if o)))
        self.call("DetachEip", eipUuid=eip)
        self.eips[eip] = None

    @precondition(lambda self: None in self.eips.values() and self.has("Running", "Stopped"))
    @rule(data=st.data())
    def attach_eip(self, data: Any) -> None:
        eip = data.draw(st.sampled_from(sorted(e for e, o in self.eips.items() if o is None)))
        vm = self.vm_with(data, "Running", "Stopped")
        self.call("AttachEip", eipUuid=eip, vmNicUuid=self.nic(vm))
        self.eips[eip] = vm

    @precondition(lambda self: bool(self.eips))
    @rule(data=st.data())
    def delete_eip(self, data: Any) -> None:
        eip = data.draw(st.sampled_from(sorted(self.eips)))
        self.call("DeleteEip", uuid=eip)
        self.call("DeleteVip", uuid=f"vip-{eip}")
        del self.eips[eip]

    @precondition(lambda self: len(self.sgs) < 3)
    @rule(port=st.integers(1, 65535))
    def create_security_group(self, port: int) -> None:
        name = self.name("sg")
        self.call("CreateSecurityGroup", name=name)
        self.call(
            "AddSecurityGroupRule",
            securityGroupUuid=name,
            type="Ingress",
            protocol="TCP",
            startPort=port,
        )
        self.call("AttachSecurityGroupToL3Network", securityGroupUuid=name, l3NetworkUuid="l3")
        self.sgs[name] = set()

    def _sg_candidates(self) -> list[tuple[str, str]]:
        return [
            (sg, vm)
            for sg, members in sorted(self.sgs.items())
            for vm, state in sorted(self.vms.items())
            if state in ("Running", "Stopped") and vm not in members
        ]

    @precondition(lambda self: bool(self._sg_candidates()))
    @rule(data=st.data())
    def add_nic_to_security_group(self, data: Any) -> None:
        sg, vm = data.draw(st.sampled_from(self._sg_candidates()))
        self.call("AddVmNicToSecurityGroup", securityGroupUuid=sg, vmNicUuids=[self.nic(vm)])
        self.sgs[sg].add(vm)

    @precondition(lambda self: bool(self.sgs))
    @rule(data=st.data())
    def delete_security_group(self, data: Any) -> None:
        sg = data.draw(st.sampled_from(sorted(self.sgs)))
        self.call("DeleteSecurityGroup", uuid=sg)
        del self.sgs[sg]

    # ---------------------------------------------------------------- invariants

    @invariant()
    def node_agrees_with_model(self) -> None:
        violations = self.call("CheckConsistency")["violations"]
        assert violations == [], violations
        vms = self.call("QueryVmInstance")["inventories"]
        actual = {v["name"]: v["state"] for v in vms}
        assert not [s for s in actual.values() if s in TRANSITIONAL], actual
        assert actual == self.vms
        vols = self.call("QueryVolume", conditions=["type=Data"])["inventories"]
        by_uuid = {v["uuid"]: v["name"] for v in vms}
        got = {v["name"]: by_uuid.get(v["vmInstanceUuid"]) for v in vols}
        assert got == self.volumes
        eips = self.call("QueryEip")["inventories"]
        nic_vm = {
            n["uuid"]: by_uuid[n["vmInstanceUuid"]] for n in self.call("QueryVmNic")["inventories"]
        }
        assert {e["name"]: nic_vm.get(e["vmNicUuid"]) for e in eips} == self.eips
        ips = self.call("QueryUsedIp", count=True)["total"]
        assert ips == len(nic_vm) + len(self.eips)
        assert {g["name"] for g in self.call("QuerySecurityGroup")["inventories"]} == set(self.sgs)
        assert self.call("QueryJob", conditions=["state=Running"], count=True)["total"] == 0


NodeMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # shrinking a node-level failure is slow: keep it short, and skip the explain phase
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
test_model_based_api_sequences = NodeMachine.TestCase


def test_the_machine_has_a_rule_for_everything_the_issue_lists() -> None:
    """Issue 8's list (VM operations, volumes, EIPs, security groups, deletes; node restart
    and host failure) plus pause/resume, volume hot-plug failures and reconciler passes."""
    rules = {
        name
        for name in dir(NodeMachine)
        if hasattr(getattr(NodeMachine, name), "hypothesis_stateful_rule")
    }
    assert rules == {
        *OPS,
        "create_vm",
        "create_volume",
        "attach_volume",
        "detach_volume",
        "delete_volume",
        "create_eip",
        "attach_eip",
        "detach_eip",
        "delete_eip",
        "create_security_group",
        "add_nic_to_security_group",
        "delete_security_group",
        "host_failure",
        "volume_attach_host_failure",
        "restart_node",
        "reconcile",
    }


async def test_an_api_log_replays_on_a_fresh_node(tmp_path: Path) -> None:
    """The log a node writes, replayed on an empty node, builds the same VMs and volumes."""
    log = tmp_path / "api.log"
    async with running_node(tmp_path / "a", conf={"api.log": str(log)}) as (node, _s):
        api = Api(node)
        await build(api)
        vm = (
            await api(
                "CreateVmInstance",
                name="web",
                imageUuid="img",
                instanceOfferingUuid="small",
                l3NetworkUuids=["l3"],
            )
        )["inventory"]
        vol = (await api("CreateDataVolume", name="d1", diskOfferingUuid="d10"))["inventory"]
        await api("AttachDataVolumeToVm", volumeUuid=vol["uuid"], vmInstanceUuid=vm["uuid"])
        await api("StopVmInstance", uuid=vm["uuid"])
        with pytest.raises(ZmnError):
            await api("StopVmInstance", uuid=vm["uuid"])  # refused: recorded with its code
        with pytest.raises(ZmnError):  # a refused call is logged as well
            await api("StopVmInstance", uuid="no-such-vm")
        expected = await summary(api)
    entries = read_log(log)
    assert entries[-1]["error"] == "VM_INSTANCE.NOT_FOUND"
    assert entries[-2]["error"] == "VM_INSTANCE.INVALID_STATE"
    assert all("time" in e and "seconds" in e for e in entries)
    async with running_node(tmp_path / "b") as (node, _s):
        api = Api(node)
        rp = Replayer()
        for entry in entries:
            name, args = rp.prepare(entry)
            try:
                result, error = await api(name, **args), None
            except ZmnError as exc:
                result, error = None, exc.code
            rp.record(entry, result, error)
        assert rp.mismatches == []
        assert vm["uuid"] in rp.uuids and rp.uuids[vm["uuid"]] != vm["uuid"]
        assert await summary(api) == expected


async def summary(api: Api) -> dict[str, Any]:
    vms = (await api("QueryVmInstance"))["inventories"]
    vols = (await api("QueryVolume", conditions=["type=Data"]))["inventories"]
    names = {v["uuid"]: v["name"] for v in vms}
    return {
        "vms": sorted((v["name"], v["state"]) for v in vms),
        "volumes": sorted((v["name"], names.get(v["vmInstanceUuid"])) for v in vols),
        "ips": (await api("QueryUsedIp", count=True))["total"],
    }
