"""API messages: typed structs, their parameter metadata and decoding from the wire.

An API is a ``msgspec.Struct`` subclass decorated with :func:`api`. Parameters carry their
documentation and resource references as ``Annotated`` metadata, so the catalogue, the CLI,
completion and the man pages are all derived from the class itself::

    @api(resource="Zone", verb="create")
    class CreateZone(CreateMessage):
        \"\"\"Create a zone, the top of the resource tree.\"\"\"
        name: Annotated[str, Doc("zone name")]

Decoding (:func:`decode_args`) accepts the strings a shell produces (``cpuNum=2``,
``backupStorageUuids=a,b``) as well as typed JSON, rejects unknown parameters by name with
suggestions, and turns every failure into :class:`InvalidArgument` naming the field.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin

import msgspec

from zmn.api.errors import InvalidArgument
from zmn.api.limits import Range, Text, check_value, int_range, text_limit
from zmn.api.querylang import split_list

UUID_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Doc:
    """Documentation of one parameter or field."""

    text: str


@dataclass(frozen=True)
class Ref:
    """The parameter holds the UUID (or the unique name) of a resource of this type.

    ``read``: the handler reads the row by UUID itself and answers ``NotFound`` naming the
    parameter when there is none, so the API's reference check does not look a UUID up a
    second time where only existence is checked (an admin caller; a type no account owns and
    no access filter limits). A name is still resolved, and a normal account's ownership and
    access still checked, up front."""

    resource: str
    read: bool = False


@dataclass(frozen=True)
class Secret:
    """The parameter is a secret: never logged, scrubbed from shell history."""


@dataclass
class ApiSpec:
    """What the catalogue says about one API besides its parameters."""

    name: str
    resource: str | None = None
    verb: str | None = None
    admin: bool = False
    long: bool = False
    mutating: bool = True
    public: bool = False  # callable without a session (LogInByAccount, Ping)
    rows: str | None = None  # the type of the reply's inventories when not ``resource``
    internal: bool = False  # service-to-service only: not in the catalogue, refused from clients
    summary: str = ""
    service: str = ""  # filled in when a service registers its handler


class ApiMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every API request."""

    __api__: ClassVar[ApiSpec]


class CreateMessage(ApiMessage, kw_only=True):
    """Base of create APIs: idempotent on ``resourceUuid``, tags attached at creation."""

    resourceUuid: Annotated[
        str | None, Doc("UUID to give the new resource; repeating a create with it is a no-op")
    ] = None
    description: Annotated[str | None, Doc("free text")] = None
    systemTags: Annotated[list[str], Doc("system tags to attach, e.g. hostname::web1")] = []
    userTags: Annotated[list[str], Doc("user tags to attach")] = []


class DeleteMessage(ApiMessage, kw_only=True):
    """Base of delete APIs."""

    uuid: Annotated[str, Doc("UUID or name of the resource to delete")]
    cascade: Annotated[
        bool, Doc("also delete the resources that depend on this one instead of refusing")
    ] = False


M = TypeVar("M", bound=type[ApiMessage])


def api(
    name: str | None = None,
    *,
    resource: str | None = None,
    verb: str | None = None,
    admin: bool = False,
    long: bool = False,
    mutating: bool = True,
    public: bool = False,
    internal: bool = False,
    rows: str | None = None,
) -> typing.Callable[[M], M]:
    """Mark a struct as an API; the class name is the API name unless given."""

    def mark(cls: M) -> M:
        doc = (cls.__doc__ or "").strip()
        cls.__api__ = ApiSpec(
            name=name or cls.__name__,
            resource=resource,
            verb=verb,
            admin=admin,
            long=long,
            mutating=mutating,
            public=public,
            internal=internal,
            rows=rows,
            summary=doc.splitlines()[0] if doc else "",
        )
        return cls

    return mark


# --------------------------------------------------------------------------- parameters


