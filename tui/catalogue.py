"""The dashboard's reading of the API catalogue: views, aliases, actions, drill-downs, capacity.

Nothing here names a field or an API of a particular resource type. A view exists for every
resource type that has a ``Query<Type>`` API; its columns are the catalogue's ``columns``;
actions are the type's mutating APIs whose only required parameter besides ``uuid`` is at
most one enum (``stateEvent``), one action per enum value; drill-downs follow the joins;
capacity bars come from ``total<X>Capacity``/``available<X>Capacity`` field pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tui.console import CONSOLE_API

# Order of the overview's resource list and of equal-rank alias conflicts. Types not named
# here still appear, after these, alphabetically: this only orders, it never filters.
PREFERRED_ORDER = (
    "Zone",
    "Cluster",
    "Host",
    "VmInstance",
    "PrimaryStorage",
    "BackupStorage",
    "L2Network",
    "L3Network",
    "Image",
    "Volume",
)
# Verbs that need more input than a confirmation can give, or are not row actions.
NOT_ACTIONS = {"create", "add", "update", "query", "get"}
DANGEROUS = {"delete", "destroy", "expunge", "detach", "remove"}
CONTAINERS = ("Zone", "Cluster")
FORM_TYPES = {"string", "int", "bool", "enum"}
_CAPACITY = re.compile(r"^total(\w*)Capacity$")


def camel_case(verb: str) -> str:
    """``attach-l3`` -> ``attachL3``: a CLI verb as the state machine names the operation."""
    head, *rest = verb.split("-")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@dataclass
class ResourceInfo:
    """One resource type as the dashboard shows it."""

    name: str
    cli: str
    summary: str
    columns: list[str]
    fields: dict[str, dict[str, Any]]
    joins: list[dict[str, Any]]
    query_api: str | None

    def ref(self, field_name: str) -> str | None:
        """The resource type a field holds the UUID of, if any."""
        return self.fields.get(field_name, {}).get("resource")

    @property
    def health_fields(self) -> list[str]:
        return [f for f in ("state", "status") if f in self.fields]

    @property
    def default_sort(self) -> str | None:
        return "name" if "name" in self.fields else None


@dataclass(frozen=True)
class Param:
    """A parameter an action's form asks for (``hostUuid`` of ``MigrateVm``)."""

    name: str
    type: str  # string, int, bool, enum
    required: bool = False
    doc: str = ""
    enum: tuple[str, ...] = ()
    resource: str | None = None  # the type whose UUID it holds: the form offers a picker


@dataclass(frozen=True)
class Action:
    """A row action: one API call per selected resource with its UUID in ``subject``
    (``uuid``, or ``vmInstanceUuid`` for ``MigrateVm``), fixed ``args``, and for a form
    action the ``params`` the user fills in first."""

    api: str
    label: str
    args: tuple[tuple[str, str], ...] = ()
    long: bool = False
    doc: str = ""
    subject: str = "uuid"
    params: tuple[Param, ...] = ()

    @property
    def dangerous(self) -> bool:
        return self.label.rstrip("…").split("-")[0] in DANGEROUS

    @property
    def form(self) -> bool:
        return bool(self.params)

    def describe(self, values: dict[str, Any] | None = None) -> str:
        pairs = [*self.args, *((values or {}).items())]
        extra = " ".join(f"{k}={v}" for k, v in pairs)
        return f"{self.api} {extra}".strip()


@dataclass(frozen=True)
class Drill:
    """A related view: ``target`` rows matching ``condition`` (``{uuid}`` / ``{value}`` filled)."""

    target: str
    label: str
    condition: str
    source_field: str = "uuid"  # the row field whose value fills the condition
    parent: bool = False

    def conditions_for(self, row: dict[str, Any]) -> list[str] | None:
        value = row.get(self.source_field)
        if value in (None, ""):
            return None
        return [self.condition.format(value=value)]


