"""zagent's configuration, secret file handling, CLI helpers and import boundary."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.config import AgentConfig, host_uuid, read_secret, write_secret
from agent.drivers.features import host_is_virtual
from agent.main import main
from zmn.api.errors import InvalidArgument


def test_defaults_and_yaml_loading(tmp_path):
    path = tmp_path / "zagent.yaml"
    path.write_text(
        "listen: 10.0.0.5\nport: 7171\nlibvirt_uri: test:///default\n"
        "callback_url: https://node:8181/agent/v1/report\nkvm: 'no'\n"
        f"host_uuid: {'AB' * 16}\n"
    )
    cfg = AgentConfig.load(str(path))
    assert (cfg.listen, cfg.port, cfg.libvirt_uri) == ("10.0.0.5", 7171, "test:///default")
    assert cfg.kvm_override is False and cfg.host_uuid == "ab" * 16
    assert AgentConfig().libvirt_uri == "qemu:///system" and AgentConfig().kvm_override is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"lisen": "0.0.0.0"}, "unknown config keys: lisen"),
        ({"port": 70000}, "port"),
        ({"driver": "xen"}, "driver"),
        ({"callback_url": "ftp://node/x"}, "callback_url"),
        ({"tls_cert": "/etc/c.pem"}, "tls_key"),
        ({"host_uuid": "not-a-uuid"}, "host_uuid"),
    ],
)
def test_bad_config_is_refused(data, match):
    with pytest.raises(InvalidArgument, match=match):
        AgentConfig.from_mapping(data)


def test_secret_file_must_be_private_and_long(tmp_path):
    path = tmp_path / "secret"
    write_secret(str(path), "x" * 64)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert read_secret(str(path)) == b"x" * 64
    with pytest.raises(FileExistsError):
        write_secret(str(path), "y" * 64)
    path.chmod(0o640)
    with pytest.raises(InvalidArgument, match="readable by others"):
        read_secret(str(path))
    short = tmp_path / "short"
    write_secret(str(short), "abc")
    with pytest.raises(InvalidArgument, match="shorter than 32"):
        read_secret(str(short))


def test_host_uuid_is_made_once_and_kept(tmp_path):
    cfg = AgentConfig(state_dir=str(tmp_path / "state"))
    first = host_uuid(cfg)
    assert len(first) == 32 and host_uuid(cfg) == first
    assert host_uuid(AgentConfig(host_uuid="c" * 32)) == "c" * 32


def test_cli_gen_secret_and_version(tmp_path, capsys):
    path = tmp_path / "etc" / "secret"
    assert main(["gen-secret", str(path)]) == 0
    assert len(read_secret(str(path))) == 64
    assert main(["gen-secret", str(path)]) == 2
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip().endswith("0.1.0")


def test_cli_bad_config_exits_2(tmp_path, capsys):
    path = tmp_path / "zagent.yaml"
    path.write_text("bogus: 1\n")
    assert main(["run", "-c", str(path)]) == 2
    assert "unknown config keys" in capsys.readouterr().err
    assert main(["check", "-c", str(tmp_path / "missing.yaml")]) == 2


def test_agent_imports_only_the_api_contract():
    """agent/ may import zmn.api and zmn.client, never the node's internals (typer is its
    command tree's, shipped to hosts as pure-Python wheels)."""
    code = (
        "import sys, agent.main, agent.server, agent.testing, agent.drivers.fake, "
        "agent.network.bridge, agent.network.dhcp, agent.network.firewall\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('zmn.core', 'zmn.services', "
        "'zmn.server', 'zmn.daemon', 'sqlalchemy', 'textual', 'prompt_toolkit')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert out.stdout.strip() == ""


def test_agent_sources_name_no_node_internals():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "agent"
    pattern = re.compile(r"^\s*(?:from|import)\s+(zmn(?:\.\w+)*)", re.M)
    used = {m for f in root.rglob("*.py") for m in pattern.findall(f.read_text())}
    assert used and all(m.startswith(("zmn.api", "zmn.client")) for m in used), used


def test_a_host_that_is_itself_a_vm_is_told_by_its_cpu_flags(tmp_path):
    """auto picks TCG on a virtual host: nested KVM passes the vCPU probe, then pauses guests."""
    virtual, metal = tmp_path / "virtual", tmp_path / "metal"
    virtual.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor lahf_lm\n\n")
    metal.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 vmx lahf_lm\n\n")
    assert host_is_virtual(str(virtual)) is True
    assert host_is_virtual(str(metal)) is False
    assert host_is_virtual(str(tmp_path / "absent")) is False
