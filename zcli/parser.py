"""The command grammar, shared by one-shot commands, batch files and the interactive shell.

:func:`parse` takes the tokens after the global options and a :class:`Catalogue` and returns
a command object; it never talks to the node. The forms::

    api <ApiName> [key=value ...]                  raw call; for Query<Type>, conditions too
    <resource> <verb> [NAME_OR_UUID] [key=value ...] [--key value ...] [--flag]
    <resource> list [FIELD OP VALUE ...] [--count] [--limit N] [--sort-by F] ...
    <resource> get NAME_OR_UUID
    login --account A [--password P]   |   logout
    help [resource [verb]]   |   ... --help

``--key value``, ``--key=value`` and ``key=value`` are the same; ``--some-key`` is
``someKey``; ``--flag`` alone is ``true``; ``--image`` names ``imageUuid`` (see
:func:`zcli.inputs.alias`). For Query APIs, a ``key=value`` that is not a parameter is a
query condition (``name=z1``, ``cpuNum>=2``, ``vmNics.l3Network.name~=pub%``); a ``--key``
that is not a parameter is an error, never a condition. ``--`` ends the options: what
follows is plain words. ZStack's ``conditions=`` (a condition, or a JSON list of condition
objects) and ``timeout=`` (milliseconds, or with ``s``/``m``) are accepted too.
"""

from __future__ import annotations

import re

from zcli.catalogue import (
    Api,
    Catalogue,
    LazyPattern,
    Record,
    Resource,
    camel,
    kebab,
    positional_slot,
    suggest,
)
from zcli.inputs import UsageError, alias, condition_objects, pick_api, zstack_timeout
from zcli.words import ALL_OPERATORS, condition, condition_text
from zmn.api.errors import InvalidArgument

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["UsageError", "positional_slot"]  # re-exported from where they live

