"""A tiny guest for DHCP checks: Debian's cloud kernel and a busybox initrd that runs udhcpc.

The kernel (``linux-image-cloud-amd64``) and ``busybox-static`` come from Debian packages,
unpacked (never installed) into a cache directory (``$ZMN_GUEST_CACHE``, default
``/var/cache/zmn-test-guest``); when the packages are not there yet they are fetched once
with ``apt-get download``. The initrd loads the virtio network modules, asks for a lease on
``eth0``, prints ``ZGUEST-LEASED <ip>`` on the serial console and powers off. Under TCG it
boots and leases in about 10 s.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("ZMN_GUEST_CACHE", "/var/cache/zmn-test-guest"))
MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
           "virtio_pci", "failover", "net_failover", "virtio_net")  # fmt: skip
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for pass in 1 2 3; do for m in {modules}; do insmod /lib/$m.ko 2>/dev/null; done; done
ip link set eth0 up
echo ZGUEST-INIT
udhcpc -i eth0 -n -q -t 30 -T 2 -s /bin/leased
echo ZGUEST-DONE
poweroff -f
"""
LEASED = '#!/bin/sh\n[ "$1" = bound ] && echo "ZGUEST-LEASED $ip"\nexit 0\n'


@dataclass(frozen=True)
class Guest:
    kernel: Path
    initrd: Path


def _run(*argv: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, cwd=cwd, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")


def kernel_package() -> str:
    """The versioned package ``linux-image-cloud-amd64`` depends on (the one holding vmlinuz)."""
    out = subprocess.run(
        ["apt-cache", "depends", "linux-image-cloud-amd64"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return next(
        line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line.strip().startswith("Depends:") and "linux-image-" in line
    )


def fetch_debs(cache: Path, packages: tuple[str, ...]) -> list[Path]:
    """The ``.deb`` of each package in ``cache/debs``, fetched with ``apt-get download`` once.

    ``linux-image-cloud-amd64`` stands for the versioned kernel package it depends on.
    """
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found: list[Path] = []
    for name in packages:
        kernel = name == "linux-image-cloud-amd64"
        pattern = "linux-image-*-cloud-amd64_*.deb" if kernel else f"{name}_*.deb"
        if not glob.glob(str(debs / pattern)):
            _run("apt-get", "download", kernel_package() if kernel else name, cwd=debs)
        found.append(Path(sorted(glob.glob(str(debs / pattern)))[-1]))
    return found


def _fetch(cache: Path) -> None:
    fetch_debs(cache, ("linux-image-cloud-amd64", "busybox-static"))


def _cpio_newc(root: Path) -> bytes:
    """A gzipped newc archive of ``root`` (what ``cpio -H newc`` writes)."""
    out = io.BytesIO()
    ino = 1

    def entry(name: str, mode: int, data: bytes) -> None:
        nonlocal ino
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        out.write(b"\0" * ((4 - (110 + len(raw)) % 4) % 4) + data)
        out.write(b"\0" * ((4 - len(data) % 4) % 4))
        ino += 1

    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.stat()
        entry(rel, st.st_mode, b"" if path.is_dir() else path.read_bytes())
    entry("TRAILER!!!", 0, b"")
    return gzip.compress(out.getvalue(), compresslevel=1)


def build(cache: Path = CACHE) -> Guest:
    """Kernel and initrd in ``cache`` (made once); raises when the packages are unavailable."""
    guest = Guest(cache / "vmlinuz", cache / "initrd.gz")
    if guest.kernel.exists() and guest.initrd.exists():
        return guest
    _fetch(cache)
    tree = cache / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    for deb in (*glob.glob(str(cache / "debs" / "linux-image-*.deb")),
                *glob.glob(str(cache / "debs" / "busybox-static_*.deb"))):  # fmt: skip
        _run("dpkg-deb", "-x", deb, str(tree))
    kernel = sorted(glob.glob(str(tree / "boot" / "vmlinuz-*")))[-1]
    version = Path(kernel).name.removeprefix("vmlinuz-")
    rd = cache / "rd"
    shutil.rmtree(rd, ignore_errors=True)
    for d in ("bin", "proc", "sys", "dev", "lib"):
        (rd / d).mkdir(parents=True)
    shutil.copy(tree / "bin" / "busybox", rd / "bin" / "busybox")
    for m in MODULES:
        found = glob.glob(
            str(tree / "lib" / "modules" / version / "**" / f"{m}.ko"), recursive=True
        )
        shutil.copy(found[0], rd / "lib" / f"{m}.ko")
    (rd / "init").write_text(INIT.format(modules=" ".join(MODULES)))
    (rd / "bin" / "leased").write_text(LEASED)
    for script in (rd / "init", rd / "bin" / "leased"):
        script.chmod(0o755)
    (rd / "bin" / "busybox").chmod(0o755)
    guest.initrd.write_bytes(_cpio_newc(rd))
    shutil.copy(kernel, guest.kernel)
    shutil.rmtree(tree, ignore_errors=True)
    return guest


def domain_xml(name: str, guest: Guest, mac: str, bridge: str, console: Path) -> str:
    """A TCG domain booting the guest directly, its NIC on ``bridge`` with ``mac``."""
    dom = ET.Element("domain", type="qemu")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "memory", unit="MiB").text = "128"
    ET.SubElement(dom, "vcpu").text = "1"
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64").text = "hvm"
    ET.SubElement(os_el, "kernel").text = str(guest.kernel)
    ET.SubElement(os_el, "initrd").text = str(guest.initrd)
    ET.SubElement(os_el, "cmdline").text = "console=ttyS0 quiet"
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    nic = ET.SubElement(devices, "interface", type="bridge")
    ET.SubElement(nic, "mac", address=mac)
    ET.SubElement(nic, "source", bridge=bridge)
    ET.SubElement(nic, "model", type="virtio")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(console))
    ET.SubElement(serial, "target", port="0")
    return ET.tostring(dom, encoding="unicode")