@dataclass
class Param:
    """One parameter as the catalogue describes it."""

    name: str
    type: dict[str, Any]
    required: bool
    default: Any = None
    doc: str = ""
    ref: str | None = None
    secret: bool = False
    range: Range | None = None  # declared on the field; else zmn.api.limits by name
    text: Text | None = None
    ref_read: bool = False  # Ref(read=True): the handler looks the UUID up itself

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "required": self.required, **self.type}
        out.update(self.limits())
        if not self.required:
            out["default"] = self.default
        if self.doc:
            out["doc"] = self.doc
        if self.ref:
            out["resource"] = self.ref
        if self.secret:
            out["secret"] = True
        if self.type.get("type") == "int" and byte_sized(self.name):
            out["unit"] = "bytes"
        return out

    def limits(self) -> dict[str, Any]:
        """The catalogue's ``min``/``max`` (numbers) or ``maxLength`` (text) of this parameter."""
        kind = self.type.get("type")
        if kind == "list":
            kind = self.type.get("items", {}).get("type")
        if kind in ("int", "float"):
            rng = int_range(self.name, self.range)
            return {"min": rng.min, "max": rng.max}
        if kind == "string":
            return {"maxLength": text_limit(self.name, self.text).max_length}
        return {}

    def check(self, api_name: str, value: Any) -> None:
        """Refuse a decoded value outside this parameter's limits (zmn.api.limits)."""
        check_value(api_name, self.name, value, self.range or int_range(self.name), self.text)


def byte_sized(name: str) -> bool:
    """A number of bytes, by ZStack's names (``memorySize``, ``diskSize``, ``size``,
    ``totalCapacity``; not ``cpuCapacity``): the catalogue says ``"unit": "bytes"``, input
    takes ``2G``/``20GiB``, tables print ``2.0 GiB``."""
    return (name == "size" or name.endswith(("Size", "Capacity"))) and "cpu" not in name.lower()


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgtp]?)(i?b?)\s*$", re.I)


def parse_size(text: str, field_name: str) -> int:
    """``2G``, ``20GiB``, ``512M``, ``1.5T``, ``4096`` as bytes (K, M, G... are powers of
    1024, as in ZStack); an error naming the field otherwise."""
    match = _SIZE_RE.match(text)
    if match is None or (match.group(3) and not match.group(2) and match.group(3).lower() != "b"):
        raise InvalidArgument(
            f"{field_name}: {text!r} is not a size; give bytes or a number with K, M, G, T"
            " or P (2G, 512M, 20GiB)",
            code="ARG.INVALID",
            field=field_name,
        )
    number, unit = match.group(1), match.group(2).upper()
    scale = 1024 ** " KMGTP".index(unit) if unit else 1
    return int(float(number) * scale) if "." in number else int(number) * scale


_PARAMS_CACHE: dict[type, list[Param]] = {}


def params_of(cls: type[ApiMessage]) -> list[Param]:
    """Parameters of an API in declaration order (base-class parameters last)."""
    cached = _PARAMS_CACHE.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls, include_extras=True)
    result: list[Param] = []
    for f in msgspec.structs.fields(cls):
        hint = hints[f.name]
        doc, ref, secret, ref_read = "", None, False, False
        rng: Range | None = None
        text: Text | None = None
        base = hint
        if get_origin(hint) is Annotated:
            base, *extras = get_args(hint)
            for extra in extras:
                if isinstance(extra, Doc):
                    doc = extra.text
                elif isinstance(extra, Ref):
                    ref, ref_read = extra.resource, extra.read
                elif isinstance(extra, Secret):
                    secret = True
                elif isinstance(extra, Range):
                    rng = extra
                elif isinstance(extra, Text):
                    text = extra
        required = f.required
        default = None
        if not required:
            default = f.default_factory() if f.default is msgspec.NODEFAULT else f.default
        result.append(
            Param(
                f.name,
                describe_type(base),
                required,
                default,
                doc,
                ref,
                secret,
                rng,
                text,
                ref_read,
            )
        )
    own = set(getattr(cls, "__annotations__", {}))
    result.sort(key=lambda p: 0 if p.name in own else 1)
    _PARAMS_CACHE[cls] = result
    return result


def describe_type(tp: Any) -> dict[str, Any]:
    """A JSON description of a parameter type, as the catalogue publishes it."""
    origin = get_origin(tp)
    if origin is Annotated:
        return describe_type(get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        out: dict[str, Any] = describe_type(args[0]) if len(args) == 1 else {"type": "any"}
        out["nullable"] = True
        return out
    if origin is Literal:
        return {"type": "enum", "enum": list(get_args(tp))}
    if origin in (list, tuple, set):
        (item,) = get_args(tp)[:1] or (str,)
        return {"type": "list", "items": describe_type(item)}
    if origin is dict or tp is dict:
        return {"type": "map"}
    names = {str: "string", int: "int", bool: "bool", float: "float"}
    if tp in names:
        return {"type": names[tp]}
    return {"type": "any"}


# --------------------------------------------------------------------------- decoding

_MISSING_RE = re.compile(r"missing required field `([^`]+)`")
_AT_RE = re.compile(r"^(.*?)(?: - at `\$\.([A-Za-z0-9_]+)(?:\[\d+\])?[^`]*`)?$")


def suggest(word: str, choices: typing.Iterable[str]) -> list[str]:
    """Close matches for a did-you-mean hint."""
    return difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)


