"""The completion engine, shared by ``zcli shell`` and the bash, zsh and fish scripts.

:class:`Engine` takes the words of a command line (after ``zcli``; the last one is the word
being completed, ``""`` after a space) and returns :class:`Candidate` words, each replacing
the current word whole. It knows the grammar of :mod:`zcli.parser` and reads only the
catalogue: API names (by substring), resource words and verbs, parameters (``key=`` and
``--key``), query fields walked through joins (``cluster.zone.na`` -> ``cluster.zone.name``),
operators, enum values, and the UUIDs of live resources from a *names* callable (shown as
``uuid (name)``, inserting the UUID).

``zcli __complete WORD...`` (hidden) prints one candidate a line, ``text<TAB>description``,
for the shell scripts in ``completions/``. It must never make a shell wait: the catalogue
comes from the on-disk cache, live names from a small per-endpoint name cache (a type never
fetched is fetched by one quick query; a stale one is answered from the cache and refreshed
by a detached child after the answer is out), and everything that touches the network runs
under a budget (``ZCLI_COMPLETE_BUDGET`` seconds, default 0.5) after which it prints what it
has. It imports neither the server nor prompt-toolkit, and the client only when it connects.
"""

from __future__ import annotations

import os
import sys
import time

from zcli.catalogue import camel, kebab, positional_slot
from zcli.words import GLOBAL_OPTIONS as _OPTIONS
from zcli.words import OPERATOR_DOCS, OUTPUTS, TAG_FIELDS, split_field
from zmn.api.ids import short_id

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # every import costs each Tab: typing, contextlib, dataclasses stay out
    from collections.abc import Callable
    from typing import Any

    from zcli.catalogue import Api, Catalogue, Param, Resource

    # Rows of a resource type as (uuid, name); name is "" for types without one.
    NameSource = Callable[[str], list[tuple[str, str]]]

# The order a menu shows operators in: the common ones first.
OPERATOR_ORDER = ("=", "!=", ">", ">=", "<", "<=", "?=", "!?=", "~=", "!~=", "=null", "!=null")
COMMANDS = {
    "api": "call any API by name",
    "completion": "print the completion script for bash, zsh or fish",
    "help": "help on a resource, verb or API",
    "login": "log in and keep the session",
    "logout": "end the kept session",
}
SCRIPT_COMMANDS = {"shell": "the interactive shell"}
SHELL_COMMANDS = {
    "exit": "leave the shell",
    "quit": "leave the shell",
    "set": "set an option for the session (set output json)",
    "status": "who you are, at which endpoint, with which options",
}
SET_OPTIONS = {
    "output": "output format",
    "columns": "columns to show",
    "timeout": "seconds to wait",
    "quiet": "UUIDs only",
    "no-header": "tables without a header",
    "no-wait": "long operations print their job and return",
}
NO_ARGS = ("logout", "exit", "quit", "shell", "status", "__complete")
DEFAULT_BUDGET = 0.5
REFRESH_SECONDS = 5.0  # a background refresh of stale names gives up after this long


class Candidate:
    """One completion: ``text`` replaces the current word; a menu shows ``display``.
    Immutable, compared and hashed by value (a frozen dataclass, without the import)."""

    __slots__ = ("display", "label", "meta", "nospace", "text")
    _fields = ("text", "display", "meta", "nospace", "label")  # the constructor's order
    text: str
    display: str
    meta: str
    nospace: bool  # more follows: key=, a join, a list item
    label: str  # the description shell scripts show, when not ``meta``

    def __init__(
        self, text: str, display: str = "", meta: str = "", nospace: bool = False, label: str = ""
    ) -> None:
        for name, value in zip(self._fields, (text, display, meta, nospace, label), strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Candidate)  # noqa: S101 - type narrowing for mypy, not a runtime check
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"Candidate({args})"

    @property
    def shown(self) -> str:
        return self.display or self.text


def _word(text: str, meta: str = "", display: str = "") -> Candidate:
    return Candidate(text, display, meta, nospace=text.endswith(("=", ".", ",")))


def _prefixed(cands: list[Candidate], cur: str) -> list[Candidate]:
    return [c for c in cands if c.text.startswith(cur)]


def field_meta(f: dict[str, Any]) -> str:
    kind = "|".join(str(v) for v in f["enum"]) if f.get("enum") else str(f.get("type", ""))
    if f.get("resource"):
        kind += f" ({f['resource']})"
    return f"{kind}  {f['doc']}" if f.get("doc") else kind


