"""A fake node for tests: an in-memory catalogue and tables behind the client interface.

It is the one test seam of the dashboard (like httpx's mock transport): snapshot tests need
data that does not change from run to run, and UI tests of resource types the real node does
not have yet (``VmInstance``) show that views and actions come from the catalogue alone.
Integration tests use a real in-process node instead.

    fake = FakeNode.sample()
    app = ZtuiApp("fake:", client_factory=fake.client)
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from typing import Any

from zmn.api.errors import InvalidArgument, NotFound, Unavailable, ZmnError
from zmn.api.querylang import parse_condition

STAMP = "2025-01-01T00:00:00.000"


def _field(
    name: str, kind: str = "string", enum: list[str] | None = None, ref: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": kind}
    if enum:
        out["enum"] = enum
    if ref:
        out["resource"] = ref
    return out


def _resource(
    name: str,
    cli: str,
    columns: list[str],
    fields: list[dict[str, Any]],
    joins: list[tuple[str, str]],
) -> dict[str, Any]:
    base = [_field("uuid"), _field("name"), _field("description")]
    stamps = [_field("createDate", "timestamp"), _field("lastOpDate", "timestamp")]
    return {
        "name": name,
        "cli": cli,
        "summary": f"sample {cli}",
        "columns": columns,
        "fields": base + fields + stamps,
        "joins": [{"name": j, "resource": r} for j, r in joins],
    }


def _api(
    name: str, resource: str, verb: str, params: list[dict[str, Any]], **kw: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "resource": resource,
        "verb": verb,
        "summary": f"{name} (sample)",
        "mutating": verb not in ("query", "get"),
        "long": kw.get("long", False),
        "params": [{"name": "uuid", "required": True, "type": "string"}, *params],
    }


def _enum(name: str, values: list[str]) -> dict[str, Any]:
    return {"name": name, "required": True, "type": "enum", "enum": values}


STATE = ["Enabled", "Disabled"]
HOST_STATE = ["Enabled", "Disabled", "PreMaintenance", "Maintenance"]
VM_STATE = ["Running", "Stopped", "Starting", "Stopping"]


def sample_catalogue() -> dict[str, Any]:
    resources = [
        _resource(
            "Zone",
            "zone",
            ["uuid", "name", "state", "description"],
            [_field("state", enum=STATE)],
            [("cluster", "Cluster"), ("host", "Host")],
        ),
        _resource(
            "Cluster",
            "cluster",
            ["uuid", "name", "zoneUuid", "state"],
            [_field("zoneUuid", ref="Zone"), _field("state", enum=STATE)],
            [("zone", "Zone"), ("host", "Host")],
        ),
        _resource(
            "Host",
            "host",
            ["uuid", "name", "clusterUuid", "state", "status"],
            [
                _field("zoneUuid", ref="Zone"),
                _field("clusterUuid", ref="Cluster"),
                _field("state", enum=HOST_STATE),
                _field("status", enum=["Connected", "Connecting", "Disconnected"]),
                _field("totalCpuCapacity", "int"),
                _field("availableCpuCapacity", "int"),
                _field("totalMemoryCapacity", "int"),
                _field("availableMemoryCapacity", "int"),
            ],
            [("zone", "Zone"), ("cluster", "Cluster"), ("vmInstance", "VmInstance")],
        ),
        _resource(
            "VmInstance",
            "vm",
            ["uuid", "name", "hostUuid", "state"],
            [_field("hostUuid", ref="Host"), _field("state", enum=VM_STATE)],
            [("host", "Host")],
        ),
    ]
    apis = [
        {
            "name": f"Query{r['name']}",
            "resource": r["name"],
            "verb": "query",
            "mutating": False,
            "params": [],
        }
        for r in resources
    ]
    apis += [
        _api(
            "ChangeZoneState", "Zone", "change-state", [_enum("stateEvent", ["enable", "disable"])]
        ),
        _api(
            "ChangeClusterState",
            "Cluster",
            "change-state",
            [_enum("stateEvent", ["enable", "disable"])],
        ),
        _api(
            "ChangeHostState",
            "Host",
            "change-state",
            [_enum("stateEvent", ["enable", "disable", "maintain"])],
        ),
        _api("ReconnectHost", "Host", "reconnect", [], long=True),
        _api("StartVmInstance", "VmInstance", "start", []),
        _api("StopVmInstance", "VmInstance", "stop", []),
        _api("DestroyVmInstance", "VmInstance", "destroy", []),
        _api(
            "UpdateZone", "Zone", "update", [{"name": "name", "required": False, "type": "string"}]
        ),
    ]
    operators = [
        {"op": op, "doc": doc} for op, doc in (("=", "equal"), ("!=", "not equal"), ("~=", "like"))
    ]
    return {
        "apis": apis,
        "resources": resources,
        "query": {"operators": operators},
        "stateMachines": {
            "Zone": {
                "states": STATE,
                "transitions": [
                    {"state": state, "event": event, "next": NEXT_STATE[event]}
                    for state in STATE
                    for event in ("enable", "disable")
                ],
                "allowed": {},
            },
            "VmInstance": {
                "states": VM_STATE,
                "transitions": [],
                "allowed": {
                    "start": ["Stopped"],
                    "stop": ["Running"],
                    "destroy": ["Running", "Stopped"],
                },
            },
        },
    }


STATS = {
    "apiRatePerSecond": 12.5,
    "p50ms": 1.2,
    "p95ms": 4.8,
    "p99ms": 9.6,
    "apiInFlight": 1,
    "jobsInFlight": 0,
    "queueDepth": 0,
}
NEXT_STATE = {"enable": "Enabled", "disable": "Disabled", "maintain": "Maintenance"}
VM_NEXT = {"StartVmInstance": "Running", "StopVmInstance": "Stopped"}


class FakeNode:
    """Tables of rows by type; answers the APIs the dashboard sends and publishes events."""

    def __init__(self, catalogue: dict[str, Any] | None = None, *, keyset: bool = False) -> None:
        self.catalogue = catalogue or sample_catalogue()
        self.keyset = keyset  # Query APIs take ``after`` and reply ``next`` (cursor paging)
        if keyset:
            for spec in self.catalogue["apis"]:
                if spec["verb"] == "query":
                    spec["params"] = [*spec["params"], {"name": "after", "type": "string"}]
        self.tables: dict[str, dict[str, dict[str, Any]]] = {
            r["name"]: {} for r in self.catalogue["resources"]
        }
        self.clients: list[FakeClient] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.up = True
        self._ids = itertools.count(1)

    @classmethod
    def sample(cls) -> FakeNode:
        node = cls()
        for z in range(1, 3):
            zone = node.add(
                "Zone", f"z{z}", state="Enabled" if z == 1 else "Disabled", description=f"zone {z}"
            )
            for c in range(1, 3):
                cluster = node.add("Cluster", f"c{z}{c}", zoneUuid=zone["uuid"], state="Enabled")
                for h in range(1, 3):
                    host = node.add(
                        "Host",
                        f"h{z}{c}{h}",
                        zoneUuid=zone["uuid"],
                        clusterUuid=cluster["uuid"],
                        state="Enabled",
                        status="Connected" if h == 1 else "Disconnected",
                        totalCpuCapacity=32,
                        availableCpuCapacity=32 - 8 * h,
                        totalMemoryCapacity=64 * 2**30,
                        availableMemoryCapacity=(64 - 16 * h) * 2**30,
                    )
                    node.add("VmInstance", f"vm{z}{c}{h}", hostUuid=host["uuid"], state="Running")
        return node

    def add(self, type_name: str, name: str, **fields: Any) -> dict[str, Any]:
        n = next(self._ids)
        row = {"uuid": f"{n:08x}" + "0" * 24, "name": name, "description": None, **fields}
        row.update(createDate=STAMP, lastOpDate=STAMP)
        self.tables[type_name][row["uuid"]] = row
        return row

    def client(self, endpoint: str, session: str | None = None) -> FakeClient:
        return FakeClient(self)

    def publish(self, path: str, data: dict[str, Any]) -> None:
        frame = {"type": "event", "path": path, "time": 1735689600.0, "data": data}
        for client in self.clients:
            if client.subscribed and client.connected:
                client.events.put_nowait(frame)

    def create(self, type_name: str, name: str, **fields: Any) -> dict[str, Any]:
        row = self.add(type_name, name, **fields)
        cli = self._cli(type_name)
        self.publish(f"/{cli}/created", {"resourceType": type_name, "inventory": dict(row)})
        return row

    def drop_connections(self) -> None:
        self.up = False
        for client in list(self.clients):
            client.closed_error = Unavailable("connection closed", code="NODE.CONNECTION_CLOSED")
            client._open = False

    def _cli(self, type_name: str) -> str:
        return str(next(r["cli"] for r in self.catalogue["resources"] if r["name"] == type_name))

    # ------------------------------------------------------------------ API

    def handle(self, api: str, args: dict[str, Any]) -> Any:
        self.calls.append((api, args))
        if api == "GetApiCatalogue":
            return {"catalogue": self.catalogue, "hash": "fake"}
        if api in ("Subscribe", "Unsubscribe"):
            return {}
        if api == "GetManagementNodeStatus":
            return {"name": "fake", "version": "0.0.0"}
        if api == "GetManagementNodeStats":
            return dict(STATS)
        if api.startswith("Query") and api[5:] in self.tables:
            return self.query(api[5:], args)
        spec = next((a for a in self.catalogue["apis"] if a["name"] == api), None)
        if spec is None:
            raise NotFound(f"no API {api}", code="API.NOT_FOUND")
        row = self.tables[spec["resource"]].get(args.get("uuid", ""))
        if row is None:
            raise NotFound(f"no {spec['resource']} {args.get('uuid')}", code="RESOURCE.NOT_FOUND")
        old = row.get("state")
        if "stateEvent" in args:
            row["state"] = NEXT_STATE[args["stateEvent"]]
        elif api in VM_NEXT:
            row["state"] = VM_NEXT[api]
        if row.get("state") != old:
            self.publish(
                f"/{self._cli(spec['resource'])}/state/change",
                {
                    "resourceType": spec["resource"],
                    "uuid": row["uuid"],
                    "oldState": old,
                    "newState": row["state"],
                    "inventory": dict(row),
                },
            )
        return {"inventory": dict(row)}

    def query(self, type_name: str, args: dict[str, Any]) -> dict[str, Any]:
        rows = list(self.tables[type_name].values())
        for text in args.get("conditions") or []:
            cond = parse_condition(text)
            rows = [r for r in rows if self._match(type_name, r, cond.name, cond.op, cond.value)]
        if args.get("groupBy"):
            key = args["groupBy"]
            counts: dict[Any, int] = {}
            for r in rows:
                counts[r.get(key)] = counts.get(r.get(key), 0) + 1
            return {
                "groups": [
                    {key: k, "total": n}
                    for k, n in sorted(counts.items(), key=lambda kv: str(kv[0]))
                ]
            }
        if args.get("count"):
            return {"total": len(rows)}
        if args.get("sortBy"):
            rows.sort(
                key=lambda r: (str(r.get(args["sortBy"])), r["uuid"]),
                reverse=args.get("sortDirection") == "desc",
            )
        start, limit = int(args.get("start", 0)), int(args.get("limit", 1000))
        if self.keyset and args.get("after"):
            if "start" in args:
                raise InvalidArgument("after and start together", code="QUERY.BAD_PAGING")
            after = json.loads(base64.b64decode(args["after"]))
            start = next((i + 1 for i, r in enumerate(rows) if r["uuid"] == after), len(rows))
        page = [dict(r) for r in rows[start : start + limit]]
        more = start + limit < len(rows)
        if args.get("fields"):
            page = [{k: r.get(k) for k in args["fields"]} for r in page]
        out: dict[str, Any] = {"inventories": page}
        if self.keyset and more and page:
            out["next"] = base64.b64encode(json.dumps(page[-1]["uuid"]).encode()).decode()
        if args.get("replyWithCount"):
            out["total"] = len(rows)
        return out

    def _match(
        self, type_name: str, row: dict[str, Any], name: str, op: str, value: str | None
    ) -> bool:
        fields = {
            f["name"]
            for r in self.catalogue["resources"]
            if r["name"] == type_name
            for f in r["fields"]
        }
        if name not in fields:
            raise InvalidArgument(
                f"{type_name} has no field {name!r}", code="QUERY.UNKNOWN_FIELD", field=name
            )
        actual = "" if row.get(name) is None else str(row.get(name))
        if op == "=":
            return actual == value
        if op == "!=":
            return actual != value
        if op == "~=":
            return (value or "").strip("%").lower() in actual.lower()
        if op == "?=":
            return actual in (value or "").split(",")
        raise InvalidArgument(f"the fake node does not do {op}", code="QUERY.BAD_CONDITION")


class FakeClient:
    """Implements the part of :class:`~zmn.client.AsyncClient` the dashboard uses."""

    def __init__(self, node: FakeNode) -> None:
        self.node = node
        self.hello: dict[str, Any] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed_error: ZmnError | None = None
        self.subscribed = False
        self._open = False

    async def connect(self) -> FakeClient:
        if not self.node.up:
            raise Unavailable("cannot reach the fake node", code="NODE.UNREACHABLE")
        self.hello = {
            "type": "hello",
            "protocol": 1,
            "catalogueHash": "fake",
            "node": "fake",
            "auth": "peer",
        }
        self._open = True
        self.node.clients.append(self)
        return self

    async def close(self) -> None:
        self._open = False
        if self in self.node.clients:
            self.node.clients.remove(self)

    @property
    def connected(self) -> bool:
        return self._open

    async def call(self, api: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
        if not self._open:
            raise self.closed_error or Unavailable("not connected", code="NODE.NOT_CONNECTED")
        await asyncio.sleep(0)
        result = self.node.handle(api, dict(args or {}))
        if api == "Subscribe":
            self.subscribed = True
        return result


def screen_text(app: Any) -> str:
    """The current screen as plain text (what ``tmux capture-pane -p`` would show)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        record=True,
        color_system=None,
        legacy_windows=False,
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    text: str = console.export_text()
    return "\n".join(line.rstrip() for line in text.splitlines())


async def wait_until(pilot: Any, predicate: Any, timeout: float = 5.0, step: float = 0.05) -> bool:
    """Let the app run until ``predicate()`` is true; False when ``timeout`` passes first."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        await pilot.pause(step)
        if predicate():
            return True
    return bool(predicate())
