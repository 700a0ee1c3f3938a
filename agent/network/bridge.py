"""A Linux bridge per L2 network, as ``ip`` argv lists.

NoVlan: the physical interface becomes the bridge's port. Vlan: a VLAN subinterface
``<physical>.<vlan>`` is created and becomes the port, so one physical interface carries many
L2s. Addresses on a physical interface that joins a bridge move to the bridge (with the routes
through it), as ZStack does, so a host whose management IP sits on that interface keeps it.

:func:`plan` is pure: it reads the ``ip -j`` views of the host and returns only the commands
still needed, so applying twice runs nothing the second time. :func:`ensure` queries through
the executor and runs the plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent import validate as v
from agent.network.executor import Executor
from zmn.api.errors import Conflict


@dataclass(frozen=True)
class L2Spec:
    bridge: str
    physical: str
    vlan: int | None = None
    mtu: int | None = None

    @property
    def port(self) -> str:
        """The interface that joins the bridge."""
        return self.physical if self.vlan is None else f"{self.physical}.{self.vlan}"


def parse_l2(raw: Any, f: str = "l2") -> L2Spec:
    d = v.obj(raw, f)
    vlan = d.get("vlan")
    mtu = d.get("mtu")
    spec = L2Spec(
        bridge=v.ifname(d.get("bridgeName"), f"{f}.bridgeName"),
        physical=v.ifname(d.get("physicalInterface"), f"{f}.physicalInterface"),
        vlan=None if vlan is None else v.integer(vlan, f"{f}.vlan", lo=1, hi=4094),
        mtu=None if mtu is None else v.integer(mtu, f"{f}.mtu", lo=576, hi=9216),
    )
    v.ifname(spec.port, f"{f}.physicalInterface")  # "<physical>.<vlan>" must fit in 15 too
    if spec.bridge in (spec.physical, spec.port):
        raise v.bad(f"{f}.bridgeName", "must differ from the physical interface")
    return spec


def _links(links: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(link.get("ifname")): link for link in links}


def _kind(link: dict[str, Any]) -> str | None:
    info = link.get("linkinfo") or {}
    kind = info.get("info_kind")
    return str(kind) if kind else None


def _moved_addresses(
    spec: L2Spec, ip: str, addrs: list[dict[str, Any]], routes: list[dict[str, Any]]
) -> list[list[str]]:
    """Commands moving the port's IPv4 addresses and gateway routes onto the bridge."""
    cmds: list[list[str]] = []
    for link in addrs:
        for a in link.get("addr_info") or []:
            if a.get("family") != "inet":
                continue
            cidr = f"{v.ipv4(a.get('local'), 'addr')}/{int(a.get('prefixlen', 32))}"
            cmds.append([ip, "addr", "del", cidr, "dev", spec.port])
            cmds.append([ip, "addr", "add", cidr, "dev", spec.bridge])
    for r in routes:
        if not r.get("gateway"):
            continue  # kernel routes follow the address
        dst = str(r.get("dst", "default"))
        dst = "default" if dst == "default" else str(v.cidr(dst, "route"))
        gw = str(v.ipv4(r.get("gateway"), "gateway"))
        cmds.append([ip, "route", "replace", dst, "via", gw, "dev", spec.bridge])
    return cmds


def plan(
    spec: L2Spec,
    links: list[dict[str, Any]],
    port_addrs: list[dict[str, Any]] | None = None,
    port_routes: list[dict[str, Any]] | None = None,
    *,
    ip: str = "ip",
) -> list[list[str]]:
    """The ``ip`` commands that make the bridge exist with its port; [] when it already does."""
    by_name = _links(links)
    if spec.physical not in by_name:
        raise v.bad("l2.physicalInterface", f"no interface {spec.physical} on this host")
    cmds: list[list[str]] = []
    port = by_name.get(spec.port)
    if spec.vlan is not None:
        if port is None:
            add = [ip, "link", "add", "link", spec.physical, "name", spec.port]
            cmds.append([*add, "type", "vlan", "id", str(spec.vlan)])
        elif (
            _kind(port) != "vlan"
            or (port.get("linkinfo") or {}).get("info_data", {}).get("id") != spec.vlan
        ):
            raise Conflict(
                f"{spec.port} exists and is not VLAN {spec.vlan} on {spec.physical}",
                code="AGENT.NETWORK_CONFLICT",
            )
    bridge = by_name.get(spec.bridge)
    if bridge is None:
        cmds.append([ip, "link", "add", "name", spec.bridge, "type", "bridge"])
    elif _kind(bridge) != "bridge":
        raise Conflict(f"{spec.bridge} exists and is not a bridge", code="AGENT.NETWORK_CONFLICT")
    master = port.get("master") if port else None
    if master not in (None, spec.bridge):
        raise Conflict(f"{spec.port} is already a port of {master}", code="AGENT.NETWORK_CONFLICT")
    if spec.mtu is not None:
        for name in (spec.physical, spec.port, spec.bridge):
            link = by_name.get(name)
            if link is None or link.get("mtu") != spec.mtu:
                cmds.append([ip, "link", "set", "dev", name, "mtu", str(spec.mtu)])
    if master is None:
        cmds.append([ip, "link", "set", "dev", spec.port, "master", spec.bridge])
    for name in dict.fromkeys((spec.physical, spec.port, spec.bridge)):
        link = by_name.get(name)
        if link is None or "UP" not in (link.get("flags") or []):
            cmds.append([ip, "link", "set", "dev", name, "up"])
    if master is None and spec.vlan is None:
        # last: a route through the bridge needs the bridge up
        cmds += _moved_addresses(spec, ip, port_addrs or [], port_routes or [])
    return cmds


def _json(executor: Executor, argv: list[str]) -> list[dict[str, Any]]:
    out = executor.run(argv).stdout.strip()
    data = json.loads(out) if out else []
    return data if isinstance(data, list) else []


def ensure(spec: L2Spec, executor: Executor, *, ip: str = "ip") -> list[list[str]]:
    """Query the host, run what :func:`plan` says; returns the commands run."""
    links = _json(executor, [ip, "-j", "-d", "link", "show"])
    addrs: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    by_name = _links(links)
    port = by_name.get(spec.port)
    if spec.vlan is None and port is not None and not port.get("master"):
        addrs = _json(executor, [ip, "-j", "addr", "show", "dev", spec.port])
        routes = _json(executor, [ip, "-j", "route", "show", "dev", spec.port])
    cmds = plan(spec, links, addrs, routes, ip=ip)
    for argv in cmds:
        executor.run(argv)
    return cmds
