"""The catalogue model: which APIs, resources and verbs the connected node offers.

The node publishes a catalogue (``GetApiCatalogue``). This module turns it into the command
grammar: each resource type's ``cli`` name (plus a few short aliases) is a command, each API
whose ``resource`` is that type is a verb, and ``Query<Type>`` becomes ``list`` and ``get``.
When two APIs share a resource and verb, both are named by their kebab-case API name
(``create-l2-vlan-network``), so no verb is ever ambiguous.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # a completion callback imports this module: nothing but re at run time
    from collections.abc import Iterable
    from typing import Any

# Short names operators type every day; an alias only counts when its type is loaded.
ALIASES = {
    "vm": "VmInstance",
    "ps": "PrimaryStorage",
    "bs": "BackupStorage",
    "l2": "L2Network",
    "l3": "L3Network",
    "sg": "SecurityGroup",
}
BUILTIN_VERBS = ("list", "get")


class LazyPattern:
    """``re.compile(pattern, flags)`` on first use: a cold command compiles only the
    expressions it uses (each compile costs 0.1-0.3 ms; the one-shot path defines a dozen)."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(*self._args)
        return getattr(compiled, name)


_KEBAB_RE = LazyPattern(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def kebab(name: str) -> str:
    """``CreateL2VlanNetwork`` -> ``create-l2-vlan-network``."""
    return _KEBAB_RE.sub("-", name).lower()


def camel(option: str) -> str:
    """``sort-by`` -> ``sortBy``, ``l3-network-uuid`` -> ``l3NetworkUuid``; camelCase stays."""
    first, *rest = option.split("-")
    return first + "".join(p[:1].upper() + p[1:] for p in rest if p)


def suggest(word: str, choices: Iterable[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)


class Record:
    """A plain record: equality and repr over ``_fields``, like a dataclass, without
    :mod:`dataclasses` (whose import of :mod:`inspect` costs a Tab several ms)."""

    _fields: tuple[str, ...] = ()
    __hash__ = None  # type: ignore[assignment] # mutable, as a dataclass with eq

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)  # noqa: S101 - type narrowing for mypy, not a runtime check
        return self._values() == other._values()

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{self.__class__.__qualname__}({args})"


class Param(Record):
    _fields = ("name", "type", "required", "default", "doc", "raw")

    def __init__(
        self, name: str, type: str, required: bool, default: Any, doc: str, raw: dict[str, Any]
    ) -> None:
        self.name = name
        self.type = type
        self.required = required
        self.default = default
        self.doc = doc
        self.raw = raw

    @property
    def is_list(self) -> bool:
        return self.type == "list"

    def type_text(self) -> str:
        if self.type == "enum":
            return "|".join(str(v) for v in self.raw.get("enum", []))
        if self.type == "list":
            item = self.raw.get("items", {}).get("type", "string")
            return f"list of {item}"
        ref = self.raw.get("resource")
        return f"{self.type} ({ref})" if ref else self.type


class Api(Record):
    _fields = ("name", "resource", "verb", "summary", "doc", "long", "params")

    def __init__(
        self,
        name: str,
        resource: str | None,
        verb: str | None,
        summary: str,
        doc: str,
        long: bool,
        params: dict[str, Param] | None = None,
        raw_params: list[dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self.resource = resource
        self.verb = verb
        self.summary = summary
        self.doc = doc
        self.long = long
        self._params = params
        self._raw_params = raw_params or []
        self.mutating = True  # changes something (the catalogue's "mutating")
        self.rows: str | None = None  # the reply's inventories' type when not ``resource``

    @property
    def params(self) -> dict[str, Param]:
        """By name; made from the catalogue's ``params`` at first use (a completion needs
        the parameters of one API, not of the hundreds a catalogue has)."""
        if self._params is None:
            self._params = {p["name"]: _param(p) for p in self._raw_params}
        return self._params

    @params.setter
    def params(self, value: dict[str, Param]) -> None:
        self._params = value

    @property
    def is_query(self) -> bool:
        return self.verb == "query" and self.name.startswith("Query")


class Resource(Record):
    _fields = ("name", "cli", "summary", "columns", "fields", "joins", "verbs", "query", "groups")

    def __init__(
        self,
        name: str,  # type name, e.g. L3Network
        cli: str,  # command word, e.g. l3-network
        summary: str = "",
        columns: list[str] | None = None,
        fields: list[dict[str, Any]] | None = None,
        joins: list[dict[str, Any]] | None = None,
        verbs: dict[str, str] | None = None,  # verb -> API name
        query: str | None = None,  # Query<Type> API name
        groups: dict[str, list[str]] | None = None,  # verb shared by APIs -> their names
    ) -> None:
        self.name = name
        self.cli = cli
        self.summary = summary
        self.columns: list[str] = ["uuid", "name"] if columns is None else columns
        self.fields: list[dict[str, Any]] = [] if fields is None else fields
        self.joins: list[dict[str, Any]] = [] if joins is None else joins
        self.verbs: dict[str, str] = {} if verbs is None else verbs
        self.query = query
        self.groups: dict[str, list[str]] = {} if groups is None else groups


class Catalogue:
    """Lookups over one catalogue document (the ``catalogue`` member of GetApiCatalogue)."""

    def __init__(self, data: dict[str, Any], digest: str = "") -> None:
        self.data = data
        self.hash = digest
        self.apis: dict[str, Api] = {a["name"]: _api(a) for a in data.get("apis", [])}
        self.resources: dict[str, Resource] = {}  # by cli name
        self._by_type: dict[str, Resource] = {}
        for r in data.get("resources", []):
            res = Resource(
                r["name"],
                r.get("cli") or kebab(r["name"]),
                r.get("summary", ""),
                list(r.get("columns") or ["uuid", "name"]),
                list(r.get("fields", [])),
                list(r.get("joins", [])),
            )
            self._add(res)
        for a in self.apis.values():
            if a.resource and a.resource not in self._by_type:
                self._add(Resource(a.resource, kebab(a.resource)))
        for res in self._by_type.values():
            self._assign_verbs(res)
        self.error_kinds: dict[str, int] = dict(data.get("errorKinds", {}))

    def _add(self, res: Resource) -> None:
        self.resources[res.cli] = res
        self._by_type[res.name] = res

    def _assign_verbs(self, res: Resource) -> None:
        by_verb: dict[str, list[Api]] = {}
        for a in self.apis.values():
            if a.resource != res.name:
                continue
            if a.is_query and res.query is None:
                res.query = a.name
                continue
            by_verb.setdefault(a.verb or kebab(a.name), []).append(a)
        for verb, apis in by_verb.items():
            if len(apis) == 1 and verb not in (*BUILTIN_VERBS, "help"):
                res.verbs[verb] = apis[0].name
            else:
                for a in apis:
                    res.verbs[kebab(a.name)] = a.name
                if verb not in (*BUILTIN_VERBS, "help"):  # the API is told by the arguments
                    res.groups[verb] = [a.name for a in apis]

    def resource(self, word: str) -> Resource | None:
        """A resource by cli name, short alias, type name or kebab type name."""
        if word in self.resources:
            return self.resources[word]
        if word in ALIASES and ALIASES[word] in self._by_type:
            return self._by_type[ALIASES[word]]
        if word in self._by_type:
            return self._by_type[word]
        for res in self._by_type.values():
            if kebab(res.name) == word or res.name.lower() == word.lower():
                return res
        return None

    def resource_of_type(self, type_name: str | None) -> Resource | None:
        return self._by_type.get(type_name) if type_name else None

    def verbs(self, res: Resource) -> list[str]:
        """Every verb of a resource, ``list`` and ``get`` first."""
        builtin = list(BUILTIN_VERBS) if res.query else []
        return builtin + sorted({*res.verbs, *res.groups})

    def verb_summary(self, res: Resource, verb: str) -> tuple[str, str]:
        """(summary, API name) of a verb; a shared verb names its APIs."""
        group = res.groups.get(verb)
        if group is not None:
            names = " or ".join(group)
            return f"{names}, told apart by the options given", names
        api = self.apis[res.verbs[verb]]
        return api.summary, api.name

    def resource_words(self) -> list[str]:
        """Words that name a resource on the command line (for did-you-mean)."""
        words = set(self.resources)
        words.update(a for a, t in ALIASES.items() if t in self._by_type)
        return sorted(words)

    def aliases_of(self, res: Resource) -> list[str]:
        return sorted(a for a, t in ALIASES.items() if t == res.name and a != res.cli)


def positional_slot(api: Api) -> str | None:
    """The parameter a leading NAME_OR_UUID fills: ``uuid``; else the one reference to the
    API's own resource (``ps attach PS --cluster-uuid C``); else ``name`` (creates)."""
    if "uuid" in api.params:
        return "uuid"
    own = [
        p.name
        for p in api.params.values()
        if api.resource and p.raw.get("resource") == api.resource
    ]
    if len(own) == 1:
        return own[0]
    return "name" if "name" in api.params else None


def _param(p: dict[str, Any]) -> Param:
    return Param(
        p["name"],
        str(p.get("type", "any")),
        bool(p.get("required")),
        p.get("default"),
        str(p.get("doc", "")),
        p,
    )


def _api(a: dict[str, Any]) -> Api:
    api = Api(
        a["name"],
        a.get("resource"),
        a.get("verb"),
        a.get("summary", ""),
        a.get("doc", ""),
        bool(a.get("long")),
        raw_params=list(a.get("params", [])),
    )
    api.mutating = bool(a.get("mutating", True))
    api.rows = a.get("rows")
    return api
