"""The ``zagent`` console script as a real process: config file, secret, signals, logs."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.config import write_secret
from agent.testing import AgentClient
from tests.conftest import need

ZAGENT = str(Path(sys.executable).parent / "zagent")
SECRET = "f" * 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, **extra: str) -> Path:
    write_secret(str(tmp_path / "secret"), SECRET)
    lines = {
        "listen": "127.0.0.1",
        "port": str(_free_port()),
        "secret_file": str(tmp_path / "secret"),
        "state_dir": str(tmp_path / "state"),
        "driver": "fake",
        "network": "dry-run",
        **extra,
    }
    path = tmp_path / "zagent.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return path


def _wait_ready(client: AgentClient, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if client.get("/v1/ping")[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("zagent did not come up")


def test_zagent_runs_serves_signed_requests_and_stops_on_sigterm(tmp_path):
    cfg = _config(tmp_path)
    port = next(
        int(line.split(": ")[1]) for line in cfg.read_text().splitlines() if line.startswith("port")
    )
    proc = subprocess.Popen(
        [ZAGENT, "run", "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        client = AgentClient(f"http://127.0.0.1:{port}", SECRET.encode())
        _wait_ready(client, proc)
        status, body = client.get("/v1/ping?echo=hi")
        assert status == 200 and body["echo"] == "hi"
        host_uuid = (tmp_path / "state" / "host-uuid").read_text().strip()
        assert body["hostUuid"] == host_uuid
        assert AgentClient(client.base_url, b"x" * 40).get("/v1/ping")[0] == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "zagent serving on 127.0.0.1" in err
    assert "refused GET /v1/ping: AGENT.AUTH_FORGED" in err


def test_zagent_refuses_a_world_readable_secret(tmp_path):
    cfg = _config(tmp_path)
    (tmp_path / "secret").chmod(0o644)
    res = subprocess.run([ZAGENT, "run", "-c", str(cfg)], capture_output=True, text=True,
                         timeout=30, check=False)  # fmt: skip
    assert res.returncode == 2 and "chmod 600" in res.stderr


@pytest.mark.libvirt
def test_zagent_check_against_libvirt_test_driver(tmp_path):
    try:
        import libvirt  # noqa: F401
    except ImportError:
        need(False, "libvirt-python is not installed")
    cfg = _config(tmp_path, driver="libvirt", libvirt_uri="test:///default")
    res = subprocess.run([ZAGENT, "check", "-c", str(cfg)], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok: TEST ") and "domain type test" in res.stdout
