"""A real zagent HTTP server on 127.0.0.1 in a thread, with the fake driver.

Signed requests work; missing, forged, stale and replayed ones get 401 and reach nothing
(the fake driver records every call and the recording executor every command); results of
long commands and lifecycle events are pushed signed to a callback receiver that verifies
them with the same scheme.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent.drivers.fake import FakeDriver
from agent.network.executor import RecordingExecutor
from agent.testing import TEST_SECRET, AgentClient, CallbackReceiver, running_agent
from zmn.api import agentauth

VM = "1" * 32


def vm_spec(uuid: str = VM, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "uuid": uuid,
        "name": "web-1",
        "cpuNum": 1,
        "memorySize": 64 << 20,
        "disks": [{"path": "/var/lib/zstack/v.qcow2"}],
        "nics": [{"mac": "52:54:00:00:00:01", "bridge": "br0"}],
    }
    spec.update(over)
    return spec


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver()


@pytest.fixture
def executor() -> RecordingExecutor:
    return RecordingExecutor(outputs={("ip", "-j", "-d", "link", "show"): '[{"ifname": "eth1"}]'})


@pytest.fixture
def receiver():
    with CallbackReceiver(TEST_SECRET) as rx:
        yield rx


@pytest.fixture
def agent(tmp_path: Path, driver, executor, receiver):
    with running_agent(tmp_path, driver=driver, executor=executor, callback_url=receiver.url) as (
        server,
        client,
    ):
        yield server, client


@pytest.fixture
def client(agent) -> AgentClient:
    return agent[1]


# --- commands --------------------------------------------------------------------------------


def test_ping_and_facts(client):
    status, body = client.get("/v1/ping?echo=abc-123")
    assert status == 200
    assert body["echo"] == "abc-123" and body["hostUuid"] == "a" * 32 and body["version"]
    status, facts = client.get("/v1/host/facts")
    assert status == 200
    assert facts["cpuNum"] == 8 and facts["hostname"] == "fake-host"
    assert facts["capacity"]["availableMemory"] == facts["capacity"]["totalMemory"]
    assert isinstance(facts["kvmDevice"], bool)


def test_vm_lifecycle_synchronously(client, driver):
    status, started = client.post("/v1/vm/start", {"vm": vm_spec()})
    assert status == 200 and started["uuid"] == VM and started["state"] == "Running"
    assert 0 <= started["hypervisorSeconds"] < 10  # define + start in the driver
    assert client.get("/v1/vm/list")[1]["vms"] == [
        {"name": VM, "uuid": VM, "title": "web-1", "state": "Running"}
    ]
    assert client.get("/v1/host/facts")[1]["capacity"]["usedMemory"] == 64 << 20
    assert client.post("/v1/vm/pause", {"uuid": VM})[1]["state"] == "Paused"
    assert client.post("/v1/vm/resume", {"uuid": VM})[1]["state"] == "Running"
    assert client.post("/v1/vm/reboot", {"uuid": VM})[1]["state"] == "Running"
    assert client.post("/v1/vm/stop", {"uuid": VM}) == (
        200,
        {"uuid": VM, "state": "Stopped", "forced": False},
    )
    disk = {"path": "/var/lib/zstack/data.qcow2", "deviceId": 1}
    assert client.post("/v1/vm/attach-disk", {"uuid": VM, "disk": disk})[1]["target"] == "vdb"
    nic = {"mac": "52:54:00:00:00:02", "bridge": "br1"}
    assert client.post("/v1/vm/attach-nic", {"uuid": VM, "nic": nic})[0] == 200
    xml = driver.xml(VM)
    assert "/var/lib/zstack/data.qcow2" in xml and "52:54:00:00:00:02" in xml
    assert client.post("/v1/vm/detach-disk", {"uuid": VM, "disk": disk})[0] == 200
    assert client.post("/v1/vm/detach-nic", {"uuid": VM, "mac": "52:54:00:00:00:02"})[0] == 200
    assert "data.qcow2" not in driver.xml(VM) and "52:54:00:00:00:02" not in driver.xml(VM)
    assert client.post("/v1/vm/destroy", {"uuid": VM}) == (200, {"uuid": VM, "state": "Destroyed"})
    assert client.get("/v1/vm/list")[1]["vms"] == []
    assert client.post("/v1/vm/destroy", {"uuid": VM})[0] == 200  # idempotent


def test_forced_stop(client, driver):
    client.post("/v1/vm/start", {"vm": vm_spec()})
    assert client.post("/v1/vm/stop", {"uuid": VM, "force": True})[1]["forced"] is True
    assert ("destroy", VM) in driver.calls


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/vm/start", {"vm": {"uuid": "x"}}, 400, "ARG.INVALID"),
        ("POST", "/v1/vm/pause", {"uuid": "2" * 32}, 404, "VM_INSTANCE.NOT_FOUND"),
        ("POST", "/v1/vm/nope", {}, 404, "AGENT.NO_SUCH_COMMAND"),
        ("GET", "/v1/vm/start", None, 405, "AGENT.NO_SUCH_METHOD"),
        ("GET", "/v1/task/unknown", None, 404, "AGENT_TASK.NOT_FOUND"),
        ("POST", "/v1/network/bridge", {"bridgeName": "br 0"}, 400, "ARG.INVALID"),
    ],
)
def test_errors_map_to_statuses(client, method, path, body, status, code):
    got_status, got = client.call(method, path, body)
    assert got_status == status
    assert got["error"]["code"] == code


def test_invalid_state_is_409(client):
    client.post("/v1/vm/start", {"vm": vm_spec()})
    client.post("/v1/vm/stop", {"uuid": VM})
    status, body = client.post("/v1/vm/pause", {"uuid": VM})
    assert status == 409 and body["error"]["kind"] == "InvalidState"


def test_body_must_be_a_json_object(client):
    for raw in (b"[1, 2]", b"{not json"):
        status, body = client.raw(
            "POST", "/v1/vm/stop", raw, client.signed_headers("POST", "/v1/vm/stop", raw)
        )
        assert status == 400 and body["error"]["code"] == "AGENT.BAD_BODY"


def test_body_too_large_is_refused_before_reading(tmp_path):
    with running_agent(tmp_path, max_body=1024) as (_server, client):
        status, body = client.post("/v1/vm/start", {"vm": vm_spec(description="x" * 2000)})
    assert status == 413 and body["error"]["code"] == "AGENT.BODY_TOO_LARGE"


def test_network_commands_run_through_the_executor(client, executor):
    status, body = client.post(
        "/v1/network/bridge", {"bridgeName": "br_eth1", "physicalInterface": "eth1"}
    )
    assert status == 200 and body == {"bridgeName": "br_eth1", "port": "eth1", "changed": True}
    assert ["ip", "link", "add", "name", "br_eth1", "type", "bridge"] in executor.commands
    l3 = {
        "l3Uuid": "3" * 32,
        "bridgeName": "br_eth1",
        "cidr": "10.0.0.0/24",
        "serverIp": "10.0.0.2",
        "hosts": [{"mac": "52:54:00:00:00:01", "ip": "10.0.0.10", "hostname": "web-1"}],
    }
    status, body = client.post("/v1/network/dhcp", l3)
    assert status == 200 and body["action"] == "started"
    assert any(p.endswith("/hosts") and "10.0.0.10" in c for p, c in executor.files.items())
    fw = {"nics": [{"device": "vnic1.0", "ip": "10.0.0.10", "rules": []}], "eips": []}
    assert client.post("/v1/network/firewall", fw) == (200, {"nics": 1, "rules": 0, "eips": 0})
    assert json.loads(executor.stdins[-1])["nftables"]


# --- batches ---------------------------------------------------------------------------------


def step(path: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"path": path, "body": body}


def test_a_batch_runs_its_steps_in_order_and_hands_a_long_one_to_the_task_runner(
    client, executor, receiver
):
    bridge = {"bridgeName": "br_eth1", "physicalInterface": "eth1"}
    start = {"vm": vm_spec(nics=[{"mac": "52:54:00:00:00:01", "bridge": "br_eth1"}]),
             "callback": True, "taskId": "job-7"}  # fmt: skip
    status, body = client.post(
        "/v1/batch", {"steps": [step("/v1/network/bridge", bridge), step("/v1/vm/start", start)]}
    )
    assert status == 200
    assert body["results"] == [
        {"bridgeName": "br_eth1", "port": "eth1", "changed": True},
        {"taskId": "job-7"},
    ]
    assert ["ip", "link", "add", "name", "br_eth1", "type", "bridge"] in executor.commands
    report = receiver.wait_for(lambda r: r.get("taskId") == "job-7")
    assert report["success"] is True and report["result"]["state"] == "Running"


def test_the_first_failing_step_stops_a_batch_and_names_itself(client, driver):
    steps = [
        step("/v1/vm/start", {"vm": vm_spec()}),
        step("/v1/vm/reboot", {"uuid": "9" * 32}),  # no such VM
        step("/v1/vm/destroy", {"uuid": VM}),  # never runs
    ]
    status, body = client.post("/v1/batch", {"steps": steps})
    assert status == 404 and body["error"]["code"] == "VM_INSTANCE.NOT_FOUND"
    assert body["error"]["details"]["batchStep"] == 1
    assert body["error"]["details"]["path"] == "/v1/vm/reboot"
    assert [r["state"] for r in body["results"]] == ["Running"]
    assert driver.domains[VM].state == "Running"


@pytest.mark.parametrize(
    "steps",
    [
        [],
        [step("/v1/vm/start", {"vm": vm_spec()})] * 65,
        [step("/v1/vm/start", {"vm": vm_spec()}), step("/v1/no/such/command", {})],
        [step("/v1/vm/start", {"vm": vm_spec()}), step("/v1/batch", {"steps": []})],
        [step("/v1/vm/start", {"vm": vm_spec()}), step("/v1/vm/console", {"uuid": VM})],
        [step("/v1/vm/start", {"vm": vm_spec()}), {"path": "/v1/vm/destroy", "body": []}],
        [step("/v1/vm/start", {"vm": vm_spec()}), "/v1/vm/destroy"],
    ],
    ids=["empty", "too-long", "unknown", "nested", "console", "body-not-object", "not-object"],
)
def test_a_bad_batch_is_refused_before_any_step_runs(client, driver, steps):
    status, body = client.post("/v1/batch", {"steps": steps})
    assert status in (400, 404), body
    assert driver.calls == [] and driver.domains == {}


# --- authentication --------------------------------------------------------------------------


def _nothing_happened(driver: FakeDriver, executor: RecordingExecutor) -> None:
    assert driver.calls == [] and driver.domains == {}
    assert executor.commands == [] and executor.files == {}


def test_unsigned_requests_are_refused_and_change_nothing(client, driver, executor):
    data = json.dumps({"vm": vm_spec()}).encode()
    status, body = client.raw("POST", "/v1/vm/start", data, {"Content-Type": "application/json"})
    assert status == 401 and body["error"]["code"] == "AGENT.AUTH_MISSING"
    status, _ = client.raw("POST", "/v1/network/bridge", b"{}", {})
    assert status == 401
    _nothing_happened(driver, executor)


def test_forged_requests_are_refused_and_change_nothing(client, driver, executor):
    good = json.dumps({"vm": vm_spec()}).encode()
    headers = client.signed_headers("POST", "/v1/vm/start", good)
    evil = json.dumps({"vm": vm_spec(name="evil")}).encode()
    assert client.raw("POST", "/v1/vm/start", evil, headers)[0] == 401  # body swapped
    wrong_key = AgentClient(client.base_url, b"not-the-secret-but-long-enough!!")
    status, body = wrong_key.post("/v1/vm/start", {"vm": vm_spec()})
    assert status == 401 and body["error"]["code"] == "AGENT.AUTH_FORGED"
    fw = json.dumps({"nics": []}).encode()
    headers = client.signed_headers("POST", "/v1/vm/start", fw)  # signed for another path
    assert client.raw("POST", "/v1/network/firewall", fw, headers)[0] == 401
    _nothing_happened(driver, executor)


def test_stale_requests_are_refused_and_change_nothing(client, driver, executor):
    for offset in (-400, 400):
        status, body = client.call(
            "POST", "/v1/vm/start", {"vm": vm_spec()}, timestamp=int(time.time()) + offset
        )
        assert status == 401 and body["error"]["code"] == "AGENT.AUTH_STALE"
    _nothing_happened(driver, executor)


def test_replayed_requests_are_refused_and_change_nothing(client, driver):
    data = json.dumps({"vm": vm_spec()}).encode()
    headers = client.signed_headers("POST", "/v1/vm/start", data)
    assert client.raw("POST", "/v1/vm/start", data, headers)[0] == 200
    client.post("/v1/vm/destroy", {"uuid": VM})
    calls = list(driver.calls)
    status, body = client.raw("POST", "/v1/vm/start", data, headers)
    assert status == 401 and body["error"]["code"] == "AGENT.AUTH_REPLAYED"
    assert driver.calls == calls and driver.domains == {}


def test_clock_skew_window_uses_the_agents_clock(tmp_path):
    with running_agent(tmp_path, clock=lambda: time.time() + 1000) as (_s, client):
        assert client.get("/v1/ping")[0] == 401
        assert client.call("GET", "/v1/ping", timestamp=int(time.time()) + 1000)[0] == 200


# --- callbacks and events --------------------------------------------------------------------


def test_long_command_with_callback_answers_at_once_and_reports_signed(client, receiver):
    status, body = client.post(
        "/v1/vm/start", {"vm": vm_spec(), "callback": True, "taskId": "job-42"}
    )
    assert (status, body) == (202, {"taskId": "job-42"})
    report = receiver.wait_for(lambda r: r["type"] == "task.result")
    assert report["taskId"] == "job-42" and report["command"] == "/v1/vm/start"
    assert report["success"] is True
    result = report["result"]
    assert {k: result[k] for k in ("uuid", "state")} == {"uuid": VM, "state": "Running"}
    assert 0 <= result["hypervisorSeconds"] < 10
    assert report["hostUuid"] == "a" * 32
    assert client.get("/v1/task/job-42")[1]["status"] == "done"
    assert client.post("/v1/vm/start", {"vm": vm_spec(), "callback": True, "taskId": "job-42"})[
        0
    ] == 409  # fmt: skip
    assert receiver.refused == []


def test_failed_task_reports_the_error(client, receiver):
    status, body = client.post("/v1/vm/reboot", {"uuid": "9" * 32, "callback": True})
    assert status == 202 and len(body["taskId"]) == 32
    report = receiver.wait_for(lambda r: r.get("taskId") == body["taskId"])
    assert report["success"] is False
    assert report["error"]["code"] == "VM_INSTANCE.NOT_FOUND"


def test_a_bad_long_command_is_refused_before_it_becomes_a_task(client, driver, receiver):
    status, body = client.post("/v1/vm/start", {"vm": vm_spec(cpuNum=0), "callback": True})
    assert status == 400 and body["error"]["details"]["field"] == "vm.cpuNum"
    status, body = client.post("/v1/vm/stop", {"uuid": "nope", "callback": True})
    assert status == 400
    assert driver.calls == [] and receiver.reports == []


def test_short_commands_ignore_the_callback_flag(client):
    assert client.post("/v1/vm/destroy", {"uuid": VM, "callback": True})[0] == 200


def test_lifecycle_events_are_pushed_in_order(client, driver, receiver):
    client.post("/v1/vm/start", {"vm": vm_spec()})
    driver.crash(VM)
    crashed = receiver.wait_for(lambda r: r.get("event") == "crashed")
    assert crashed["type"] == "vm.lifecycle" and crashed["vmUuid"] == VM
    assert crashed["state"] == "Stopped"
    events = [r["event"] for r in receiver.reports if r["type"] == "vm.lifecycle"]
    assert events == ["defined", "started", "crashed"]
    seqs = [r["seq"] for r in receiver.reports]
    assert seqs == sorted(seqs)


def test_reports_are_verifiable_and_a_wrong_secret_is_refused_by_the_receiver(tmp_path):
    with CallbackReceiver(b"the-node-has-another-secret-here!") as rx:
        with running_agent(tmp_path, callback_url=rx.url) as (server, client):
            server.reporter._attempts = 1  # no retries for this test
            client.post("/v1/vm/start", {"vm": vm_spec()})
            deadline = time.monotonic() + 10
            while not rx.refused and time.monotonic() < deadline:
                time.sleep(0.05)
        assert rx.reports == []
        assert {code for code, _ in rx.refused} == {"AGENT.AUTH_FORGED"}


def test_reporter_retries_until_the_node_answers(tmp_path):
    from agent.reporter import Reporter

    rx = CallbackReceiver(TEST_SECRET)
    sleeps: list[float] = []
    rep = Reporter(rx.url, TEST_SECRET, "b" * 32, attempts=3, backoff=0.01, sleep=sleeps.append)
    rx._httpd.server_close()  # the node is down: connection refused
    rep.start()
    rep.submit("vm.lifecycle", {"event": "started"})
    rep.stop()
    assert rep.dropped == 1 and rep.sent == 0 and sleeps == [0.01, 0.02]


# --- TLS -------------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_https_with_a_configured_certificate(tmp_path):
    import shutil

    from tests.conftest import need

    need(shutil.which("openssl") is not None, "openssl is not installed")
    cert, key = _self_signed(tmp_path)
    with running_agent(tmp_path, tls_cert=cert, tls_key=key) as (_server, client):
        assert client.base_url.startswith("https://")
        client.context = ssl.create_default_context(cafile=cert)
        assert client.get("/v1/ping")[0] == 200
        client.context = ssl.create_default_context()  # untrusted CA: no connection
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            client.get("/v1/ping")


def test_signature_covers_the_query_string(client):
    headers = client.signed_headers("GET", "/v1/ping?echo=a", b"")
    assert client.raw("GET", "/v1/ping?echo=b", b"", headers)[0] == 401
    assert agentauth.HEADER_SIGNATURE in headers