def skip_globals(words: list[str]) -> tuple[int, str | None]:
    """Index of the first command word, and the global option still waiting for its value."""
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-") or word == "-":
            break
        if word.startswith("--"):
            name, sep, _ = word.partition("=")
            attached = bool(sep)
        else:
            name, attached = word[:2], len(word) > 2
        i += 1
        spec = _OPTIONS.get(name)
        if spec is not None and spec[1] and not attached:
            if i == len(words):
                return i, name
            i += 1
    return i, None


class Engine:
    """Completion over one catalogue. ``interactive`` (the shell) allows API names as
    commands, the ``api`` keyword being optional there. A join candidate ends with ``.``
    (``join_dot`` is kept for callers; every join now inserts its dot)."""

    def __init__(
        self,
        catalogue: Catalogue,
        names: NameSource | None = None,
        *,
        interactive: bool = False,
        join_dot: bool = False,
    ) -> None:
        self.cat = catalogue
        self.names = names
        self.shell = interactive
        self.join_dot = join_dot

    def complete(self, words: list[str]) -> list[Candidate]:
        *done, cur = words or [""]
        start, pending = skip_globals(done)
        if pending is not None:
            name = _OPTIONS[pending][0]
            return _prefixed([_word(o) for o in OUTPUTS], cur) if name == "output" else []
        rest = done[start:]
        if not rest:
            if cur.startswith("-"):
                return _prefixed([_word(o) for o in sorted(_OPTIONS)], cur)
            return self.commands(cur)
        return self._after(rest, cur)

    # ----------------------------------------------------------------- commands

    def commands(self, cur: str) -> list[Candidate]:
        words = dict(COMMANDS)
        words.update(SHELL_COMMANDS if self.shell else SCRIPT_COMMANDS)
        for word in self.cat.resource_words():
            res = self.cat.resource(word)
            words[word] = res.summary or res.name if res else ""
        out = _prefixed([_word(w, m) for w, m in sorted(words.items())], cur)
        if self.shell:
            out += self.api_names(cur)
        return out

    def api_names(self, cur: str) -> list[Candidate]:
        """API names containing ``cur`` (any case), those starting with it first."""
        low = cur.lower()
        names = sorted(self.cat.apis)
        first = [n for n in names if n.lower().startswith(low)]
        then = [n for n in names if low in n.lower() and not n.lower().startswith(low)]
        return [_word(n, self.cat.apis[n].summary) for n in first + then]

    def _after(self, rest: list[str], cur: str) -> list[Candidate]:
        head = rest[0]
        if head == "api":
            if len(rest) == 1:
                return self.api_names(cur)
            api = self.cat.apis.get(rest[1])
            return self.arguments(api, rest[2:], cur) if api else []
        if head == "help":
            return self._help(rest[1:], cur)
        if head == "login":
            return self._login(rest[1:], cur)
        if head in NO_ARGS:
            return []
        if head == "completion":
            return (
                _prefixed([_word(sh) for sh in ("bash", "zsh", "fish")], cur)
                if not rest[1:]
                else []
            )
        if head == "set" and self.shell:
            if len(rest) == 1:
                return _prefixed([_word(k, m) for k, m in SET_OPTIONS.items()], cur)
            if len(rest) == 2 and rest[1] in ("output", "-o", "--output"):
                return _prefixed([_word(o) for o in OUTPUTS], cur)
            return []
        res = self.cat.resource(head)
        if res is None:
            api = self.cat.apis.get(head) if self.shell else None
            return self.arguments(api, rest[1:], cur) if api else []
        if len(rest) == 1:
            if cur.startswith("-"):
                return _prefixed([_word("--help")], cur)
            return self.verbs(res, cur)
        verb = rest[1]
        if verb in ("list", "get") and res.query:
            return self.arguments(self.cat.apis[res.query], rest[2:], cur, verb)
        name = res.verbs.get(verb)
        return self.arguments(self.cat.apis[name], rest[2:], cur, "call") if name else []

    def verbs(self, res: Resource, cur: str) -> list[Candidate]:
        out = []
        for verb in self.cat.verbs(res):
            if verb in ("list", "get"):
                meta = f"query {res.name}" if verb == "list" else f"show one {res.name}"
            else:
                meta = self.cat.verb_summary(res, verb)[0]
            out.append(_word(verb, meta))
        return _prefixed(out, cur)

    def _help(self, args: list[str], cur: str) -> list[Candidate]:
        if not args:
            words = [_word(w) for w in [*self.cat.resource_words(), "api"]]
            out = _prefixed(words, cur)
            return out + self.api_names(cur) if self.shell else out
        if args[0] == "api" and len(args) == 1:
            return self.api_names(cur)
        res = self.cat.resource(args[0])
        return self.verbs(res, cur) if res is not None and len(args) == 1 else []

    def _login(self, args: list[str], cur: str) -> list[Candidate]:
        if args and args[-1] == "--account":
            return self.rows("Account", cur, "")
        return _prefixed([_word("--account"), _word("--password")], cur)

    # ----------------------------------------------------------------- arguments

    def arguments(self, api: Api, prev: list[str], cur: str, mode: str = "raw") -> list[Candidate]:
        """Candidates after ``<resource> <verb>`` or ``api <Name>``; ``mode`` is ``raw``,
        ``list``, ``get`` or ``call``."""
        if prev and prev[-1].startswith("--") and "=" not in prev[-1]:
            param = api.params.get(camel(prev[-1][2:]))
            if param is not None and param.type != "bool":
                return self.param_values(api, param, cur, "")
        given, positional = _given(api, prev)
        if cur.startswith("-"):
            opts = [
                _word(f"--{kebab(p.name)}", p.type_text())
                for p in api.params.values()
                if p.name != "conditions" and (p.is_list or p.name not in given)
            ]
            return _prefixed([*opts, _word("--help")], cur)
        res = self.cat.resource_of_type(api.resource)
        if api.is_query:
            if mode == "get":
                return [] if positional or res is None else self.rows(res.name, cur, "")
            return self._query_word(api, res, given, cur)
        key, sep, value = cur.partition("=")
        if sep and key in api.params:
            return self.param_values(api, api.params[key], value, key + "=")
        out = [
            _word(f"{p.name}=", p.type_text() + ("; required" if p.required else ""))
            for p in api.params.values()
            if p.is_list or p.name not in given
        ]
        out = _prefixed(out, cur)
        slot = positional_slot(api) if mode == "call" else None
        if slot and slot != "name" and not positional and slot not in given:
            ref = api.resource if slot == "uuid" else api.params[slot].raw.get("resource")
            if ref:
                out += self.rows(str(ref), cur, "")
        return out

    def _query_word(
        self, api: Api, res: Resource | None, given: set[str], cur: str
    ) -> list[Candidate]:
        name, op, value = split_field(cur)
        if op is not None:
            if name in api.params:
                param = api.params[name]
                return self.param_values(api, param, value, name + "=") if op == "=" else []
            return self.condition_values(res, name, op, value) if res else []
        options = [
            _word(f"{p.name}=", p.type_text())
            for p in api.params.values()
            if p.name != "conditions" and p.name not in given
        ]
        fields = self.fields(res, cur) if res else []
        return fields + _prefixed(options, cur)

    def param_values(self, api: Api, param: Param, typed: str, prefix: str) -> list[Candidate]:
        """Values of one parameter; a list parameter completes its last comma-separated item."""
        if param.is_list:
            head, comma, typed = typed.rpartition(",")
            prefix += head + comma
        enum = param.raw.get("enum") or (param.raw.get("items") or {}).get("enum")
        if enum:
            return _prefixed([_word(prefix + str(v), "", str(v)) for v in enum], prefix + typed)
        if param.type == "bool":
            return _prefixed([_word(prefix + v, "", v) for v in ("true", "false")], prefix + typed)
        ref = param.raw.get("resource") or (api.resource if param.name == "uuid" else None)
        if ref:
            return self.rows(str(ref), typed, prefix)
        res = self.cat.resource_of_type(api.resource)
        if api.is_query and res is not None and param.name in ("sortBy", "groupBy", "fields"):
            names = [f["name"] for f in res.fields]
            return _prefixed([_word(prefix + n, "", n) for n in names], prefix + typed)
        return []

    # ----------------------------------------------------------------- query fields

    def walk(self, res: Resource, joins: list[str]) -> Resource | None:
        """The resource reached from ``res`` through a path of join names."""
        current: Resource | None = res
        for name in joins:
            if current is None:
                return None
            join = next((j for j in current.joins if j["name"] == name), None)
            current = self.cat.resource_of_type(join["resource"]) if join else None
        return current

    def fields(self, res: Resource, cur: str) -> list[Candidate]:
        """``cluster.zone.na`` -> ``cluster.zone.name``: fields and joins of the last
        resource on the path; operators once a whole field name is typed."""
        *path, last = cur.split(".")
        target = self.walk(res, path)
        if target is None:
            return []
        prefix = "".join(p + "." for p in path)
        out = [
            _word(prefix + f["name"], field_meta(f), f["name"])
            for f in target.fields
            if f["name"].startswith(last)
        ]
        for j in target.joins:
            if j["name"].startswith(last):
                text = prefix + j["name"] + "."  # choosing a join: its fields come next
                meta = f"join -> {j['resource']}"
                out.append(Candidate(text, j["name"] + ".", meta, nospace=True))
        aliases = self.field_aliases(target)
        out += [
            _word(prefix + a, f"list: {p} (ZStack's name)", a)
            for a, p in aliases.items()
            if a.startswith(last)
        ]
        if not path:
            out += [_word(t, "tag pseudo-field") for t in TAG_FIELDS if t.startswith(last)]
        whole = any(f["name"] == last for f in target.fields) or last in aliases
        if whole or (not path and last in TAG_FIELDS):
            out += [
                _word(prefix + last + op, OPERATOR_DOCS[op], op)
                for op in OPERATOR_ORDER
                if op in OPERATOR_DOCS
            ]
        return out

    def field_aliases(self, res: Resource) -> dict[str, str]:
        """ZStack's list fields of a type (``attachedClusterUuids`` for ``cluster.uuid``)."""
        raw = next((r for r in self.cat.data.get("resources", []) if r["name"] == res.name), {})
        return dict(raw.get("aliases") or {})

    def condition_values(self, res: Resource, path: str, op: str, value: str) -> list[Candidate]:
        *joins, last = path.split(".")
        target = self.walk(res, joins)
        alias = self.field_aliases(target).get(last) if target is not None else None
        if target is not None and alias:  # a list field: the values of what it stands for
            *more, last = alias.split(".")
            target = self.walk(target, more)
        field = next((f for f in target.fields if f["name"] == last), None) if target else None
        if target is None or field is None:
            return []
        prefix = path + op
        if op in ("?=", "!?="):
            head, comma, value = value.rpartition(",")
            prefix += head + comma
        if field.get("enum"):
            return _prefixed(
                [_word(prefix + str(v), "", str(v)) for v in field["enum"]], prefix + value
            )
        if field.get("type") == "bool":
            return _prefixed([_word(prefix + v, "", v) for v in ("true", "false")], prefix + value)
        if field.get("resource"):
            # a condition compares the column itself: the node does not resolve names there
            return self.rows(str(field["resource"]), value, prefix, uuids=True)
        if last == "uuid":
            return self.rows(target.name, value, prefix, uuids=True)
        if last == "name":
            return self.rows(target.name, value, prefix)
        return []

    # ----------------------------------------------------------------- live names

    def rows(
        self, type_name: str, typed: str, prefix: str, *, uuids: bool = False
    ) -> list[Candidate]:
        """Live resources of a type whose UUID or name starts with ``typed``. A candidate
        inserts the name (the node resolves names wherever a parameter takes a UUID or
        name), the UUID where the name is shared by several rows or missing, where the
        user is typing a UUID, or everywhere with ``uuids`` (query conditions)."""
        if self.names is None:
            return []
        try:
            rows = self.names(type_name)
        except Exception:  # a names source must never break completion
            return []
        out: list[Candidate] = []
        seen: set[str] = set()
        counts: dict[str, int] = {}
        for _uuid, name in rows:
            counts[name] = counts.get(name, 0) + 1
        for uuid, name in rows:
            by_name = name.startswith(typed)
            if typed and not (uuid.startswith(typed) or by_name):
                continue
            if uuids or not name or counts[name] > 1 or not by_name:
                text = prefix + uuid
                display = f"{uuid} ({name})" if name else uuid
                label = name or type_name
            else:
                text = prefix + name
                display = f"{name} ({short_id(uuid)})"
                label = f"{type_name} {short_id(uuid)}"
            if text in seen:
                continue
            seen.add(text)
            out.append(Candidate(text, display, type_name, label=label))
        return out


