"""What a form offers for a reference parameter: the resources an action can use.

``MigrateVm hostUuid``: the node's own candidate API when the catalogue has one (an API
``Get…Candidate<Target>s`` of the subject's type, e.g. ``GetVmMigrationCandidateHosts``);
otherwise the target type's rows that share the subjects' containers (the VM's cluster and
zone), are healthy where the type has a health enum (``state=Enabled``, ``status=Connected``)
and are not the one the subject already uses (the VM's current host).
"""

from __future__ import annotations

from typing import Any

from tui.catalogue import CONTAINERS, Action, Catalogue, Param
from tui.data import DataSource
from zmn.api.errors import ZmnError

HEALTHY = {"state": "Enabled", "status": "Connected"}
LIMIT = 500


def candidate_api(catalogue: Catalogue, subject_type: str, target: str) -> str | None:
    for name, spec in catalogue.apis.items():
        if (
            spec.get("resource") == subject_type
            and name.startswith("Get")
            and "Candidate" in name
            and name.endswith(target + "s")
        ):
            return name
    return None


def conditions_for(catalogue: Catalogue, param: Param, subjects: list[dict[str, Any]]) -> list[str]:
    assert param.resource is not None  # noqa: S101 - only reference parameters get here
    target = catalogue.resources[param.resource]
    out: list[str] = []
    for name, spec in target.fields.items():
        if spec.get("resource") in CONTAINERS:
            values = {s.get(name) for s in subjects}
            if len(values) == 1 and (value := values.pop()):
                out.append(f"{name}={value}")
    for name, good in HEALTHY.items():
        if good in (target.fields.get(name, {}).get("enum") or []):
            out.append(f"{name}={good}")
    return out


async def candidates(
    data: DataSource,
    subject_type: str,
    action: Action,
    param: Param,
    subjects: list[dict[str, Any]],
) -> list[tuple[str, str]]:
    """(label, uuid) choices, best first; the label says where each one stands."""
    catalogue = data.catalogue
    if catalogue is None or param.resource is None:
        return []
    current = {s.get(param.name) for s in subjects} - {None, ""}
    rows: list[dict[str, Any]]
    api = candidate_api(catalogue, subject_type, param.resource)
    if api is not None and len(subjects) == 1:
        result = await data.call(api, {action.subject: subjects[0]["uuid"]})
        rows = list(result.get("inventories") or [])
        cache = data.names.setdefault(param.resource, {})  # the confirmation names the choice
        cache.update(
            {str(r["uuid"]): str(r["name"]) for r in rows if r.get("uuid") and r.get("name")}
        )
    else:
        try:
            page = await data.query(
                param.resource,
                conditions_for(catalogue, param, subjects),
                limit=LIMIT,
                sort_by="name" if "name" in catalogue.resources[param.resource].fields else None,
                count=False,
            )
        except ZmnError:
            return []
        rows = page.rows
    out: list[tuple[str, str]] = []
    for row in rows:
        if row.get("uuid") in current:
            continue
        out.append((describe(row), str(row["uuid"])))
    return out


def describe(row: dict[str, Any]) -> str:
    label = str(row.get("name") or str(row.get("uuid"))[:8])
    extra = []
    for total, available, unit in (
        ("totalCpuCapacity", "availableCpuCapacity", "cpu"),
        ("totalMemoryCapacity", "availableMemoryCapacity", "GiB"),
    ):
        if isinstance(row.get(available), int | float) and row.get(total):
            free = row[available] / (2**30 if unit == "GiB" else 1)
            extra.append(f"{free:g} {unit} free")
    if row.get("managementIp"):
        extra.insert(0, str(row["managementIp"]))
    return label + (f"  ({', '.join(extra)})" if extra else "")
