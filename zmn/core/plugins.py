"""Plugin discovery through entry points (group ``zmn.services``).

Listing reads package metadata only; nothing is imported until the node loads a service. A
service that fails to import or to construct is reported (``zmn status``, the log) and the
others keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

GROUP = "zmn.services"


@dataclass
class PluginInfo:
    name: str
    target: str
    distribution: str


def list_plugins() -> list[PluginInfo]:
    found = []
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        found.append(PluginInfo(ep.name, ep.value, dist))
    return sorted(found, key=lambda p: p.name)


def find(name: str) -> EntryPoint | None:
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            return ep
    return None


def all_entry_points() -> list[EntryPoint]:
    return list(entry_points(group=GROUP))