@dataclass(frozen=True)
class Metric:
    """A capacity pair on a resource type, summed per zone and per cluster."""

    resource: str
    label: str
    total: str
    available: str
    unit: str  # "bytes" or "count"
    groups: tuple[tuple[str, str], ...] = ()  # (field, container type): ("zoneUuid", "Zone")

    def group_field(self, container: str) -> str | None:
        return next((f for f, c in self.groups if c == container), None)


@dataclass
class Catalogue:
    raw: dict[str, Any]
    resources: dict[str, ResourceInfo] = field(default_factory=dict)
    apis: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.apis = {a["name"]: a for a in self.raw.get("apis", [])}
        for r in self.raw.get("resources", []):
            query = f"Query{r['name']}"
            self.resources[r["name"]] = ResourceInfo(
                name=r["name"],
                cli=r.get("cli") or r["name"].lower(),
                summary=r.get("summary", ""),
                columns=list(r.get("columns") or ["uuid", "name"]),
                fields={f["name"]: f for f in r.get("fields", [])},
                joins=list(r.get("joins", [])),
                query_api=query if query in self.apis else None,
            )
        self.aliases = self._make_aliases()

    def has_param(self, api: str, param: str) -> bool:
        return any(p.get("name") == param for p in self.apis.get(api, {}).get("params", []))

    # ------------------------------------------------------------------ views

    def views(self) -> list[ResourceInfo]:
        """Types with a query API, the preferred ones first."""
        return sorted(
            (r for r in self.resources.values() if r.query_api), key=lambda r: order_key(r.name)
        )

    def by_cli(self, cli: str) -> ResourceInfo | None:
        return next((r for r in self.resources.values() if r.cli == cli), None)

    def _centrality(self, name: str) -> int:
        return sum(
            1
            for r in self.resources.values()
            for f in r.fields.values()
            if f.get("resource") == name
        )

    def _make_aliases(self) -> dict[str, str]:
        """cli name, type name, cli's first word, initials and plurals; conflicts resolved."""
        ranked: dict[str, dict[str, tuple[int, int, int, str]]] = {}
        for r in self.views():
            parts = r.cli.split("-")
            candidates = [(0, r.cli), (0, r.name.lower()), (1, r.cli + "s"), (2, parts[0])]
            if len(parts) > 1:
                candidates.append((2, "".join(p[0] for p in parts)))
            for rank, alias in candidates:
                score = (rank, len(parts), -self._centrality(r.name), r.name)
                per_type = ranked.setdefault(alias, {})
                per_type[r.name] = min(per_type.get(r.name, score), score)
        out: dict[str, str] = {}
        for alias, by_type in ranked.items():
            scores = sorted(by_type.values())
            best = scores[0]
            if len(scores) > 1 and scores[1][:3] == best[:3]:
                continue  # a true tie: the alias would be a guess
            out[alias] = best[3]
        return out

    def resolve(self, text: str) -> str | None:
        """The type a palette entry names (``zone``, ``l3``, ``VmInstance``), if any."""
        key = text.strip().lstrip(":").strip().lower()
        if key in self.aliases:
            return self.aliases[key]
        for r in self.resources.values():
            if r.query_api and key == r.name.lower():
                return r.name
        return None

    def suggestions(self, text: str) -> list[tuple[str, str]]:
        """(alias, type) pairs matching a partial palette entry, the best first."""
        key = text.strip().lstrip(":").strip().lower()
        primary = {r.name: r.cli for r in self.views()}
        seen: set[str] = set()
        out: list[tuple[str, str]] = []
        matches = sorted(
            ((a, t) for a, t in self.aliases.items() if key in a),
            key=lambda at: (
                not at[0].startswith(key),
                at[0] != primary.get(at[1]),
                order_key(at[1]),
                at[0],
            ),
        )
        for alias, type_name in matches:
            if type_name not in seen:
                seen.add(type_name)
                out.append((alias, type_name))
        return out

    # ------------------------------------------------------------------ actions

    def actions(self, type_name: str) -> list[Action]:
        out: list[Action] = []
        for spec in self.apis.values():
            if spec.get("resource") != type_name or not spec.get("mutating", True):
                continue
            verb = spec.get("verb") or ""
            if verb in NOT_ACTIONS or spec["name"].startswith(
                ("Create", "Add", "Update", "Query", "Get")
            ):
                continue
            params = spec.get("params", [])
            subject = subject_param(type_name, params)
            if subject is None:
                continue
            others = [p for p in params if p.get("required") and p["name"] != subject]
            long = bool(spec.get("long"))
            doc = spec.get("summary", "")
            label = verb or spec["name"]
            if not others:
                out.append(Action(spec["name"], label, (), long, doc, subject))
            elif len(others) == 1 and others[0].get("type") == "enum":
                param = others[0]["name"]
                for value in others[0].get("enum", []):
                    out.append(
                        Action(spec["name"], str(value), ((param, str(value)),), long, doc, subject)
                    )
            # A form for the parameters a confirmation cannot give (MigrateVm's target host),
            # offered as "migrate…" next to the plain "migrate" (which takes the defaults).
            form = [p for p in params if p["name"] != subject and p.get("type") in FORM_TYPES]
            if any(p.get("required") and p.get("type") not in FORM_TYPES for p in params):
                continue
            single_enum = len(others) == 1 and others[0].get("type") == "enum"
            if form and not single_enum:
                out.append(
                    Action(
                        spec["name"],
                        label + "…",
                        (),
                        long,
                        doc,
                        subject,
                        tuple(
                            Param(
                                p["name"],
                                str(p.get("type")),
                                bool(p.get("required")),
                                str(p.get("doc") or ""),
                                tuple(str(v) for v in p.get("enum") or ()),
                                p.get("resource") if p.get("resource") in self.resources else None,
                            )
                            for p in form
                        ),
                    )
                )
        # one entry a verb: where a form exists it also takes the defaults (Enter through it);
        # but the console's "console…" is no form, it takes the console over: "console" stays
        forms = {(a.api, a.label.rstrip("…")) for a in out if a.form and a.api != CONSOLE_API}
        out = [a for a in out if a.form or (a.api, a.label) not in forms]
        out.sort(key=lambda a: (a.dangerous, a.form, a.api, a.label))
        return out

    def permits(self, type_name: str, action: Action, row: dict[str, Any]) -> bool:
        """Whether the row's state allows the action, by the type's state machine in the
        catalogue: its operations table, and for a ``stateEvent`` action its transitions (an
        event that leaves the state as it is is not offered; the API may map an event to
        several internal ones, so only a no-op hides it). What the catalogue does not
        describe is allowed."""
        machine = self.raw.get("stateMachines", {}).get(type_name)
        state = row.get("state")
        if not machine or not isinstance(state, str):
            return True
        allowed = machine.get("allowed", {})
        # the operation by the verb (attach-l3: attachL3) or by the API (changeInstanceOffering)
        for op in (camel_case(action.label.rstrip("…")), lower_camel(action.api)):
            if op in allowed:
                return state in allowed[op]
        event = dict(action.args).get("stateEvent")
        if event:  # an event that leaves the state as it is (enable an Enabled zone)
            return not any(
                t.get("state") == state and t.get("event") == event and t.get("next") == state
                for t in machine.get("transitions", [])
            )
        return True

    # ------------------------------------------------------------------ drill-downs

    def drills(self, type_name: str) -> list[Drill]:
        """Children (types referencing this one) first, then parents (types this one references)."""
        me = self.resources.get(type_name)
        if me is None:
            return []
        children: list[Drill] = []
        seen: set[tuple[str, str]] = set()
        for join in me.joins:
            target = self.resources.get(join.get("resource", ""))
            if target is None or target.query_api is None or join.get("aliasOf"):
                continue  # (ZStack's name for a join listed under ours)
            refs = [n for n, f in target.fields.items() if f.get("resource") == type_name]
            if refs:
                preferred = lower_camel(type_name) + "Uuid"
                column = preferred if preferred in refs else refs[0]
                cond = f"{column}={{value}}"
            else:
                back = [
                    j["name"]
                    for j in target.joins
                    if j.get("resource") == type_name and not j.get("aliasOf")
                ]
                if not back or any(me.ref(n) == target.name for n in me.fields):
                    continue  # a forward join: listed as a parent below
                cond = f"{back[0]}.uuid={{value}}"
            key = (target.name, cond)
            if key not in seen:
                seen.add(key)
                children.append(Drill(target.name, target.cli, cond))
        parents = [
            Drill(
                f["resource"], self.resources[f["resource"]].cli, "uuid={value}", name, parent=True
            )
            for name, f in me.fields.items()
            if f.get("resource") in self.resources and self.resources[f["resource"]].query_api
        ]
        return children + parents

    # ------------------------------------------------------------------ capacity

    def metrics(self) -> list[Metric]:
        out: list[Metric] = []
        for r in self.views():
            # An unqualified pair (totalCapacity) is the headline; qualified ones on the same
            # type (totalPhysicalCapacity) are details for its own view, not the overview.
            headline = "totalCapacity" in r.fields and "availableCapacity" in r.fields
            for name in r.fields:
                match = _CAPACITY.match(name)
                if not match or (headline and match.group(1)):
                    continue
                what = match.group(1)
                available = f"available{what}Capacity"
                if available not in r.fields:
                    continue
                label = (what or r.cli.split("-")[0]).lower()
                unit = "count" if re.search(r"Cpu|Ip|Count|Num", what) else "bytes"
                groups = tuple(
                    (n, f["resource"])
                    for n, f in r.fields.items()
                    if f.get("resource") in CONTAINERS
                )
                out.append(Metric(r.name, label, name, available, unit, groups))
        return out

    # ------------------------------------------------------------------ query completion

    def complete(self, type_name: str, path: str) -> list[str]:
        """Field names (and joins, with a trailing dot) for a partial dotted path."""
        rt = self.resources.get(type_name)
        *head, last = path.split(".")
        for hop in head:
            if rt is None:
                return []
            join = next((j for j in rt.joins if j["name"] == hop), None)
            rt = self.resources.get(join["resource"]) if join else None
        if rt is None:
            return []
        prefix = ".".join(head) + ("." if head else "")
        names = [prefix + n for n in rt.fields if n.startswith(last)]
        names += [prefix + j["name"] + "." for j in rt.joins if j["name"].startswith(last)]
        return names

    def enum_of(self, type_name: str, path: str) -> list[str]:
        rt = self.resources.get(type_name)
        *head, last = path.split(".")
        for hop in head:
            join = next((j for j in rt.joins if j["name"] == hop), None) if rt else None
            rt = self.resources.get(join["resource"]) if join else None
        if rt is None:
            return []
        return [str(v) for v in rt.fields.get(last, {}).get("enum", [])]

    @property
    def operators(self) -> list[dict[str, str]]:
        return list(self.raw.get("query", {}).get("operators", []))


def subject_param(type_name: str, params: list[dict[str, Any]]) -> str | None:
    """The parameter that names the row an action acts on: ``uuid``, or a required
    ``<type>Uuid`` holding the type's own UUID (``vmInstanceUuid`` for ``VmInstance``)."""
    names = {p["name"] for p in params}
    if "uuid" in names:
        return "uuid"
    own = lower_camel(type_name) + "Uuid"
    for p in params:
        if p["name"] == own and p.get("required") and p.get("resource", type_name) == type_name:
            return own
    return None


def order_key(name: str) -> tuple[int, str]:
    try:
        return PREFERRED_ORDER.index(name), name
    except ValueError:
        return len(PREFERRED_ORDER), name


def lower_camel(name: str) -> str:
    return name[0].lower() + name[1:] if name else name
