"""What a person at a terminal gets around a mutating command (issue 15, items 3 and 5).

* :func:`nic_targets` -- a VM's name (or UUID) where an API wants VM NIC UUIDs
  (``eip attach E --vm web1``, ``sg add-nic SG --vm web1``): one query per VM named;
* :func:`confirm` -- destroying a running VM, or deleting anything others depend on, asks
  first on a terminal unless ``--yes``; without a terminal nothing is asked (scripts behave
  as before);
* :func:`said` -- the one line on stderr saying what was done (on a terminal).
"""

from __future__ import annotations

import sys

from zcli.catalogue import Api, Catalogue, LazyPattern, Resource
from zmn.api.errors import NotFound
from zmn.api.ids import short_id

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any, TextIO

    from zmn.client import Client

UUID_RE = LazyPattern(r"^[0-9a-f]{32}$")
DESTRUCTIVE = ("destroy", "delete", "expunge")


def on_terminal(err: TextIO) -> bool:
    return sys.stdin.isatty() and err.isatty()


# ----------------------------------------------------------------- VM names for NICs


def nic_targets(client: Client, api: Api, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with every VM name (or VM UUID) in a VmNic parameter replaced by the VM's
    NIC UUID(s): all of them for a list parameter, the default network's for a single one."""
    out = dict(args)
    for param in api.params.values():
        if param.raw.get("resource") != "VmNic" or param.name not in args:
            continue
        value = args[param.name]
        items = value if isinstance(value, list) else _split(str(value))
        nics: list[str] = []
        for item in items:
            nics += [item] if _is_nic(client, item) else _vm_nics(client, item, param.is_list)
        out[param.name] = nics if param.is_list else nics[0]
    return out


def _split(text: str) -> list[str]:
    from zmn.api.querylang import split_list

    return split_list(text)


def same_name_first(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The rows a name picks: those named exactly so if any, else all (names compare ignoring
    case in queries: ``web`` finds ``Web``, and a ``web`` beside a ``Web`` is the one meant)."""
    exact = [r for r in rows if r.get("name") == name]
    return exact or rows


def _is_nic(client: Client, value: str) -> bool:
    if not UUID_RE.match(value):
        return False
    found = client.call("QueryVmNic", {"conditions": [f"uuid={value}"], "count": True})
    return bool(found.get("total"))


def _vm_nics(client: Client, vm: str, every: bool) -> list[str]:
    key = "uuid" if UUID_RE.match(vm) else "name"
    rows = client.call("QueryVmInstance", {"conditions": [f"{key}={vm}"]}).get("inventories", [])
    rows = same_name_first(rows, vm)
    if len(rows) != 1:
        from zmn.api.errors import Conflict

        if rows:
            raise Conflict(
                f"{len(rows)} VMs are named {vm!r}; give the VM's UUID or the NIC's",
                code="CLI.AMBIGUOUS_NAME",
                field="vmNicUuid",
            )
        raise NotFound(
            f"no VM NIC and no VM named {vm!r}", code="VM_INSTANCE.NOT_FOUND", field="vmNicUuid"
        )
    nics = rows[0].get("vmNics") or []
    if not nics:
        raise NotFound(f"VM {vm!r} has no NIC", code="VM_NIC.NOT_FOUND", field="vmNicUuid")
    if every:
        return [str(n["uuid"]) for n in nics]
    default = rows[0].get("defaultL3NetworkUuid")
    nics = sorted(nics, key=lambda n: (n.get("l3NetworkUuid") != default, n.get("deviceId", 0)))
    return [str(nics[0]["uuid"])]


# ----------------------------------------------------------------- confirmation


def confirm(
    client: Client, cat: Catalogue, res: Resource | None, verb: str, target: str, err: TextIO
) -> bool:
    """Ask before destroying a running VM or deleting what others depend on; True: go on.
    The caller asks only on a terminal and without ``--yes``."""
    if res is None or not res.query:
        return True
    key = "uuid" if UUID_RE.match(target) else "name"
    rows = client.call(res.query, {"conditions": [f"{key}={target}"]}).get("inventories", [])
    if len(rows) != 1:
        return True  # the call itself says what is wrong (not found, ambiguous)
    row = rows[0]
    name = row.get("name") or target
    why = []
    if row.get("state") == "Running":
        why.append("it is running")
    if verb == "delete":
        why += dependents(client, cat, res, str(row.get("uuid")))
    if not why:
        return True
    err.write(f"{res.cli} {name}: {'; '.join(why)}. {verb} it? [y/N] ")
    err.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def dependents(client: Client, cat: Catalogue, res: Resource, uuid: str) -> list[str]:
    """``2 cluster(s)``, ...: rows of other types whose reference field names ``uuid``."""
    out = []
    for other in cat.resources.values():
        if not other.query or other.name == res.name:
            continue
        for field in other.fields:
            if field.get("resource") != res.name:
                continue
            found = client.call(
                other.query, {"conditions": [f"{field['name']}={uuid}"], "count": True}
            )
            total = int(found.get("total") or 0)
            if total:
                out.append(f"{total} {other.cli}{'' if total == 1 else 's'} depend on it")
            break
    return out


# ----------------------------------------------------------------- what was done

_AWAY = ("remove", "delete", "detach")
_IRREGULAR = {"stop": "stopped", "set": "set", "reset": "reset", "get": "got", "run": "ran"}


def past(verb: str) -> str:
    """``stop`` -> ``stopped``, ``change-state`` -> ``changed state of``, ``add-nic`` ->
    ``added nic to``, ``remove-nic`` -> ``removed nic from``."""
    first, _, rest = verb.partition("-")
    if first in _IRREGULAR:
        done = _IRREGULAR[first]
    elif first.endswith("e"):
        done = first + "d"
    elif first.endswith("y") and first[-2:-1] not in "aeiou":
        done = first[:-1] + "ied"
    else:
        done = first + "ed"
    if not rest:
        return done
    to = "to" if first in ("add", "attach") else "from" if first in _AWAY else "of"
    return f"{done} {rest.replace('-', ' ')} {to}"


def said(
    res: Resource | None, verb: str, args: dict[str, Any], target: str | None, result: Any
) -> str:
    """The line on stderr after a mutating command: ``stopped vm web1 (3f2a9c1d)``."""
    inv = result.get("inventory") if isinstance(result, dict) else None
    inv = inv if isinstance(inv, dict) else {}
    kind = res.cli if res is not None else "resource"
    name = inv.get("name") or target or args.get("name") or args.get("uuid") or ""
    uuid = str(inv.get("uuid") or "")
    if UUID_RE.match(str(name)) and not uuid:
        name, uuid = "", str(name)
    short = f" ({short_id(uuid)})" if uuid else ""
    return f"{past(verb)} {kind} {name}{short}".replace("  ", " ").rstrip() + "\n"
