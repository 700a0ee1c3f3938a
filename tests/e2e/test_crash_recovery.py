"""Kill a real ``zmn`` process before and after every step of the VM, volume and host-add
chains, restart it, and check that nothing is lost and nothing is stuck.

For each chain (steps read from ``GetFlowChains``) one node home is built once from
``demo/cloud.zcli``; then for every step and ``before``/``after`` an ``InjectCrash`` arms the
crash point, the operation is sent (the connection drops: the node exited 137), ``zmn start``
brings it back, and the invariants hold:

- ``CheckConsistency`` is empty (IPs, capacity, NICs, volumes, transitional states);
- no VM is in a transitional state and no job is left Running;
- every acknowledged create is exactly one VM; an unacknowledged one is zero or one.

Volume attach and detach (``volume-attach``, ``volume-detach``) and ``host-add`` are cut the
same way; at restart a run whose every step was done is finished (its job Succeeded), any
other is rolled back (its job Interrupted): the volume is exactly as before the call, the
host row is gone or Connected. An attach is also cut after the call finished but before the
reply (``InjectCrash api=AttachDataVolumeToVm``). The last test kills ``-9`` the node while
40 ``zcli vm create`` run in parallel from bash.

A volume or host touched by a crashed call is never used again here: the API log has no entry
for a call that died, so a later call on it could replay differently.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.proc import BIN, ZmnProcess
from zmn.api.errors import ZmnError
from zmn.client import Client
from zmn.services.vm.states import TRANSITIONAL

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class CrashNode:
    """A node home with the demo cloud, crash points enabled, driven by a Python client."""

    def __init__(self, home: Path) -> None:
        self.proc = ZmnProcess(home)
        self.acked: set[str] = set()  # names of creates that got their reply
        self.unacked: set[str] = set()
        self.restarts = 0

    def setup(self) -> None:
        assert self.proc.zmn("init").code == 0
        with open(self.proc.home / "zmn.conf", "a") as fh:
            fh.write("testing.crashpoints=true\napi.log=api.log\n")
        self.start()
        built = self.proc.zcli("-q", "-f", str(ROOT / "demo" / "cloud.zcli"), timeout=120)
        assert built.code == 0, built.err

    def start(self) -> None:
        started = self.proc.zmn("start")
        assert started.code == 0, started.err + started.out

    def call(self, api: str, /, **args: Any) -> Any:
        with Client(f"unix:{self.proc.home / 'zmn.sock'}", timeout=60) as client:
            return client.call(api, args)

    def wait_dead(self, pid: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        raise AssertionError(f"the node (pid {pid}) did not die at the crash point")

    def crash_during(self, chain: str, flow: str, when: str, api: str, **args: Any) -> bool:
        """Arm the crash point, send the call; returns whether the call was acknowledged."""
        pid = self.proc.pid()
        assert pid
        self.call("InjectCrash", chain=chain, flow=flow, when=when)
        try:
            self.call(api, **args)
        except ZmnError as exc:
            assert exc.code in ("NODE.CONNECTION_CLOSED", "NODE.UNREACHABLE"), exc.to_wire()
            self.wait_dead(pid)
            self.start()
            self.restarts += 1
            return False
        # the step was skipped by this call (e.g. it did not apply): disarm, nothing crashed
        self.call("ClearCrashPoints")
        return True

    def vms(self, *conditions: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call("QueryVmInstance", conditions=list(conditions))[
            "inventories"
        ]
        return rows

    def vm_state(self, name: str) -> str:
        rows = self.vms(f"name={name}")
        assert len(rows) == 1, rows
        return str(rows[0]["state"])

    def check(self, where: str) -> None:
        violations = self.call("CheckConsistency")["violations"]
        assert violations == [], (where, violations)
        stuck = self.vms(f"state?={','.join(TRANSITIONAL)}")
        assert stuck == [], (where, [(v["name"], v["state"]) for v in stuck])
        running = self.call("QueryJob", conditions=["state=Running"], count=True)["total"]
        assert running == 0, where
        for name in self.acked:
            assert len(self.vms(f"name={name}")) == 1, (where, name)
        for name in self.unacked:
            assert len(self.vms(f"name={name}")) <= 1, (where, name)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashNode]:
    """One home for the module (building one costs ~10 s here); each test adds its own VMs."""
    n = CrashNode(tmp_path_factory.mktemp("crash") / "home")
    try:
        n.setup()
    except BaseException:
        n.proc.stop_quietly()
        raise
    yield n
    n.proc.stop_quietly()


# Every (step, when) of vm-create; for the other chains every step once, alternating before
# and after, unless ZMN_CRASH_MATRIX=full (the whole matrix: ~2x the time).
FULL = os.environ.get("ZMN_CRASH_MATRIX") == "full"


def steps(
    node: CrashNode, chain: str, *, full: bool = True, end_after: bool = False
) -> list[tuple[str, str]]:
    """The crash points of a chain; sampled: every step once, alternating, ending on
    ``after`` the last step when ``end_after`` (the run recovery finishes)."""
    flows: list[str] = node.call("GetFlowChains")["chains"][chain]
    assert flows, chain
    if full or FULL:
        return [(flow, when) for flow in flows for when in ("before", "after")]
    shift = len(flows) % 2 if end_after else 0  # the last index, len - 1, gets "after"
    return [(flow, ("before", "after")[(i + shift) % 2]) for i, flow in enumerate(flows)]


VM = {"imageUuid": "img", "instanceOfferingUuid": "small", "l3NetworkUuids": ["l3"]}


# One real node restart per step and side (two dozen): at the suite's 300 s a loaded
# machine (a restart takes 15 s at load 15) runs out of time with nothing wrong.
@pytest.mark.timeout(1200)
def test_crash_at_every_create_step(node: CrashNode) -> None:
    for i, (flow, when) in enumerate(steps(node, "vm-create")):
        name = f"c{i}-{flow}-{when}"
        acked = node.crash_during("vm-create", flow, when, "CreateVmInstance", name=name, **VM)
        (node.acked if acked else node.unacked).add(name)
        # an unacknowledged create was rolled back: no half-made VM survives the restart
        assert acked or node.vms(f"name={name}") == [], (flow, when)
        node.check(f"vm-create {flow} {when}")
        ok = f"ok{i}"
        node.call("CreateVmInstance", name=ok, **VM)  # the node works after the restart
        node.acked.add(ok)
    node.check("vm-create end")
    assert node.restarts >= len(steps(node, "vm-create"))


def _settle_to(node: CrashNode, name: str, want: str) -> None:
    state = node.vm_state(name)
    if state == want:
        return
    api = {"Running": "StartVmInstance", "Stopped": "StopVmInstance"}[want]
    node.call(api, uuid=name)
    assert node.vm_state(name) == want


@pytest.mark.parametrize(
    ("chain", "api", "precondition", "extra"),
    [
        ("vm-start", "StartVmInstance", "Stopped", {}),
        ("vm-stop", "StopVmInstance", "Running", {}),
        ("vm-migrate", "MigrateVm", "Running", {}),
        ("vm-destroy", "DestroyVmInstance", "Running", {}),
    ],
)
def test_crash_at_every_step(
    node: CrashNode, chain: str, api: str, precondition: str, extra: dict[str, Any]
) -> None:
    vm = f"vm-{chain}"
    node.call("CreateVmInstance", name=vm, **VM)
    node.acked.add(vm)
    crashed = 0
    plan = steps(node, chain, full=False)
    for flow, when in plan:
        _settle_to(node, vm, precondition)
        before = node.vms(f"name={vm}")[0]
        key = "vmInstanceUuid" if api == "MigrateVm" else "uuid"
        acked = node.crash_during(chain, flow, when, api, **{key: before["uuid"]}, **extra)
        crashed += not acked
        node.check(f"{chain} {flow} {when}")
        after = node.vms(f"name={vm}")[0]
        # the interrupted operation was rolled back: the VM is where it was
        if not acked:
            assert after["state"] == before["state"], (flow, when, after["state"])
            assert after["hostUuid"] == before["hostUuid"], (flow, when)
    assert crashed == len(plan)


def test_crash_after_volume_attach_before_the_reply(node: CrashNode) -> None:
    node.call("CreateVmInstance", name="vm-attach", **VM)
    node.acked.add("vm-attach")
    for i in range(2):
        vol = node.call("CreateDataVolume", name=f"data{i}", diskOfferingUuid="d10")["inventory"]
        pid = node.proc.pid()
        assert pid
        node.call("InjectCrash", api="AttachDataVolumeToVm")
        with pytest.raises(ZmnError) as err:
            node.call("AttachDataVolumeToVm", volumeUuid=vol["uuid"], vmInstanceUuid="vm-attach")
        assert err.value.code == "NODE.CONNECTION_CLOSED"
        node.wait_dead(pid)
        node.start()
        node.check(f"attach {i}")
        inv = node.call("QueryVolume", conditions=[f"uuid={vol['uuid']}"])["inventories"][0]
        # the attach had committed: it is attached once, with the next device id
        assert (inv["vmInstanceUuid"], inv["deviceId"]) == (
            node.vms("name=vm-attach")[0]["uuid"],
            i + 1,
        )
    node.call("StopVmInstance", uuid="vm-attach")
    node.call("StartVmInstance", uuid="vm-attach")
    node.check("attach end")


def _last_job(node: CrashNode, api: str) -> dict[str, Any]:
    rows = node.call(
        "QueryJob", conditions=[f"name={api}"], sortBy="createDate", sortDirection="desc", limit=1
    )["inventories"]
    assert rows, api
    job: dict[str, Any] = rows[0]
    return job


def _volume(node: CrashNode, uuid: str) -> dict[str, Any]:
    inv: dict[str, Any] = node.call("QueryVolume", conditions=[f"uuid={uuid}"])["inventories"][0]
    return {k: inv[k] for k in ("status", "primaryStorageUuid", "vmInstanceUuid", "deviceId")}


def _settled_job(node: CrashNode, api: str, chain: str, finished: bool, where: str) -> None:
    """The crashed call's job ended: Succeeded when recovery finished the chain, else
    Interrupted naming the chain (never Running: ``check`` holds that for every job)."""
    job = _last_job(node, api)
    if finished:
        assert job["state"] == "Succeeded" and job["result"]["inventory"], (where, job)
    else:
        assert job["state"] == "Interrupted", (where, job)
        assert job["error"]["details"]["chain"] == chain, (where, job["error"])


@pytest.mark.parametrize("chain", ["volume-attach", "volume-detach"])
def test_crash_at_every_volume_step(node: CrashNode, chain: str) -> None:
    vm = f"vm-{chain}"
    node.call("CreateVmInstance", name=vm, **VM)
    node.acked.add(vm)
    vm_uuid = node.vms(f"name={vm}")[0]["uuid"]
    flows: list[str] = node.call("GetFlowChains")["chains"][chain]
    plan = steps(node, chain, full=False, end_after=True)
    for i, (flow, when) in enumerate(plan):
        where = f"{chain} {flow} {when}"
        # a fresh NotInstantiated volume each time: its attach gives it storage
        vol = node.call("CreateDataVolume", name=f"{chain}-{i}", diskOfferingUuid="d10")
        uuid = vol["inventory"]["uuid"]
        if chain == "volume-attach":
            api, args = "AttachDataVolumeToVm", {"volumeUuid": uuid, "vmInstanceUuid": vm_uuid}
        else:
            node.call("AttachDataVolumeToVm", volumeUuid=uuid, vmInstanceUuid=vm_uuid)
            api, args = "DetachDataVolumeFromVm", {"uuid": uuid}
        before = _volume(node, uuid)
        acked = node.crash_during(chain, flow, when, api, **args)
        assert not acked, where
        node.check(where)
        finished = flow == flows[-1] and when == "after"
        after = _volume(node, uuid)
        if not finished:  # rolled back: exactly as before the call
            assert after == before, (where, before, after)
        elif chain == "volume-attach":  # finished: attached, with storage
            assert after["vmInstanceUuid"] == vm_uuid and after["status"] == "Ready", where
            assert after["deviceId"] and after["deviceId"] >= 1, where
        else:
            assert (after["vmInstanceUuid"], after["deviceId"]) == (None, None), where
        _settled_job(node, api, chain, finished, where)
        assert node.vm_state(vm) == "Running", where
    # the VM still works with what it has: stop, start, and a new volume attaches
    node.call("StopVmInstance", uuid=vm_uuid)
    node.call("StartVmInstance", uuid=vm_uuid)
    extra = node.call("CreateDataVolume", name=f"{chain}-end", diskOfferingUuid="d10")
    node.call("AttachDataVolumeToVm", volumeUuid=extra["inventory"]["uuid"], vmInstanceUuid=vm_uuid)
    node.check(f"{chain} end")
    assert node.restarts and len(plan) >= len(flows)


def test_crash_at_every_host_add_step(node: CrashNode) -> None:
    """An interrupted host add never stays Running: finished (host Connected, job
    Succeeded) when every step was done, otherwise rolled back (no host row)."""
    flows: list[str] = node.call("GetFlowChains")["chains"]["host-add"]
    for i, (flow, when) in enumerate(steps(node, "host-add", full=False, end_after=True)):
        where = f"host-add {flow} {when}"
        name = f"zz-add-{i}"  # sorts after h1..h3: the allocator never picks it first
        acked = node.crash_during(
            "host-add", flow, when, "AddSimulatorHost", name=name, managementIp=f"10.0.9.{i + 1}",
            clusterUuid="c1", cpuCapacity=4, memoryCapacity=8 << 30,
        )  # fmt: skip
        assert not acked, where
        finished = flow == flows[-1] and when == "after"
        deadline = time.monotonic() + 15
        while True:  # the tracker reconnects a finished host right after the start
            hosts = node.call("QueryHost", conditions=[f"name={name}"])["inventories"]
            if not hosts or hosts[0]["status"] != "Connecting" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if finished:
            assert [(h["status"], h["totalCpuCapacity"]) for h in hosts] == [("Connected", 4)], (
                where,
                hosts,
            )
        else:
            assert hosts == [], (where, hosts)
        _settled_job(node, "AddSimulatorHost", "host-add", finished, where)
        node.check(where)


KILL_SCRIPT = r"""
set -u
for i in $(seq 1 40); do
  ( if zcli -q vm create "k$i" imageUuid=img instanceOfferingUuid=small l3NetworkUuids=l3 \
        >/dev/null 2>"err$i.txt"; then echo "k$i" >> acked.txt; else echo "k$i" >> failed.txt; fi ) &
