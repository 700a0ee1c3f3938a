"""A test datacenter on one machine: hosts as network + mount namespaces (root only).

Each :class:`NsHost` is a network namespace joined to a management bridge in the root
namespace by a veth pair, plus a mount namespace held open by a sleeping process. Inside the
mount namespace the host gets its own ``/run`` (tmpfs) and private copies of the paths that
would otherwise clash between two hosts on one machine: the agent's (``/etc/zagent``,
``/opt/zagent``, ``/var/lib/zagent``, ``/var/log/zagent``) and libvirt's (``/etc/libvirt``,
``/var/lib/libvirt``, ``/var/cache/libvirt``, ``/var/log/libvirt``) and an empty ``/root``
(so SSH sessions do not read the machine's dotfiles). Every command for the
host (sshd, libvirtd, checks) enters both namespaces with ``nsenter``, so what SSH logins
run sees exactly that host's files.

    with Datacenter(tmp_path / "dc") as dc:
        h = dc.add_host("kvm1")            # 172.31.250.11 on bridge zdc-xxxx
        h.start_sshd()                      # key login as root (dc.client_key)
        h.start_libvirtd()                  # virtlogd + libvirtd inside the host
        h.run(["virsh", "list", "--all"])

Addresses come from a private test subnet used only on the bridge and veths made here: the
first of ``172.31.240.0/24`` .. ``172.31.254.0/24`` that no interface of the machine uses
(chosen under a lock, so datacenters of parallel test runs never share one), or the one told. :meth:`Datacenter.close` kills every process in each
namespace, removes namespaces, veths and the bridge. The mount-point directories it had to
create on the machine (``/etc/zagent``...) stay: every datacenter on the machine (parallel test
workers, other checkouts' runs) binds its hosts' private copies onto the same paths, and
removing a directory that is a mount point in another mount namespace detaches that mount
there (Linux >= 3.18): another run's hosts lost their ``/var/lib/zagent`` mid-test.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (path inside the host, copy the machine's content into the private one)
PRIVATE_DIRS: tuple[tuple[str, bool], ...] = (
    ("/etc/zagent", False),
    ("/opt/zagent", False),
    ("/var/lib/zagent", False),
    ("/var/log/zagent", False),
    ("/etc/libvirt", True),
    ("/var/lib/libvirt", True),
    ("/var/cache/libvirt", True),
    ("/var/log/libvirt", True),
    ("/root", False),  # a clean home: no dotfiles of the machine's root in SSH sessions
)
SUBNET = "172.31.250.0/24"  # the first candidate; see free_subnet()
CANDIDATE_SUBNETS = tuple(f"172.31.{i}.0/24" for i in range(250, 255)) + tuple(
    f"172.31.{i}.0/24" for i in range(240, 250)
)
SUBNET_LOCK = "/run/zmn-test-datacenter.lock"


def subnets_in_use() -> set[ipaddress.IPv4Network]:
    """The IPv4 networks of every address on the machine's interfaces (root namespace)."""
    out = sh("ip", "-j", "-4", "addr", "show", check=False).stdout or "[]"
    used: set[ipaddress.IPv4Network] = set()
    for link in json.loads(out):
        for a in link.get("addr_info", []):
            used.add(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    return used


def free_subnet() -> str:
    """The first candidate subnet that overlaps nothing configured on the machine."""
    used = subnets_in_use()
    for cidr in CANDIDATE_SUBNETS:
        net = ipaddress.IPv4Network(cidr)
        if not any(net.overlaps(u) for u in used):
            return cidr
    raise RuntimeError(f"every test subnet is in use: {', '.join(CANDIDATE_SUBNETS)}")


def sh(
    *argv: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, input=input)


def missing_tools() -> list[str]:
    """Programs the datacenter needs that this machine lacks."""
    wanted = ["ip", "nsenter", "unshare", "ssh-keygen"]
    found = [t for t in wanted if shutil.which(t) is None]
    if not os.path.exists("/usr/sbin/sshd"):
        found.append("sshd (openssh-server)")
    return found


def missing_libvirt() -> list[str]:
    return [
        p
        for p in ("/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/bin/virsh", "/usr/bin/qemu-img")
        if not os.path.exists(p)
    ] + ([] if shutil.which("qemu-system-x86_64") else ["qemu-system-x86_64"])


@dataclass
class NsHost:
    dc: Datacenter
    name: str
    index: int
    ip: str
    netns: str
    root: Path
    holder: subprocess.Popen[bytes] | None = None
    sshd_config: Path | None = None
    host_key: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- running things inside

    def argv(self, argv: list[str]) -> list[str]:
        assert self.holder is not None
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--", *argv]

    def run(
        self, argv: list[str], *, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(argv), check=check, capture_output=True, text=True, input=input,
            timeout=timeout,
        )  # fmt: skip

    def sh(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], check=check)

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], check=False).returncode == 0

    def read(self, path: str) -> str:
        return self.run(["cat", path]).stdout

    def pids(self) -> list[int]:
        out = sh("ip", "netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    # ----------------------------------------------------------------- set-up

    def _start(self) -> None:
        """Namespaces, veth, address and the mount-namespace holder with private dirs."""
        dc = self.dc
        sh("ip", "netns", "add", self.netns)
        veth = f"{dc.tag}h{self.index}"
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        sh("ip", "link", "set", veth, "master", dc.bridge, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{self.ip}/{dc.prefix}", "dev", "eth0")
        sh("ip", "-n", self.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        mounts = ["mount -t tmpfs -o mode=0755 tmpfs /run", "mkdir -p /run/sshd /run/lock"]
        for path, copy in PRIVATE_DIRS:
            private = self.root / path.strip("/").replace("/", "-")
            private.mkdir(parents=True, exist_ok=True)
            if copy and os.path.isdir(path):
                sh("cp", "-a", f"{path}/.", str(private))
            dc.mountpoint(path)
            mounts.append(f"mount --bind {private} {path}")
        script = " && ".join(mounts) + " && exec sleep infinity"
        errors = self.root / "holder.err"
        with errors.open("wb") as err_file:
            self.holder = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation",
                 "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_file,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.holder.poll() is not None:
                err = errors.read_text()
                raise RuntimeError(f"host {self.name}: namespace set-up failed: {err}")
            probe = subprocess.run(
                self.argv(["sh", "-c", "mountpoint -q /var/lib/zagent && test -d /run/sshd"]),
                capture_output=True, check=False,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"host {self.name}: namespace set-up timed out")

    def add_nic(self, ifname: str) -> None:
        """A NIC for VM traffic, e.g. an L2's interface: a veth whose peer (``<ifname>p``)
        stays inside the host, both up (no dummy module needed)."""
        peer = f"{ifname}p"
        sh("ip", "-n", self.netns, "link", "add", ifname, "type", "veth", "peer", "name", peer)
        for dev in (ifname, peer):
            sh("ip", "-n", self.netns, "link", "set", dev, "up")

    def links(self) -> dict[str, dict[str, Any]]:
        out = sh("ip", "-n", self.netns, "-j", "-d", "link", "show").stdout
        return {link["ifname"]: link for link in json.loads(out)}

    # ----------------------------------------------------------------- sshd

    def new_host_key(self) -> str:
        """Generate a fresh ed25519 host key; returns its public line."""
        keydir = self.root / "ssh"
        keydir.mkdir(exist_ok=True)
        key = keydir / "ssh_host_ed25519_key"
        for p in (key, key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), "-C", self.name)
        self.host_key = key
        return key.with_suffix(".pub").read_text().strip()

    def start_sshd(self) -> None:
        if self.host_key is None:
            self.new_host_key()
        cfg = self.root / "ssh" / "sshd_config"
        cfg.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.ip}",
                    "Port 22",
                    f"HostKey {self.host_key}",
                    # the node's key, and root's own file for the migration peers
                    f"AuthorizedKeysFile {self.dc.authorized_keys} .ssh/authorized_keys",
                    "PidFile /run/sshd.pid",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        self.sshd_config = cfg
        self.run(["/usr/sbin/sshd", "-f", str(cfg), "-E", str(self.root / "ssh" / "sshd.log")])
        self._wait_port(22)

    def stop_sshd(self) -> None:
        pid = self.run(["cat", "/run/sshd.pid"], check=False).stdout.strip()
        if pid.isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(int(pid)):
                time.sleep(0.05)

    def restart_sshd(self) -> None:
        self.stop_sshd()
        self.start_sshd()

    def sshd_log(self) -> str:
        path = self.root / "ssh" / "sshd.log"
        return path.read_text() if path.exists() else ""

    def _wait_port(self, port: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout
            if out.strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"host {self.name}: nothing listens on port {port}")

    # ----------------------------------------------------------------- libvirt

    def configure_libvirt(self) -> None:
        """QEMU runs as root here, on the host's files (libvirtd not started: see below)."""
        conf = self.root / "etc-libvirt" / "qemu.conf"
        text = conf.read_text() if conf.exists() else ""
        if "# test datacenter" not in text:
            conf.write_text(
                text + '\n# test datacenter\nuser = "root"\ngroup = "root"\n'
                'security_driver = "none"\nnamespaces = []\n'
            )

    def start_libvirtd(self) -> None:
        """virtlogd and libvirtd inside the host, configured by :meth:`configure_libvirt`."""
        self.configure_libvirt()
        self.run(["virtlogd", "-d"])
        self.run(["libvirtd", "-d"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = self.run(["virsh", "-c", "qemu:///system", "version"], check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"host {self.name}: libvirtd did not come up: {probe.stderr}")

    def virsh(self, *args: str, check: bool = True) -> str:
        return self.run(["virsh", "-c", "qemu:///system", *args], check=check).stdout

    # ----------------------------------------------------------------- the agent

    def agent_pid(self) -> int | None:
        text = self.run(["cat", "/run/zagent.pid"], check=False).stdout.strip()
        return int(text) if text.isdigit() and _alive(int(text)) else None

    def kill_agent(self) -> None:
        pid = self.agent_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)

    # ----------------------------------------------------------------- teardown

    def close(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.05)
        if self.holder is not None:
            with contextlib.suppress(Exception):
                self.holder.kill()
                self.holder.wait(5)
        sh("ip", "netns", "del", self.netns, check=False)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Datacenter:
    """A management bridge in the root namespace and the hosts hanging off it."""

    def __init__(self, root: Path, subnet: str | None = None) -> None:
        self.root = root
        self.tag = "zdc" + uuid.uuid4().hex[:5]
        self.bridge = f"{self.tag}br"
        self._subnet = subnet
        self.prefix = 24
        self.gateway = ""
        self.hosts: list[NsHost] = []
        root.mkdir(parents=True, exist_ok=True)
        self.client_key = root / "id_ed25519"
        self.authorized_keys = root / "authorized_keys"
        self._started = False

    def start(self) -> Datacenter:
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key), "-C", "zmn")
        self.authorized_keys.write_text(self.client_key.with_suffix(".pub").read_text())
        with open(SUBNET_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # choose and claim the subnet atomically
            net = ipaddress.ip_network(self._subnet or free_subnet())
            self.prefix = net.prefixlen
            self._addresses = net.hosts()
            self.gateway = str(next(self._addresses))
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            self._started = True
            sh("ip", "addr", "add", f"{self.gateway}/{self.prefix}", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for _ in range(9):  # .2-.10 stay free for the node side
            next(self._addresses)
        return self

    def mountpoint(self, path: str) -> None:
        """Make sure ``path`` exists on the machine to bind-mount onto; it is never removed
        (see the module docstring: another datacenter's hosts may be mounted on it)."""
        os.makedirs(path, exist_ok=True)

    def add_host(self, name: str) -> NsHost:
        index = len(self.hosts) + 1
        host = NsHost(
            self,
            name,
            index,
            str(next(self._addresses)),
            f"{self.tag}-{name}",
            self.root / name,
        )
        host.root.mkdir(parents=True, exist_ok=True)
        self.hosts.append(host)
        host._start()
        return host

    def close(self) -> None:
        for host in reversed(self.hosts):
            with contextlib.suppress(Exception):
                host.close()
        if self._started:
            sh("ip", "link", "del", self.bridge, check=False)

    def __enter__(self) -> Datacenter:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