def _given(api: Api, prev: list[str]) -> tuple[set[str], list[str]]:
    """Parameters already on the line, and the positional words."""
    given: set[str] = set()
    positional: list[str] = []
    i = 0
    while i < len(prev):
        token = prev[i]
        i += 1
        if token.startswith("--") and len(token) > 2:
            key, sep, _ = token[2:].partition("=")
            key = camel(key)
            given.add(key)
            param = api.params.get(key)
            if not sep and param is not None and param.type != "bool" and i < len(prev):
                i += 1
        elif "=" in token:
            given.add(split_field(token)[0])
        else:
            positional.append(token)
    return given, positional


# --------------------------------------------------------------------- zcli __complete


class _Expired(Exception):
    pass


def _expire(_signum: int, _frame: Any) -> None:
    raise _Expired


class budget:  # named like the function-style context manager it replaced
    """``with budget(deadline):`` bounds blocking I/O (connect, reads) by ``deadline``;
    raises :class:`_Expired` (a class rather than contextlib: one import less per Tab)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.previous: Any = None

    def __enter__(self) -> None:
        import signal

        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _Expired
        self.previous = signal.signal(signal.SIGALRM, _expire)
        signal.setitimer(signal.ITIMER_REAL, remaining)

    def __exit__(self, *exc: object) -> None:
        import signal

        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def connection_of(words: list[str]) -> tuple[str, str | None]:
    """The endpoint and session a command line would use (its options, env, saved login)."""
    from zcli import session as sessions

    endpoint = session = None
    start, _ = skip_globals(words[:-1])
    for i, word in enumerate(words[:start]):
        for opt in ("--endpoint", "--session"):
            value = None
            if word.startswith(opt + "="):
                value = word.split("=", 1)[1]
            elif word == opt and i + 1 < start:
                value = words[i + 1]
            if value is not None and opt == "--endpoint":
                endpoint = value
            elif value is not None:
                session = value
    if endpoint is None:
        endpoint = os.environ.get("ZMN_ENDPOINT") or _default_endpoint()
    session = session or os.environ.get("ZMN_SESSION") or sessions.get(endpoint)
    return endpoint, session


def _default_endpoint() -> str:
    """:func:`zmn.client.default_endpoint` without importing the client: the same string,
    which keys the session and the name cache (a test compares the two)."""
    from zmn.home import default_socket_endpoint

    return default_socket_endpoint()


def main(argv: list[str]) -> int:
    """``zcli __complete [--] WORD...``: print candidates for the last word; exit 0 always."""
    try:
        seconds = float(os.environ.get("ZCLI_COMPLETE_BUDGET") or DEFAULT_BUDGET)
    except ValueError:
        seconds = DEFAULT_BUDGET
    deadline = time.monotonic() + seconds
    words = argv[1:] if argv[:1] == ["--"] else argv
    later: list[Callable[[], None]] = []
    try:
        cands = complete_words(words or [""], deadline, later)
    except Exception:  # a completion callback must never print a traceback
        return 0
    out = "".join(f"{c.text}\t{_describe(c)}\n" for c in cands)
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
    except BrokenPipeError:
        return 0
    if later:
        _in_background(later)
    return 0


def _describe(c: Candidate) -> str:
    return " ".join((c.label or c.meta).split())[:80]


def complete_words(
    words: list[str], deadline: float, later: list[Callable[[], None]] | None = None
) -> list[Candidate]:
    """Candidates for a command line. Names never fetched are fetched now, within the
    budget; stale ones are answered from the cache and, given ``later``, refreshed after
    the answer is out, so that a Tab waits for the node at most once per type."""
    from zcli.shell.namecache import NameCache

    endpoint, session = connection_of(words)
    cache = NameCache(endpoint, session)
    # the arguments of `RES list|get`: the catalogue's read-only slice has all they need
    reads = words[0] if len(words) >= 3 and words[1] in ("list", "get") else None
    catalogue = cache.catalogue(deadline, lambda: budget(deadline), reads)
    if catalogue is None:
        return []
    stale: list[str] = []

    def names(type_name: str) -> list[tuple[str, str]]:
        if cache.stale(type_name):
            if cache.known(type_name) and later is not None:
                stale.append(type_name)
            else:
                try:
                    with budget(deadline):
                        cache.refresh(catalogue, [type_name])
                except Exception:  # noqa: S110 - unreachable or out of time: no names
                    pass
        return cache.rows(type_name)

    try:
        return Engine(catalogue, names, join_dot=True).complete(words)
    finally:
        cache.close()
        if stale and later is not None:
            later.append(lambda: _refresh(cache, catalogue, stale))


def _refresh(cache: Any, catalogue: Catalogue, types: list[str]) -> None:
    with budget(time.monotonic() + REFRESH_SECONDS):
        cache.refresh(catalogue, types)
    cache.close()


def _in_background(jobs: list[Callable[[], None]]) -> None:
    """Run ``jobs`` in a detached child once the answer is out: the shell reading our
    output waits only for this process, which exits at once."""
    if not hasattr(os, "fork"):
        return
    try:
        pid = os.fork()
    except OSError:
        return
    if pid:
        return
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for job in jobs:
            job()
    except BaseException:  # noqa: S110 - nobody is listening any more
        pass
    finally:
        os._exit(0)