def decode_args(cls: type[ApiMessage], args: dict[str, Any]) -> ApiMessage:
    """Build an API message from wire arguments or shell strings, naming the bad field."""
    params = {p.name: p for p in params_of(cls)}
    name = cls.__api__.name
    for key in args:
        if key not in params:
            close = suggest(key, params)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise InvalidArgument(
                f"{name} has no parameter {key!r}{hint} (parameters: {', '.join(params)})",
                code="ARG.UNKNOWN",
                field=key,
                choices=list(params),
            )
    coerced: dict[str, Any] = {}
    for key, value in args.items():
        coerced[key] = _coerce(params[key], value)
    try:
        msg = msgspec.convert(coerced, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise _field_error(name, params, str(exc)) from None
    if not cls.__api__.internal:  # internal messages are built by services, not clients
        for key in args:
            params[key].check(name, getattr(msg, key))
    return msg


def _coerce(param: Param, value: Any) -> Any:
    """Shell strings to what msgspec's lax conversion cannot do by itself."""
    kind = param.type.get("type")
    if isinstance(value, str):
        if value == "" and param.type.get("nullable"):
            return None
        if kind == "list":
            return split_list(value)
        if kind == "map":
            return _parse_map(param.name, value)
        if kind == "int" and byte_sized(param.name) and not value.strip().isdigit():
            return parse_size(value, param.name)
        if kind == "enum" and value not in param.type["enum"]:
            same = [e for e in param.type["enum"] if str(e).lower() == value.lower()]
            return same[0] if len(same) == 1 else value  # enum values are not case-sensitive
    return value


def _parse_map(field_name: str, value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in split_list(value):
        key, sep, val = part.partition(":")
        if not sep:
            raise InvalidArgument(
                f"{field_name}: expected key:value pairs separated by commas, got {part!r}",
                field=field_name,
            )
        out[key.strip()] = val.strip()
    return out


def _field_error(api_name: str, params: dict[str, Param], text: str) -> InvalidArgument:
    missing = _MISSING_RE.search(text)
    if missing:
        field_name = missing.group(1)
        doc = params[field_name].doc if field_name in params else ""
        return InvalidArgument(
            f"{api_name}: missing required parameter {field_name!r}" + (f" ({doc})" if doc else ""),
            code="ARG.MISSING",
            field=field_name,
        )
    match = _AT_RE.match(text)
    reason, field_name = (match.group(1), match.group(2)) if match else (text, None)
    if field_name and field_name in params:
        expected = params[field_name].type
        if expected.get("type") == "enum":
            reason = f"must be one of {', '.join(map(str, expected['enum']))}"
        return InvalidArgument(
            f"{api_name}: invalid {field_name}: {reason[0].lower() + reason[1:]}",
            code="ARG.INVALID",
            field=field_name,
            expected=expected,
        )
    return InvalidArgument(f"{api_name}: {text}", code="ARG.INVALID")


def message_to_args(msg: ApiMessage) -> dict[str, Any]:
    """The arguments of a message as plain JSON-able data (for jobs, audit, replay)."""
    out: dict[str, Any] = msgspec.to_builtins(msg)
    return out


REDACTED = "*****"


def redacted_args(msg: ApiMessage) -> dict[str, Any]:
    """:func:`message_to_args` with every ``Secret()`` parameter that is set masked (for the
    job table and logs: a password given to a long API must not be stored with its job)."""
    out = message_to_args(msg)
    for p in params_of(type(msg)):
        if p.secret and out.get(p.name) is not None:
            out[p.name] = REDACTED
    return out


@dataclass
class ApiTable:
    """The APIs a node serves, by name."""

    apis: dict[str, type[ApiMessage]] = field(default_factory=dict)

    def add(self, cls: type[ApiMessage]) -> None:
        self.apis[cls.__api__.name] = cls

    def get(self, name: str) -> type[ApiMessage]:
        cls = self.apis.get(name)
        if cls is None:
            from zmn.api.errors import NotFound

            close = suggest(name, self.apis)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise NotFound(f"no API named {name!r}{hint}", code="API.NOT_FOUND", field="api")
        return cls