done
# kill -9 once a few creates are through and the others are in flight (a create costs the
# node a few ms, so look often: at 50 ms all 40 could be through before the kill)
for _ in $(seq 1 3000); do
  [ -f acked.txt ] && [ "$(wc -l < acked.txt)" -ge 3 ] && break
  sleep 0.01
done
kill -9 "$(cat "$ZMN_HOME/zmn.pid")"
wait
echo "acked=$(cat acked.txt 2>/dev/null | wc -l) failed=$(cat failed.txt 2>/dev/null | wc -l)"
"""


def test_kill_9_during_40_concurrent_creates(node: CrashNode, tmp_path: Path) -> None:
    env = {**node.proc.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    work = tmp_path / "work"
    work.mkdir()
    pid = node.proc.pid()
    assert pid
    # the first three VM starts on each host answer at once, every later one hangs for a
    # minute: the kill always lands with creates in flight, however slowly the 40 zcli
    # processes get going on a loaded machine (with 0.3 s per start all 40 could be through)
    for host in node.call("QueryHost", conditions=["state=Enabled"])["inventories"]:
        if host["name"].startswith("zz-add-"):  # added by a crashed call: never used again
            continue
        node.call("SimulatorInjectFailure", hostUuid=host["uuid"], operation="start",
                  fail=False, count=3)  # fmt: skip
        node.call("SimulatorInjectFailure", hostUuid=host["uuid"], operation="start",
                  latency=60, fail=False, count=40)  # fmt: skip
    run = subprocess.run(
        ["bash", "-c", KILL_SCRIPT], cwd=work, env=env, capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stdout + run.stderr
    node.wait_dead(pid)
    acked = (
        set((work / "acked.txt").read_text().split()) if (work / "acked.txt").exists() else set()
    )
    failed = (
        set((work / "failed.txt").read_text().split()) if (work / "failed.txt").exists() else set()
    )
    assert len(acked) + len(failed) == 40 and len(acked) >= 3, run.stdout
    assert failed, "every create finished before the kill: nothing was interrupted"
    node.acked |= acked
    node.unacked |= failed
    node.start()
    node.check("after kill -9")
    print(run.stdout.strip(), "surviving unacked:", sum(len(node.vms(f"name={n}")) for n in failed))


def test_zmn_replay_of_the_crashed_nodes_api_log(node: CrashNode, tmp_path: Path) -> None:
    """The API log survived every crash; ``zmn replay`` re-runs it on a fresh node."""
    log = node.proc.home / "api.log"
    assert log.exists()
    other = ZmnProcess(tmp_path / "replay-home")
    assert other.zmn("init").code == 0
    assert other.zmn("start").code == 0
    try:
        replayed = other.zmn("replay", str(log), timeout=300)
        assert replayed.code == 0, replayed.out + replayed.err
        assert "0 mismatch(es)" in replayed.out
        with Client(f"unix:{other.home / 'zmn.sock'}", timeout=60) as client:
            names = {v["name"] for v in client.call("QueryVmInstance", {})["inventories"]}
        assert node.acked <= names, node.acked - names
        print(replayed.out.strip().splitlines()[-1])
    finally:
        other.stop_quietly()