UUID_RE = LazyPattern(r"^[0-9a-f]{32}$")
_KEY_VALUE_RE = LazyPattern(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_CONDITION_RE = LazyPattern(r"^[A-Za-z_][A-Za-z0-9_.]*(!\?=|!~=|\?=|~=|!=|>=|<=|=|>|<)", re.S)
HELP_FLAGS = ("--help", "-h")
END_OF_OPTIONS = "--"
BOOL_WORDS = ("true", "false")


class ApiCall(Record):
    """Call one API. ``action`` is ``call``, ``list`` (a query) or ``get`` (one resource)."""

    _fields = ("api", "args", "action", "resource", "long", "target", "more", "timeout", "verb")

    def __init__(
        self,
        api: str,
        args: dict[str, Any] | None = None,
        action: str = "call",
        resource: str | None = None,  # resource type name, for table columns
        long: bool = False,
        target: str | None = None,  # get: the NAME_OR_UUID asked for
        more: list[str] | None = None,  # further targets: one call (one job) each
        timeout: float | None = None,  # ZStack's timeout= key, in seconds
        verb: str | None = None,  # the verb typed (destroy, delete...), for confirmations
    ) -> None:
        self.api = api
        self.args: dict[str, Any] = {} if args is None else args
        self.action = action
        self.resource = resource
        self.long = long
        self.target = target
        self.more: list[str] = [] if more is None else more
        self.timeout = timeout
        self.verb = verb

    def each(self) -> list[dict[str, Any]]:
        """The arguments of every call: one per target (``vm stop a b c``)."""
        if not self.more:
            return [self.args]
        slot = self.slot or ""
        return [self.args, *({**self.args, slot: t} for t in self.more)]

    @property
    def slot(self) -> str | None:
        """The parameter the targets fill (set by the parser when there are several)."""
        return getattr(self, "_slot", None)


class Help(Record):
    """Print help; ``topic`` is [], [resource], [resource, verb], ["api"] or ["api", Name]."""

    _fields = ("topic",)

    def __init__(self, topic: list[str] | None = None) -> None:
        self.topic: list[str] = [] if topic is None else topic


class Login(Record):
    _fields = ("account", "password")

    def __init__(self, account: str | None = None, password: str | None = None) -> None:
        self.account = account
        self.password = password


class Logout(Record):
    pass


Command = ApiCall | Help | Login | Logout


def did_you_mean(word: str, choices: list[str]) -> str:
    close = suggest(word, choices)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def parse(tokens: list[str], catalogue: Catalogue) -> Command:
    """Turn command tokens into a command object, or raise :class:`UsageError`."""
    if not tokens or tokens[0] in ("help", *HELP_FLAGS):
        return Help([t for t in tokens[1:] if t not in HELP_FLAGS])
    head, rest = tokens[0], tokens[1:]
    if any(t in HELP_FLAGS for t in rest):
        return Help([head, *[t for t in rest if t not in HELP_FLAGS][:1]])
    if head == "login":
        return _login(rest)
    if head == "logout":
        if rest:
            raise UsageError(f"logout takes no arguments, got {rest[0]!r}", field=rest[0])
        return Logout()
    if head == "api":
        return _raw(rest, catalogue)
    res = catalogue.resource(head)
    if res is None:
        words = [*catalogue.resource_words(), "api", "help", "login", "logout"]
        raise UsageError(
            f"unknown resource {head!r}{did_you_mean(head, words)}"
            f" (resources: {', '.join(catalogue.resource_words())}; see zcli help)",
            code="CLI.UNKNOWN_RESOURCE",
            field=head,
            choices=words,
        )
    return _resource(res, rest, catalogue)


def _raw(rest: list[str], catalogue: Catalogue) -> ApiCall:
    if not rest:
        raise UsageError("api needs an API name (zcli api --help lists them)", field="api")
    name, rest = rest[0], rest[1:]
    api = catalogue.apis.get(name)
    if api is None:
        raise UsageError(
            f"no API named {name!r}{did_you_mean(name, list(catalogue.apis))}"
            " (zcli api --help lists them)",
            code="CLI.UNKNOWN_API",
            field="api",
            choices=sorted(catalogue.apis),
        )
    args, positional = parse_args(api, rest)
    if positional:
        raise UsageError(
            f"unexpected argument {positional[0]!r}: use key=value", field=positional[0]
        )
    action = "list" if api.is_query else "call"
    timeout = args.pop(_TIMEOUT, None)
    return ApiCall(api.name, args, action, api.resource, api.long, timeout=timeout)


def _resource(res: Resource, rest: list[str], catalogue: Catalogue) -> ApiCall:
    verbs = catalogue.verbs(res)
    if not rest:
        raise UsageError(
            f"{res.cli} needs a verb: {', '.join(verbs)}",
            code="CLI.UNKNOWN_VERB",
            field="verb",
            choices=verbs,
        )
    verb, rest = rest[0], rest[1:]
    if verb in ("list", "get") and res.query:
        api = catalogue.apis[res.query]
        args, positional = parse_args(api, rest)
        timeout = args.pop(_TIMEOUT, None)
        if verb == "list":
            if positional:
                raise UsageError(
                    f"unexpected argument {positional[0]!r}: conditions are FIELD OP VALUE"
                    f" (operators: {' '.join(ALL_OPERATORS)})",
                    field=positional[0],
                )
            sort = args.get("sortBy")
            if isinstance(sort, str) and sort.startswith("-"):  # --sort-by -name: descending
                args["sortBy"], args["sortDirection"] = sort[1:], "desc"
            return ApiCall(api.name, args, "list", res.name, timeout=timeout, verb=verb)
        if len(positional) != 1:
            raise UsageError(f"{res.cli} get takes one NAME_OR_UUID", field="uuid")
        target = positional[0]
        key = "uuid" if UUID_RE.match(target) else "name"
        args["conditions"] = [f"{key}={target}", *args.get("conditions", [])]
        return ApiCall(api.name, args, "get", res.name, target=target, timeout=timeout, verb=verb)
    group = res.groups.get(verb)
    api_name = res.verbs.get(verb)
    if api_name is None and group is None:
        raise UsageError(
            f"{res.cli} has no verb {verb!r}{did_you_mean(verb, verbs)}"
            f" (verbs: {', '.join(verbs)})",
            code="CLI.UNKNOWN_VERB",
            field="verb",
            choices=verbs,
        )
    if group is not None:
        api, args, positional = pick_api(
            [catalogue.apis[n] for n in group], rest, parse_args, f"{res.cli} {verb}"
        )
    else:
        assert api_name is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        api = catalogue.apis[api_name]
        args, positional = parse_args(api, rest)
    timeout = args.pop(_TIMEOUT, None)
    call = ApiCall(api.name, args, "call", res.name, api.long, timeout=timeout, verb=verb)
    if positional:
        slot = positional_slot(api)
        several = slot == "uuid" or (slot is not None and slot.endswith("Uuid"))
        many = slot is not None and api.params[slot].is_list  # vm wait A B C: one call
        if slot is None or slot in args or (len(positional) > 1 and not (several or many)):
            raise UsageError(
                f"unexpected argument {positional[-1]!r}: use key=value or --key value",
                field=positional[-1],
            )
        args[slot] = positional if many else positional[0]
        call.target = positional[0]
        call.more = [] if many else positional[1:]
        call._slot = slot  # type: ignore[attr-defined] # read through ApiCall.slot
    return call


_TIMEOUT = "\0timeout"  # ZStack's timeout= key among the parsed arguments (no API's name)


def parse_args(api: Api, tokens: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The API arguments (conditions included for queries) and the positional tokens."""
    args: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == END_OF_OPTIONS:  # the rest are plain words
            positional.extend(tokens[i:])
            break
        if token.startswith("--") and len(token) > 2:
            key, sep, value = token[2:].partition("=")
            key = _param_name(api, camel(key), token)
            value_: Any = value
            from_file = _file_param(api, key)
            if from_file is not None:
                key = from_file
            if not sep:
                param = api.params.get(key)
                nxt = tokens[i] if i < len(tokens) else None
                if param is not None and param.type == "bool":
                    value_ = True
                    if nxt is not None and nxt.lower() in BOOL_WORDS:
                        value_, i = nxt.lower(), i + 1
                elif nxt is None or nxt == "--" or (nxt.startswith("--") and len(nxt) > 2):
                    raise UsageError(f"--{token[2:]} needs a value", field=key)
                else:
                    value_, i = nxt, i + 1
            if from_file is not None:
                value_ = _read_value_file(api, key, str(value_))
                if key in args and isinstance(value_, list):
                    prev = args.pop(key)
                    value_ = (prev if isinstance(prev, list) else [prev]) + value_
            _put(api, args, key, "=", value_)
        elif token.startswith("-") and len(token) > 1 and not token[1].isdigit():
            raise UsageError(
                f"unknown option {token!r} for {api.name} (a value starting with - goes"
                " after --, or as --key=VALUE)",
                code="CLI.UNKNOWN_OPTION",
                field=token,
            )
        elif api.is_query and _CONDITION_RE.match(token):
            field, op, operand = _condition(token)
            if field == "conditions" and op == "=":
                for text in condition_objects(operand or ""):
                    args.setdefault("conditions", []).append(text)
            elif field == "timeout" and op == "=" and "timeout" not in api.params:
                args[_TIMEOUT] = zstack_timeout(operand or "")
            else:
                _put(api, args, field, op, operand, text=condition_text(field, op, operand))
        elif not api.is_query and (m := _KEY_VALUE_RE.match(token)):
            key, value = m.group(1), m.group(2)
            if key == "timeout" and "timeout" not in api.params:
                args[_TIMEOUT] = zstack_timeout(value)
                continue
            _put(api, args, _param_name(api, key, key), "=", value)
        else:
            positional.append(token)
    return args, positional


def _condition(token: str) -> tuple[str, str, str | None]:
    try:
        return condition(token)
    except InvalidArgument as exc:  # ``a.=1`` looks like a condition but is none
        raise UsageError(exc.message, code=exc.code, **exc.details) from None


def _param_name(api: Api, key: str, typed: str) -> str:
    """The parameter ``key`` names: itself, or the one its alias stands for (``image``);
    a ``--key`` of a query that is no parameter is an error naming it."""
    if key in api.params:
        return key
    found = alias(api, key)
    if found is not None:
        return found
    if api.is_query and typed.startswith("--"):
        names = [f"--{kebab(n)}" for n in api.params if n != "conditions"]
        raise UsageError(
            f"{api.name} has no option {typed.split('=', 1)[0]!r}"
            f"{did_you_mean(typed.split('=', 1)[0], names)} (options: {', '.join(names)};"
            " a condition is FIELD=VALUE, not --FIELD)",
            code="CLI.UNKNOWN_OPTION",
            field=key,
            choices=names,
        )
    return key


def _put(
    api: Api, args: dict[str, Any], key: str, op: str, value: Any, text: str | None = None
) -> None:
    param = api.params.get(key)
    if api.is_query and key == "conditions":
        args.setdefault("conditions", []).extend(condition_objects(str(value)))
        return
    if param is None:
        if not api.is_query:
            _unknown(api, key)
        if value is True:
            raise UsageError(f"query condition {key!r} needs a value", field=key)
        args.setdefault("conditions", []).append(text or f"{key}{op}{value}")
        return
    if op != "=":
        raise UsageError(f"{key} is a parameter of {api.name}: use {key}=VALUE", field=key)
    if key in args:
        if not param.is_list:
            raise UsageError(f"{key} given more than once", field=key)
        prev = args[key]
        args[key] = (prev if isinstance(prev, list) else [prev]) + [value]
        return
    args[key] = value


def _file_param(api: Api, key: str) -> str | None:
    """``--user-data-file F`` gives ``userData``; ``--ssh-key-file F`` gives ``sshKeys``."""
    if key in api.params or not key.endswith("File"):
        return None
    base = key[: -len("File")]
    for name in (base, base + "s"):
        param = api.params.get(name)
        if param is not None and (param.is_list or param.type == "string"):
            return name
    return None


def _read_value_file(api: Api, key: str, path: str) -> Any:
    """A string parameter: the file's text (base64 when it is not UTF-8); a list parameter:
    one item a non-empty line not starting with ``#`` (an authorized_keys file)."""
    import base64

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError(
            f"{key}: cannot read {path}: {exc.strerror or exc}", code="CLI.FILE", field=key
        ) from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        if api.params[key].is_list:
            raise UsageError(
                f"{key}: {path} is not a text file", code="CLI.FILE", field=key
            ) from None
        return base64.b64encode(data).decode()
    if api.params[key].is_list:
        return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return text


def _unknown(api: Api, key: str) -> None:
    names = list(api.params)
    raise UsageError(
        f"{api.name} has no parameter {key!r}{did_you_mean(key, names)}"
        f" (parameters: {', '.join(names) or 'none'})",
        code="ARG.UNKNOWN",
        field=key,
        choices=names,
    )


def _login(rest: list[str]) -> Login:
    login = Login()
    i = 0
    while i < len(rest):
        token = rest[i]
        i += 1
        key, sep, value = token.lstrip("-").partition("=")
        if not sep and token.startswith("--") and i < len(rest):
            value, i = rest[i], i + 1
        elif not sep:
            raise UsageError(
                f"login: {token!r} needs a value (--account A --password P)", field=key
            )
        if key in ("account", "accountName", "account-name"):
            login.account = value
        elif key == "password":
            login.password = value
        else:
            raise UsageError(
                f"login has no option {key!r}{did_you_mean(key, ['account', 'password'])}"
                " (options: --account, --password)",
                field=key,
            )
    if not login.account:
        raise UsageError("login needs --account NAME", field="account")
    return login
