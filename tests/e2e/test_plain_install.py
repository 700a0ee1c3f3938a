"""A node installed with a plain ``pip install`` adds a KVM host that ends Connected.

The node runs from a fresh virtualenv holding the project and its declared dependencies only
(no libvirt-python; pip runs with pkg-config pointed nowhere, so nothing could have found
libvirt's headers). The host is a namespaced machine with sshd whose libvirtd is configured
but not running: the playbook checks the host's packages with its package manager, starts
libvirtd, and installs the agent's single pure-Python wheel into a virtualenv that sees the
distro's ``python3-libvirt`` (its command tree's typer and what that needs go along as
pure-Python wheels written back from the node's installed files).

The project's wheels are built once per test run (``pip wheel`` into a session directory,
from pip's cache and configured index) and installed with ``--no-index``.

Needs root, openssh-server, libvirt/QEMU and the distro's python3-libvirt
(scripts/system-deps.sh installs them): skipped with the reason outside CI, failed under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.datacenter import Datacenter, NsHost, missing_libvirt, missing_tools
from tests.support.proc import ZmnProcess

pytestmark = [pytest.mark.root, pytest.mark.sshd, pytest.mark.libvirt, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NO_HEADERS = {"PKG_CONFIG_PATH": "/nonexistent", "PKG_CONFIG_LIBDIR": "/nonexistent"}


def _pip(python: Path, *args: str, timeout: float = 600) -> None:
    env = {**os.environ, **NO_HEADERS, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(
        [str(python), "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = tmp_path_factory.getbasetemp() / "project-wheels"  # once per test run
    if not any(wheels.glob("zstack_terminal-*.whl")):
        # from a copy, so setuptools' build/ never lands in (or is reused from) the source tree
        src = tmp_path_factory.mktemp("src") / "project"
        junk = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")
        shutil.copytree(ROOT, src, ignore=junk)
        _pip(Path(sys.executable), "wheel", "--quiet", "--wheel-dir", str(wheels), str(src))
    venv = tmp_path_factory.mktemp("plain") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    _pip(venv / "bin" / "python", "install", "--quiet", "--no-index", "--find-links",
         str(wheels), "zstack-terminal")  # fmt: skip
    return venv


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsHost]:
    need(os.geteuid() == 0, "needs root (network and mount namespaces)")
    need(not missing_tools(), f"missing: {', '.join(missing_tools())}")
    need(not missing_libvirt(), f"missing: {', '.join(missing_libvirt())}")
    probe = subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], check=False)
    need(probe.returncode == 0, "the distro's python3-libvirt is not installed")
    with Datacenter(tmp_path_factory.mktemp("dc")) as center:
        h = center.add_host("plain1")
        h.start_sshd()
        h.configure_libvirt()  # the playbook starts libvirtd
        yield h


def test_a_plain_pip_install_adds_a_kvm_host_that_ends_connected(
    plain_venv: Path, host: NsHost, tmp_path: Path
) -> None:
    py = plain_venv / "bin" / "python"
    # nothing compiled for libvirt on the node: the binding is simply not there
    assert subprocess.run([str(py), "-c", "import libvirt"], capture_output=True).returncode != 0
    assert (
        subprocess.run(
            [str(py), "-c", "import zmn.services.kvm.service, playbooks"], capture_output=True
        ).returncode
        == 0
    )
    assert host.run(["virsh", "-c", "qemu:///system", "version"], check=False).returncode != 0
    node = ZmnProcess(tmp_path / "home", bin_dir=plain_venv / "bin")
    try:
        assert node.zmn("init").code == 0
        conf = node.home / "zmn.conf"
        conf.write_text(conf.read_text() + f"agent.callback.listen={host.dc.gateway}:0\n")
        started = node.zmn("start")
        assert started.code == 0, started.err + started.out
        for args in (
            ("CreateZone", "name=z1"),
            ("CreateCluster", "name=kvm", "zoneUuid=z1", "hypervisorType=KVM"),
        ):
            made = node.zcli("api", *args)
            assert made.code == 0, made.err
        added = node.zcli(
            "-o", "json", "api", "AddKvmHost", "name=plain1", f"managementIp={host.ip}",
            "clusterUuid=kvm", f"sshPrivateKey={host.dc.client_key}", timeout=600,
        )  # fmt: skip
        assert added.code == 0, added.err + node.zmn("logs", "-n", "40").out
        deadline = time.monotonic() + 60
        while True:
            got = node.zcli("-o", "json", "api", "QueryHost", "name=plain1")
            status = got.json()[0]["status"]
            if status == "Connected" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == "Connected"
    finally:
        node.stop_quietly()
    # libvirtd was started by the playbook; the agent's venv sees the distro's binding
    assert host.run(["virsh", "-c", "qemu:///system", "version"], check=False).returncode == 0
    cfg = host.read("/opt/zagent/venv/pyvenv.cfg")
    assert "include-system-site-packages = true" in cfg
    where = host.run(
        ["/opt/zagent/venv/bin/python", "-c", "import libvirt; print(libvirt.__file__)"]
    ).stdout.strip()
    assert where.startswith("/usr/lib/python3/dist-packages/"), where
    shipped = host.run(["ls", "/opt/zagent/wheelhouse"]).stdout.split()
    assert all(w.endswith("-py3-none-any.whl") for w in shipped), shipped
    assert {w.split("-")[0] for w in shipped} >= {"zagent", "typer", "rich"}
    assert host.run(["/opt/zagent/venv/bin/zagent", "--version"]).returncode == 0
