"""The agent's commands: validated JSON in, driver and network calls, JSON out.

Operations on one VM are serialised by a lock per VM UUID (the node's per-VM queue does the
same, but a retried request must not race its first try). Long commands (VM start, stop,
reboot, migrate) can run as background tasks; :class:`Route` marks them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agent import __version__
from agent import validate as v
from agent.config import AgentConfig
from agent.drivers.base import Driver
from agent.drivers.features import kvm_usable
from agent.migration import MigrationTrust, Peer, migrate_uri
from agent.network import bridge, dhcp, firewall
from agent.network.executor import Executor
from agent.network.hostnet import HostNetwork
from agent.nocloud import attach_seed, parse_seed, remove_seed, seed_path, write_iso
from agent.spec import parse_disk, parse_nic, parse_vm

Body = dict[str, Any]
Handler = Callable[[Body, dict[str, str]], Body]


@dataclass(frozen=True)
class Route:
    handler: Handler
    long: bool = False  # may run as a background task when the request asks for a callback
    # validation run before a background task is accepted, so a bad request is a 400 now
    # rather than a failed task later
    check: Callable[[Body], object] | None = None
    upgrade: bool = False  # answers by switching protocols (the console): never in a batch


def _check_uuid(body: Body) -> object:
    return v.uuid(body.get("uuid"), "uuid")


def _ssh_key(value: Any, field: str) -> str:
    """``<type> <base64>`` of an OpenSSH public key (a comment is dropped), nothing else: it
    goes into authorized_keys, so no options and no second line."""
    text = v.text_line(value, field, max_len=2048)
    parts = text.split()
    if (
        len(parts) not in (2, 3)
        or not parts[0].startswith(("ssh-", "ecdsa-"))
        or not parts[1].replace("+", "").replace("/", "").replace("=", "").isalnum()
    ):
        raise v.bad(
            field, "must be an OpenSSH public key: '<type> <base64>', e.g. ssh-ed25519 AAAA..."
        )
    return f"{parts[0]} {parts[1]}"


class KeyedLocks:
    """One lock per key, created on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._users: defaultdict[str, int] = defaultdict(int)
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            self._users[key] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                self._users[key] -= 1
                if not self._users[key]:
                    del self._users[key]
                    del self._locks[key]


