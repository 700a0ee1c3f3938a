"""What each hypervisor connection supports, as one table instead of scattered checks.

The row is chosen once per connection from the libvirt driver name (``conn.getType()``) and
whether ``/dev/kvm`` is usable. The XML builder and the driver read the row; neither asks
"is this TEST?" or "is KVM there?" anywhere else.
"""

from __future__ import annotations

import functools
import os
import stat
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class DriverFeatures:
    """Capabilities of one (libvirt driver, KVM usable) combination."""

    domain_type: str  # <domain type=...>
    arch: str  # <os><type arch=...>
    cpu_mode: str | None  # <cpu mode=...>; None: libvirt's default model
    acpi: bool  # <features><acpi/><apic/>: needed for graceful ACPI shutdown
    hotplug: bool  # attach/detach devices on a running domain
    migrate: bool  # live migration to another host
    memballoon: bool  # <memballoon model='virtio'/>
    video_model: str | None  # <video><model type=...>; None: no video device


FEATURES: dict[tuple[str, bool], DriverFeatures] = {
    ("QEMU", True): DriverFeatures(
        domain_type="kvm",
        arch="x86_64",
        cpu_mode="host-passthrough",
        acpi=True,
        hotplug=True,
        migrate=True,
        memballoon=True,
        video_model="vga",
    ),
    # TCG: no host CPU to pass through; everything else works, slowly.
    ("QEMU", False): DriverFeatures(
        domain_type="qemu",
        arch="x86_64",
        cpu_mode=None,
        acpi=True,
        hotplug=True,
        migrate=True,
        memballoon=True,
        video_model="vga",
    ),
    # libvirt's in-process test driver: i686 'test' domains, no hotplug, no migration.
    ("TEST", False): DriverFeatures(
        domain_type="test",
        arch="i686",
        cpu_mode=None,
        acpi=False,
        hotplug=False,
        migrate=False,
        memballoon=False,
        video_model=None,
    ),
}
FEATURES[("TEST", True)] = FEATURES[("TEST", False)]

QEMU_KVM = FEATURES[("QEMU", True)]
QEMU_TCG = FEATURES[("QEMU", False)]
TEST = FEATURES[("TEST", False)]


def kvm_usable(path: str = "/dev/kvm") -> bool:
    """True when ``path`` is a character device this process can open read-write."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISCHR(st.st_mode):
        return False
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def host_is_virtual(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU flags carry ``hypervisor``: this host is a VM, so KVM here is nested.

    Nested KVM can create a host-passthrough vCPU (the probe below passes) and still fail to
    run the guest: QEMU stops it with "KVM internal error. Suberror: 1 / emulation failure" in
    the boot loader and libvirt reports it paused. Seen on this project's CI machines.
    """
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "hypervisor" in line.split(":", 1)[1].split()
    except OSError:
        return False
    return False


# QMP: leave capabilities negotiation, then quit; the probe VM never runs a guest instruction
_QMP_QUIT = '{"execute":"qmp_capabilities"}{"execute":"quit"}\n'


@functools.cache
def kvm_host_cpu_works(emulator: str) -> bool:
    """True when ``emulator`` can create a KVM vCPU with ``-cpu host`` (what the KVM row's
    host-passthrough asks for).

    ``/dev/kvm`` being openable is not enough: under nested virtualisation some hosts refuse
    MSRs that ``-cpu host`` exposes (QEMU aborts with "failed to set MSR 0x10a") and every
    domain would fail to start. A paused QEMU with no devices is started and told to quit
    (about 0.1 s, once per emulator and process); argv only, no shell.
    """
    argv = [emulator, "-enable-kvm", "-cpu", "host", "-m", "16", "-display", "none",
            "-nodefaults", "-S", "-qmp", "stdio"]  # fmt: skip
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, emulator path from libvirt
            argv, input=_QMP_QUIT, capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def features_for(driver_type: str, kvm: bool) -> DriverFeatures:
    """The row for a connection; an unknown driver is an error, not a guess."""
    try:
        return FEATURES[(driver_type.upper(), kvm)]
    except KeyError:
        known = sorted({k[0] for k in FEATURES})
        raise ValueError(
            f"unsupported libvirt driver {driver_type!r} (supported: {', '.join(known)})"
        ) from None
