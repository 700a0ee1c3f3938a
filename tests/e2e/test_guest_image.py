"""The guest image builder: the disk boots under QEMU (TCG) and reads a NoCloud seed.

One boot, QEMU started directly (no libvirt, user-mode network with SSH forwarded to a
loopback port): the kernel banner and the login prompt on the serial console, the seed's
hostname, the key from ``sshKeys`` lets root in over SSH (dropbear), the user-data script
ran once. The YAML reader the guest uses (busybox awk) is checked on its own against the
shapes cloud-init accepts. Needs root (the shared image cache) and qemu-system-x86_64.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import nocloud
from tests.conftest import need
from tests.support import guestimage
from tests.support.guest import fetch_debs

pytestmark = [pytest.mark.root, pytest.mark.slow]
YAML_AWK = guestimage.FILES / "rootfs" / "etc" / "zguest" / "yaml.awk"
SSH = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")  # fmt: skip


@pytest.fixture(scope="module")
def image() -> Path:
    need(os.geteuid() == 0, "needs root (the guest image cache under /var/cache)")
    need(shutil.which("qemu-img") is not None, "qemu-utils is not installed")
    return guestimage.build()


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need(os.geteuid() == 0, "needs root (the guest image cache under /var/cache)")
    (deb,) = fetch_debs(guestimage.CACHE, ("busybox-static",))
    out = tmp_path_factory.mktemp("bb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    return out / "bin" / "busybox"


def flatten(busybox: Path, text: str) -> list[str]:
    proc = subprocess.run([str(busybox), "awk", "-f", str(YAML_AWK)], input=text,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return proc.stdout.splitlines()


def test_the_guest_yaml_reader_flattens_cloud_config_shapes(busybox: Path) -> None:
    text = """#cloud-config
hostname: "web-1"
ssh_authorized_keys:
  - ssh-ed25519 AAAA one
users:
- name: root
  ssh_authorized_keys: [ssh-rsa BBBB two]
runcmd:
- echo hi > /root/a
- [sh, -c, "echo it's"]
write_files:
  - path: /x
    content: |
      runcmd: not a key
"""
    assert flatten(busybox, text) == [
        "hostname=web-1",
        "ssh_authorized_keys[]=ssh-ed25519 AAAA one",
        "users.name=root",
        "users.ssh_authorized_keys[]=ssh-rsa BBBB two",
        "runcmd[]=echo hi > /root/a",
        "runcmd[]='sh' '-c' 'echo it'\\''s'",
        "write_files.path=/x",
    ]


def test_the_guest_yaml_reader_reads_our_network_config(busybox: Path) -> None:
    seed = nocloud.Seed("iid-1", "h", nics=(
        nocloud.SeedNic("52:54:00:aa:bb:cc", "10.0.0.5", 24, "10.0.0.1", ("10.0.0.2",)),
        nocloud.SeedNic("52:54:00:aa:bb:cd"),
    ))  # fmt: skip
    assert flatten(busybox, nocloud.network_config(seed).decode()) == [
        "version=2",
        "ethernets.nic0.match.macaddress=52:54:00:aa:bb:cc",
        "ethernets.nic0.dhcp4=false",
        "ethernets.nic0.addresses[]=10.0.0.5/24",
        "ethernets.nic0.gateway4=10.0.0.1",
        "ethernets.nic0.nameservers.addresses[]=10.0.0.2",
        "ethernets.nic1.match.macaddress=52:54:00:aa:bb:cd",
        "ethernets.nic1.dhcp4=true",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def booted(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    need(shutil.which("ssh") is not None, "openssh-client is not installed")
    work = tmp_path_factory.mktemp("guest")
    disk = work / "root.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image),
                    str(disk)], check=True)  # fmt: skip
    key = work / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    seed = nocloud.parse_seed({
        "instanceId": "iid-e2e-1", "hostname": "seeded-1",
        "userData": base64.b64encode(b"#!/bin/sh\necho ran-once >> /root/script.log\n").decode(),
        "sshKeys": [key.with_suffix(".pub").read_text().strip()],
        "nics": [{"mac": "52:54:00:12:34:56"}],
    })  # fmt: skip
    nocloud.write_iso(str(work / "seed.iso"), seed)
    port = free_port()
    console = work / "console.log"
    proc = subprocess.Popen([
        "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "256", "-display", "none",
        "-drive", f"file={disk},if=virtio",
        "-drive", f"file={work / 'seed.iso'},media=cdrom,if=ide,index=2,readonly=on",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
        "-serial", f"file:{console}", "-monitor", "none",
    ])  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "login:" not in (text := console.read_text(errors="replace") if console.exists()
                               else ""):  # fmt: skip
            assert proc.poll() is None, text[-2000:]
            assert time.monotonic() < deadline, text[-2000:]
            time.sleep(0.5)
        yield {"console": text, "port": port, "key": key}
    finally:
        proc.kill()
        proc.wait()


def test_the_image_boots_to_a_login_prompt_on_the_serial_console(booted: dict) -> None:
    text = str(booted["console"])
    assert "SYSLINUX" in text  # the boot loader on the disk itself
    assert "Linux version" in text and "cloud-amd64" in text
    assert "ZGUEST-SEED iid-e2e-1 seeded-1" in text
    assert "seeded-1 login:" in text


def test_the_seed_key_logs_in_and_the_script_ran_once(booted: dict) -> None:
    out = subprocess.run(
        ["ssh", *SSH, "-i", str(booted["key"]), "-p", str(booted["port"]), "root@127.0.0.1",
         "hostname; cat /root/script.log; cat /var/lib/zguest/instance-id"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["seeded-1", "ran-once", "iid-e2e-1"]


def test_a_key_not_in_the_seed_is_refused(booted: dict, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    out = subprocess.run(
        ["ssh", *SSH, "-i", str(other), "-p", str(booted["port"]), "root@127.0.0.1", "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 255 and "Permission denied" in out.stderr