class Commands:
    def __init__(
        self, cfg: AgentConfig, driver: Driver, executor: Executor, host_uuid: str
    ) -> None:
        self.cfg = cfg
        self.driver = driver
        self.executor = executor
        self.host_uuid = host_uuid
        self.started_at = time.time()
        self._vm_locks = KeyedLocks()
        self._net_lock = threading.Lock()
        self.hostnet = HostNetwork(
            executor, cfg.state_dir, dnsmasq=cfg.dnsmasq_path, ip=cfg.ip_path, nft=cfg.nft_path
        )
        with self._net_lock:
            self.hostnet.reapply()
        ssh_dir = cfg.migration_ssh_dir or (
            "/root/.ssh" if cfg.driver == "libvirt" else f"{cfg.state_dir}/migration/ssh"
        )
        self.trust = MigrationTrust(cfg.state_dir, ssh_dir)

    def routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("GET", "/v1/ping"): Route(self.ping),
            ("GET", "/v1/host/facts"): Route(self.facts),
            ("GET", "/v1/vm/list"): Route(self.vm_list),
            ("POST", "/v1/vm/start"): Route(
                self.vm_start, long=True, check=lambda b: parse_vm(b.get("vm"))
            ),
            ("POST", "/v1/vm/stop"): Route(self.vm_stop, long=True, check=_check_uuid),
            ("POST", "/v1/vm/reboot"): Route(self.vm_reboot, long=True, check=_check_uuid),
            ("POST", "/v1/vm/migrate"): Route(self.vm_migrate, long=True, check=_check_uuid),
            ("POST", "/v1/vm/destroy"): Route(self.vm_destroy),
            ("POST", "/v1/vm/seed"): Route(self.vm_seed),
            ("GET", "/v1/migration/key"): Route(self.migration_key),
            ("POST", "/v1/migration/peers"): Route(self.migration_peers),
            ("POST", "/v1/vm/pause"): Route(self.vm_pause),
            ("POST", "/v1/vm/resume"): Route(self.vm_resume),
            ("POST", "/v1/vm/attach-disk"): Route(self.vm_attach_disk),
            ("POST", "/v1/vm/detach-disk"): Route(self.vm_detach_disk),
            ("POST", "/v1/vm/change-media"): Route(self.vm_change_media),
            ("POST", "/v1/vm/attach-nic"): Route(self.vm_attach_nic),
            ("POST", "/v1/vm/detach-nic"): Route(self.vm_detach_nic),
            ("POST", "/v1/vm/set-cpu-memory"): Route(self.vm_set_cpu_memory),
            ("POST", "/v1/network/bridge"): Route(self.network_bridge),
            ("POST", "/v1/network/dhcp"): Route(self.network_dhcp),
            ("POST", "/v1/network/firewall"): Route(self.network_firewall),
            ("POST", "/v1/network/vm"): Route(self.network_vm),
            ("POST", "/v1/network/vm/remove"): Route(self.network_vm_remove),
            ("POST", "/v1/network/nic/rules"): Route(self.network_nic_rules),
            ("GET", "/v1/network/state"): Route(self.network_state),
        }

    # --- host --------------------------------------------------------------------------------

    def ping(self, _body: Body, query: dict[str, str]) -> Body:
        out: Body = {
            "version": __version__,
            "hostUuid": self.host_uuid,
            "time": time.time(),
            "uptime": time.time() - self.started_at,
        }
        if "echo" in query:
            out["echo"] = v.token(query["echo"], "echo")
        return out

    def facts(self, _body: Body, _query: dict[str, str]) -> Body:
        facts = self.driver.facts()
        facts.update(hostUuid=self.host_uuid, agentVersion=__version__, kvmDevice=kvm_usable())
        return facts

    # --- VMs ---------------------------------------------------------------------------------

    @contextmanager
    def _vm(self, body: Body) -> Iterator[str]:
        uuid = v.uuid(body.get("uuid"), "uuid")
        with self._vm_locks.hold(uuid):
            yield uuid

    def _vm_result(self, uuid: str, **extra: Any) -> Body:
        return {"uuid": uuid, "state": self.driver.state(uuid), **extra}

    def vm_list(self, _body: Body, _query: dict[str, str]) -> Body:
        return {"vms": [d.to_wire() for d in self.driver.list()]}

    def vm_start(self, body: Body, _query: dict[str, str]) -> Body:
        """Define (or redefine) and start. Idempotent: a retried start of a running VM
        leaves it running; a changed definition applies from its next boot.
        ``hypervisorSeconds``: the time define and start took in the driver (benchmarks)."""
        spec = parse_vm(body.get("vm"))
        with self._vm_locks.hold(spec.uuid):
            t0 = time.perf_counter()
            spec = attach_seed(spec, self.cfg.state_dir)
            try:
                self.driver.define(spec)
                self.driver.start(spec.uuid)
            except BaseException:
                remove_seed(spec.uuid, self.cfg.state_dir)
                raise
            took = time.perf_counter() - t0
            return self._vm_result(spec.uuid, hypervisorSeconds=round(took, 6))

    def vm_stop(self, body: Body, _query: dict[str, str]) -> Body:
        force = v.boolean(body.get("force", False), "force")
        timeout = v.integer(body.get("timeout", 60), "timeout", lo=0, hi=3600)
        with self._vm(body) as uuid:
            if force:
                self.driver.destroy(uuid)
                forced = True
            else:
                forced = self.driver.shutdown(uuid, timeout)
            return self._vm_result(uuid, forced=forced)

    def vm_reboot(self, body: Body, _query: dict[str, str]) -> Body:
        with self._vm(body) as uuid:
            self.driver.reboot(uuid)
            return self._vm_result(uuid)

    def vm_migrate(self, body: Body, _query: dict[str, str]) -> Body:
        dest = str(v.ip_any(body.get("destHost"), "destHost"))
        with self._vm(body) as uuid:
            self.trust.public_key()  # the key the URI names exists
            uri = migrate_uri(dest, self.trust.key_path)
            began = time.monotonic()
            self.driver.migrate(uuid, uri)
            elapsed = time.monotonic() - began
            remove_seed(uuid, self.cfg.state_dir)  # the domain (and its seed's user) left
            return {"uuid": uuid, "destUri": uri, "elapsedMs": round(elapsed * 1000)}

    def vm_seed(self, body: Body, _query: dict[str, str]) -> Body:
        """Write a VM's NoCloud seed ISO where its domain expects it, before the domain
        arrives by migration (``seed``: null removes it: the migration failed)."""
        with self._vm(body) as uuid:
            if body.get("seed") is None:
                remove_seed(uuid, self.cfg.state_dir)
                return {"uuid": uuid, "seed": None}
            seed = parse_seed(body.get("seed"))
            path = seed_path(uuid, self.cfg.state_dir)
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            write_iso(path, seed)
            return {"uuid": uuid, "seed": path}

    # --- migration trust (agent/migration.py) ------------------------------------------------

    def migration_key(self, _body: Body, _query: dict[str, str]) -> Body:
        return {"publicKey": self.trust.public_key()}

    def migration_peers(self, body: Body, _query: dict[str, str]) -> Body:
        peers = []
        for i, raw in enumerate(v.items(body.get("peers"), "peers", max_items=1024)):
            p = v.obj(raw, f"peers[{i}]")
            peers.append(
                Peer(
                    ip=str(v.ip_any(p.get("ip"), f"peers[{i}].ip")),
                    public_key=_ssh_key(p.get("publicKey"), f"peers[{i}].publicKey"),
                    host_key=_ssh_key(p.get("hostKey"), f"peers[{i}].hostKey"),
                )
            )
        self.trust.set_peers(peers)
        return {"peers": len(peers)}

    def vm_destroy(self, body: Body, _query: dict[str, str]) -> Body:
        with self._vm(body) as uuid:
            self.driver.undefine(uuid)
            remove_seed(uuid, self.cfg.state_dir)
            return {"uuid": uuid, "state": "Destroyed"}

    def vm_pause(self, body: Body, _query: dict[str, str]) -> Body:
        with self._vm(body) as uuid:
            self.driver.suspend(uuid)
            return self._vm_result(uuid)

    def vm_resume(self, body: Body, _query: dict[str, str]) -> Body:
        with self._vm(body) as uuid:
            self.driver.resume(uuid)
            return self._vm_result(uuid)

    def vm_attach_disk(self, body: Body, _query: dict[str, str]) -> Body:
        disk = parse_disk(body.get("disk"), "disk")
        with self._vm(body) as uuid:
            self.driver.attach_disk(uuid, disk)
            return {"uuid": uuid, "target": disk.target}

    def vm_detach_disk(self, body: Body, _query: dict[str, str]) -> Body:
        disk = parse_disk(body.get("disk"), "disk")
        with self._vm(body) as uuid:
            self.driver.detach_disk(uuid, disk.target)
            return {"uuid": uuid, "target": disk.target}

    def vm_change_media(self, body: Body, _query: dict[str, str]) -> Body:
        """``{uuid, disk}``: the CD-ROM drive ``disk`` gets ``disk.path`` ("" ejects)."""
        disk = parse_disk(body.get("disk"), "disk")
        if disk.device != "cdrom":
            raise v.bad("disk.device", "media change is for a CD-ROM drive")
        with self._vm(body) as uuid:
            self.driver.change_media(uuid, disk)
            return {"uuid": uuid, "target": disk.target, "path": disk.path}

    def vm_attach_nic(self, body: Body, _query: dict[str, str]) -> Body:
        nic = parse_nic(body.get("nic"), "nic")
        with self._vm(body) as uuid:
            self.driver.attach_nic(uuid, nic)
            return {"uuid": uuid, "mac": nic.mac}

    def vm_detach_nic(self, body: Body, _query: dict[str, str]) -> Body:
        mac = v.mac(body.get("mac"), "mac")
        with self._vm(body) as uuid:
            self.driver.detach_nic(uuid, mac)
            return {"uuid": uuid, "mac": mac}

    def vm_set_cpu_memory(self, body: Body, _query: dict[str, str]) -> Body:
        """``{uuid, cpuNum, memorySize}``: hot-add vCPUs and memory (agent/drivers/hotplug.py)."""
        cpu = v.integer(body.get("cpuNum"), "cpuNum", lo=1, hi=512)
        memory = v.integer(body.get("memorySize"), "memorySize", lo=1 << 20, hi=1 << 50)
        with self._vm(body) as uuid:
            return {"uuid": uuid, **self.driver.set_cpu_memory(uuid, cpu, memory)}

    # --- host networking ---------------------------------------------------------------------

    def network_bridge(self, body: Body, _query: dict[str, str]) -> Body:
        spec = bridge.parse_l2(body, "l2")
        with self._net_lock:
            cmds = bridge.ensure(spec, self.executor, ip=self.cfg.ip_path)
        return {"bridgeName": spec.bridge, "port": spec.port, "changed": bool(cmds)}

    def network_dhcp(self, body: Body, _query: dict[str, str]) -> Body:
        spec = dhcp.parse_l3(body, "l3")
        with self._net_lock:
            return dhcp.apply(
                spec,
                self.executor,
                self.cfg.state_dir,
                dnsmasq=self.cfg.dnsmasq_path,
                ip=self.cfg.ip_path,
            )

    def network_firewall(self, body: Body, _query: dict[str, str]) -> Body:
        spec = firewall.parse(body, "firewall")
        with self._net_lock:
            return firewall.apply(spec, self.executor, nft=self.cfg.nft_path)

    # --- the VMs' network state (DHCP reservations, SG rules, EIPs), merged per host -------

    def network_vm(self, body: Body, _query: dict[str, str]) -> Body:
        with self._net_lock:
            return self.hostnet.set_vm(body)

    def network_vm_remove(self, body: Body, _query: dict[str, str]) -> Body:
        with self._net_lock:
            return self.hostnet.remove_vm(body)

    def network_nic_rules(self, body: Body, _query: dict[str, str]) -> Body:
        with self._net_lock:
            return self.hostnet.set_rules(body)

    def network_state(self, _body: Body, _query: dict[str, str]) -> Body:
        with self._net_lock:
            return self.hostnet.snapshot()
