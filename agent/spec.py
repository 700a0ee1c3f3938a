"""The VM description the node sends to ``/v1/vm/start``, parsed and validated.

The libvirt domain is named after the VM UUID (as ZStack does), so a domain name is always 32
hex digits; the operator's VM name goes into ``<title>`` and may hold any printable text.

    {"uuid": "...", "name": "web-1", "cpuNum": 2, "memorySize": 1073741824,
     "disks": [{"path": "/var/lib/zstack/v.qcow2", "format": "qcow2", "deviceId": 0}],
     "nics": [{"mac": "52:54:00:12:34:56", "bridge": "br_eth0", "deviceName": "vnic1.0"}],
     "bootDevices": ["hd"], "consoleMode": "vnc", "consoleListen": "192.0.2.10",
     "consolePassword": "k3Xp9qTz"}

``maxCpuNum`` and ``maxMemorySize`` (optional) fix at start what the running VM may be grown
to (vCPU and memory hot-add, see :mod:`agent.drivers.hotplug`).

Graphical consoles are off unless asked for (``consoleMode`` defaults to ``none``). A VNC or
SPICE console needs a ``consoleListen`` address that is not a wildcard (``0.0.0.0``, ``::``)
and a ``consolePassword`` (8 characters for VNC, whose authentication takes no more; 8 to 64
for SPICE), so no domain the agent writes listens everywhere or without a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent import validate as v
from agent.nocloud import Seed, parse_seed
from zmn.api.hotplug import MEMORY_BLOCK

DISK_BUSES = ("virtio", "scsi", "sata", "ide")
DISK_FORMATS = ("qcow2", "raw")
DISK_DEVICES = ("disk", "cdrom")
DISK_CACHES = ("none", "writeback", "writethrough", "directsync", "unsafe")
NIC_MODELS = ("virtio", "e1000", "rtl8139")
BOOT_DEVICES = ("hd", "cdrom", "network")
CONSOLE_MODES = ("vnc", "spice", "none")
_BUS_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "ide": "hd"}
MIB = 1024 * 1024


@dataclass(frozen=True)
class DiskSpec:
    path: str  # "" for a CD-ROM drive with no medium
    device_id: int = 0
    format: str = "qcow2"
    bus: str = "virtio"
    device: str = "disk"
    source_type: str = "file"
    read_only: bool = False
    cache: str = "none"
    serial: str | None = None

    @property
    def target(self) -> str:
        """``vda``, ``vdb``... from bus and device id (the guest-visible name)."""
        return _BUS_PREFIX[self.bus] + chr(ord("a") + self.device_id)


@dataclass(frozen=True)
class NicSpec:
    mac: str
    bridge: str
    model: str = "virtio"
    device_name: str | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class VmSpec:
    uuid: str
    name: str
    cpu_num: int
    memory_size: int
    description: str = ""
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    boot_devices: tuple[str, ...] = ("hd",)
    console_mode: str = "none"
    console_listen: str = ""
    console_password: str = ""
    seed: Seed | None = None  # a NoCloud seed the agent writes and attaches as a CD-ROM
    # hot-add limits fixed at start (0: none, the VM keeps cpu_num/memory_size while it runs)
    max_cpu_num: int = 0
    max_memory_size: int = 0

    @property
    def domain_name(self) -> str:
        return self.uuid


def _opt(data: Any, key: str, default: Any) -> Any:
    return data.get(key, default)


def parse_disk(raw: Any, f: str) -> DiskSpec:
    d = v.obj(raw, f)
    serial = d.get("serial")
    device = v.choice(_opt(d, "device", "disk"), f"{f}.device", DISK_DEVICES)
    empty = device == "cdrom" and d.get("path") in (None, "")
    return DiskSpec(
        path="" if empty else v.abspath(d.get("path"), f"{f}.path"),
        device_id=v.integer(_opt(d, "deviceId", 0), f"{f}.deviceId", lo=0, hi=25),
        format=v.choice(_opt(d, "format", "qcow2"), f"{f}.format", DISK_FORMATS),
        bus=v.choice(_opt(d, "bus", "virtio"), f"{f}.bus", DISK_BUSES),
        device=device,
        source_type=v.choice(_opt(d, "type", "file"), f"{f}.type", ("file", "block")),
        read_only=v.boolean(_opt(d, "readOnly", False), f"{f}.readOnly"),
        cache=v.choice(_opt(d, "cache", "none"), f"{f}.cache", DISK_CACHES),
        serial=None if serial is None else v.token(serial, f"{f}.serial"),
    )


def parse_nic(raw: Any, f: str) -> NicSpec:
    d = v.obj(raw, f)
    dev = d.get("deviceName")
    mtu = d.get("mtu")
    return NicSpec(
        mac=v.mac(d.get("mac"), f"{f}.mac"),
        bridge=v.ifname(d.get("bridge"), f"{f}.bridge"),
        model=v.choice(_opt(d, "model", "virtio"), f"{f}.model", NIC_MODELS),
        device_name=None if dev is None else v.ifname(dev, f"{f}.deviceName"),
        mtu=None if mtu is None else v.integer(mtu, f"{f}.mtu", lo=576, hi=9216),
    )


_PASSWORD_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+=@%"
)


def parse_graphics(d: Any, f: str) -> tuple[str, str, str]:
    """(mode, listen address, password) of the graphical console; see the module docstring."""
    mode = v.choice(_opt(d, "consoleMode", "none"), f"{f}.consoleMode", CONSOLE_MODES)
    if mode == "none":
        return mode, "", ""
    listen = v.ip_any(d.get("consoleListen"), f"{f}.consoleListen")
    if listen.is_unspecified:
        raise v.bad(
            f"{f}.consoleListen",
            f"a {mode} console must listen on the host's management address, not {listen}",
        )
    password = d.get("consolePassword")
    longest = 8 if mode == "vnc" else 64  # VNC's authentication takes 8 characters, no more
    if not isinstance(password, str) or not 8 <= len(password) <= longest:
        raise v.bad(
            f"{f}.consolePassword", f"a {mode} console needs a password of 8-{longest} chars"
        )
    if not set(password) <= _PASSWORD_CHARS:
        raise v.bad(f"{f}.consolePassword", "use letters, digits and -_.~+=@% only")
    return mode, str(listen), password


def parse_vm(raw: Any, f: str = "vm") -> VmSpec:
    """Validate a VM description; raise InvalidArgument naming the first bad field."""
    d = v.obj(raw, f)
    disks = tuple(
        parse_disk(x, f"{f}.disks[{i}]")
        for i, x in enumerate(v.items(_opt(d, "disks", []), f"{f}.disks", max_items=26))
    )
    targets = [disk.target for disk in disks]
    if len(set(targets)) != len(targets):
        raise v.bad(f"{f}.disks", "two disks share a bus and deviceId")
    nics = tuple(
        parse_nic(x, f"{f}.nics[{i}]")
        for i, x in enumerate(v.items(_opt(d, "nics", []), f"{f}.nics", max_items=32))
    )
    if len({n.mac for n in nics}) != len(nics):
        raise v.bad(f"{f}.nics", "two NICs share a MAC address")
    memory = v.integer(d.get("memorySize"), f"{f}.memorySize", lo=MIB, hi=1 << 50)
    if memory % 1024:
        raise v.bad(f"{f}.memorySize", "must be a multiple of 1024 bytes")
    boot = tuple(
        v.choice(x, f"{f}.bootDevices[{i}]", BOOT_DEVICES)
        for i, x in enumerate(v.items(_opt(d, "bootDevices", ["hd"]), f"{f}.bootDevices"))
    )
    uuid = v.uuid(d.get("uuid"), f"{f}.uuid")
    mode, listen, password = parse_graphics(d, f)
    cpu = v.integer(d.get("cpuNum"), f"{f}.cpuNum", lo=1, hi=512)
    max_cpu, max_memory = parse_hotplug_limits(d, f, cpu, memory)
    return VmSpec(
        uuid=uuid,
        name=v.text_line(_opt(d, "name", uuid), f"{f}.name"),
        description=v.text_block(_opt(d, "description", ""), f"{f}.description"),
        cpu_num=cpu,
        memory_size=memory,
        disks=disks,
        nics=nics,
        boot_devices=boot or ("hd",),
        console_mode=mode,
        console_listen=listen,
        console_password=password,
        seed=None if d.get("seed") is None else parse_seed(d["seed"], f"{f}.seed"),
        max_cpu_num=max_cpu,
        max_memory_size=max_memory,
    )


def parse_hotplug_limits(d: Any, f: str, cpu: int, memory: int) -> tuple[int, int]:
    """``maxCpuNum`` / ``maxMemorySize``: what a running VM may grow to (0 or absent: no
    hot-add). A maximum below the boot value is refused; memory grows by whole 128 MiB
    blocks (the size a Linux guest onlines memory in), so the headroom must be one."""
    max_cpu = v.integer(_opt(d, "maxCpuNum", 0), f"{f}.maxCpuNum", lo=0, hi=512)
    max_memory = v.integer(_opt(d, "maxMemorySize", 0), f"{f}.maxMemorySize", lo=0, hi=1 << 50)
    if max_cpu and max_cpu < cpu:
        raise v.bad(f"{f}.maxCpuNum", f"must be 0 or at least cpuNum ({cpu})")
    if max_memory and max_memory < memory:
        raise v.bad(f"{f}.maxMemorySize", f"must be 0 or at least memorySize ({memory})")
    if max_memory and (max_memory - memory) % MEMORY_BLOCK:
        raise v.bad(
            f"{f}.maxMemorySize", "maxMemorySize - memorySize must be a multiple of 128 MiB"
        )
    return max_cpu, max_memory
