"""Running commands over one connection: catalogue, session, waits, progress and errors.

One :class:`Runner` serves a one-shot command, every line of a batch file and (later) the
interactive shell. It connects lazily, loads the catalogue from the cache when the node's
greeting carries a known hash, and turns every :class:`ZmnError` into ``error: CODE: message``
on stderr and the documented exit status.
"""

from __future__ import annotations

import os
import sys

from zcli import cache, session
from zcli.catalogue import Catalogue, kebab
from zcli.options import Options
from zcli.output import fields_read, render
from zcli.parser import HELP_FLAGS, ApiCall, Help, Login, Logout, UsageError, parse
from zcli.progress import Progress, follow_hint
from zmn.api.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Conflict,
    NotFound,
    PermissionDenied,
    Timeout,
    Unavailable,
    ZmnError,
    upper_snake,
)
from zmn.client import Client, default_endpoint

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # typing costs a few ms of every cold zcli
    from typing import Any, TextIO

SERVER_WAIT_GRACE = 10.0  # seconds the client waits past an API's own timeout for its reply

SESSION_REJECTED = ("SESSION_EXPIRED", "SESSION_INVALID", "SESSION_NOT_FOUND", "INVALID_SESSION")


def is_help(tokens: list[str]) -> bool:
    return not tokens or tokens[0] == "help" or any(t in HELP_FLAGS for t in tokens)


def session_rejected(exc: ZmnError) -> bool:
    """The node refused the session itself (expired, logged out, unknown), not the action."""
    return isinstance(exc, PermissionDenied) and exc.code.upper().endswith(SESSION_REJECTED)


class Runner:
    client_class: type[Client] = Client  # zcli -f FILE --parallel N: a pipelined client

    def __init__(self, opts: Options, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.opts = opts
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.endpoint = opts.endpoint or default_endpoint()
        self.session, self.session_source = self._initial_session(opts)
        self.progress = Progress(self.err)
        self.client: Client | None = None
        self._catalogue: Catalogue | None = None
        # a one-shot `RES list|get ...`: the resource word, for the catalogue's read-only
        # slice (zcli.cache.QUERIES); None: the whole catalogue (a batch, the shell)
        self.reads: str | None = None
        self.stdin_busy = False  # batch commands come from stdin: never read a password there

    def _initial_session(self, opts: Options) -> tuple[str | None, str | None]:
        if opts.session:
            return opts.session, "option"
        if os.environ.get("ZMN_SESSION"):
            return os.environ["ZMN_SESSION"], "env"
        stored = session.get(self.endpoint)
        return (stored, "stored") if stored else (None, None)

    # ----------------------------------------------------------------- connection

    def connect(self) -> Client:
        """The connection; after :meth:`close` the client reconnects on its next request."""
        if self.client is None:
            client = self.client_class(self.endpoint, self.session, on_event=self.progress)
            client.connect()
            self.client = client
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def catalogue(self, *, optional: bool = False) -> Catalogue | None:
        if self._catalogue is not None:
            return self._catalogue
        try:
            client = self.connect()
        except Unavailable:
            if not optional:
                raise
            newest = cache.newest()
            return Catalogue(newest[1], newest[0]) if newest else None
        digest = str(client.hello.get("catalogueHash") or "")
        cat = cache.catalogue(digest, self.reads) if digest else None
        if cat is None:
            reply = client.call("GetApiCatalogue")
            data, digest = reply["catalogue"], str(reply.get("hash") or digest)
            cache.store(digest, data)
            cat = Catalogue(data, digest)
        self._catalogue = cat
        return cat

    # ----------------------------------------------------------------- commands

    def run(self, tokens: list[str], opts: Options | None = None, where: str = "") -> int:
        """Run one command; print its result or its error; return the exit status."""
        opts = opts or self.opts
        try:
            if not tokens:
                from zcli.help import USAGE

                self.err.write(USAGE + "try: zcli help\n")
                return EXIT_USAGE
            if is_help(tokens):
                from zcli.help import render_help

                cat = self.catalogue(optional=True)
                cmd = parse(tokens, cat or Catalogue({}))
                assert isinstance(cmd, Help)  # noqa: S101 - type narrowing for mypy, not a runtime check
                self.out.write(render_help(cmd, cat))
                return EXIT_OK
            if tokens[0] == "completion":
                from zcli.completion import completion

                return completion(self, tokens[1:])
            if tokens[:2] == ["job", "wait"]:  # several jobs, -q: zcli/jobs.py
                from zcli.jobs import wait_jobs

                return wait_jobs(self, tokens[2:], opts)
            cmd = parse(tokens, self._require_catalogue())
            if isinstance(cmd, Login):
                return self.login(cmd, opts)
            if isinstance(cmd, Logout):
                return self.logout()
            assert isinstance(cmd, ApiCall)  # noqa: S101 - type narrowing for mypy, not a runtime check
            if cmd.api == "OpenVmConsole":  # composite: the terminal on a byte stream
                from zcli.console import attach

                force = str(cmd.args.get("force", False)).lower() == "true"
                return attach(self.connect(), str(cmd.args.get("uuid", "")), force=force)
            return self.call(cmd, opts)
        except ZmnError as exc:
            self.progress.done()
            return self.report(exc, where)

    def _require_catalogue(self) -> Catalogue:
        cat = self.catalogue()
        assert cat is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        return cat

    def call(self, cmd: ApiCall, opts: Options) -> int:
        """Run the command's call, or one call per target (``vm stop a b c``: one job each);
        the exit status is the worst of them."""
        calls = cmd.each()
        if len(calls) == 1:
            return self.call_one(cmd, calls[0], opts)
        status = EXIT_OK
        for args in calls:
            try:
                code = self.call_one(cmd, args, opts)
            except ZmnError as exc:
                self.progress.done()
                code = self.report(exc, f"{cmd.verb or cmd.api} {args.get(cmd.slot or '', '')}")
            status = max(status, code)
        return status

    def call_one(self, cmd: ApiCall, args: dict[str, Any], opts: Options) -> int:
        client = self.connect()
        cat = self._require_catalogue()
        res = cat.resource_of_type(cmd.resource)
        api = cat.apis[cmd.api]
        target = str(args.get(cmd.slot or "uuid") or cmd.target or "")
        if cmd.action == "call":  # zcli.act: what mutating commands ask and say
            from zcli import act
        people = cmd.action == "call" and api.mutating and act.on_terminal(self.err)
        verb = cmd.verb or api.verb or kebab(cmd.api)
        if cmd.action == "call":
            args = act.nic_targets(client, api, args)
            if people and not opts.yes and verb in act.DESTRUCTIVE and target:
                if not act.confirm(client, cat, res, verb, target, self.err):
                    self.err.write("nothing done\n")
                    return EXIT_FAILED
        if (
            cmd.action == "list"
            and "sortBy" not in args
            and self._pages_for_people(res, args, opts)
        ):
            # a page for people comes sorted by name from the node, so that it holds the
            # first names and the next page (--after, sorted the same) follows it
            args = {**args, "sortBy": "name"}
        if cmd.action == "list" and not {"fields", "count", "groupBy"} & set(args):
            fields = fields_read(
                cat.resource_of_type(api.rows) if api.rows else res, opts, self.out
            )
            if fields is not None and "fields" in api.params:
                args = {**args, "fields": fields}
        wait = not (cmd.long and opts.no_wait)
        timeout = opts.timeout if opts.timeout is not None else cmd.timeout
        if opts.timeout is not None and "timeout" in api.params and "timeout" not in args:
            # an API that waits itself (vm wait): --timeout is its bound, and the client
            # waits a little longer, for the node's own answer (its WAIT_TIMEOUT error)
            args = {**args, "timeout": opts.timeout}
            timeout = opts.timeout + SERVER_WAIT_GRACE
        try:
            with self._deadline(timeout):
                reply = client.request(
                    cmd.api,
                    args,
                    wait=wait,
                    progress=cmd.long and wait and not opts.quiet,  # -q: no progress lines
                    timeout=timeout,
                )
        except KeyboardInterrupt:
            self.close()
            job = self.progress.job
            if job:
                self.progress.done()  # end the live line first
                self.err.write(f"interrupted: {follow_hint(job)}\n")
            raise
        except Timeout as exc:
            self.close()  # a reply may still arrive on this connection; start afresh
            job = self.progress.job
            if job:
                exc.message += f"; {follow_hint(job)}"
                exc.details["jobUuid"] = job
            elif (cmd.long or timeout) and exc.code == "CLIENT.TIMEOUT":  # not the node's own
                exc.message += "; the operation may still finish"
            raise
        finally:
            self.progress.done()
        if not wait:
            job = reply.get("job") or (reply.get("result") or {}).get("job", {}).get("uuid", "")
            self.out.write(f"{job}\n")
            return EXIT_OK
        result = reply.get("result")
        if cmd.action == "get":
            result = self._one(cmd, result)
        if people:
            self.err.write(act.said(res, verb, args, target, result))
        # a table for people is sorted by name, unless the rows come in an order asked for
        # or are a page of more (a page sorted on its own would not follow the next one)
        keep = cmd.action != "list" or bool({"sortBy", "limit", "after", "start"} & set(args))
        shown = cat.resource_of_type(api.rows) if api.rows else res  # rows of another type
        render(
            result, opts, shown, self.out, self.err, cat=cat, lookup=self.lookup, keep_order=keep
        )
        self.out.flush()
        if cmd.action == "list" and isinstance(result, dict) and result.get("next"):
            if not opts.quiet:  # stdout stays data; the way to the next page goes to stderr
                self.err.write(f"more rows: the next page is --after {result['next']}\n")
        return EXIT_OK

    def _pages_for_people(self, res: Any, args: dict[str, Any], opts: Options) -> bool:
        """A list cut into pages (limit, after, start) printed as a table for people, of a
        type with names (the order then asked for: by name, as every people table)."""
        paged = bool({"limit", "after", "start"} & set(args))
        if not paged or res is None or not any(f.get("name") == "name" for f in res.fields):
            return False
        return opts.output == "wide" or (opts.output == "table" and self.out.isatty())

    def lookup(self, type_name: str, field: str, values: list[str]) -> list[dict[str, Any]]:
        """Rows of ``type_name`` whose ``field`` is one of ``values``: one query per 500
        values (table columns of names and joins; never one query per row)."""
        res = self._require_catalogue().resource_of_type(type_name)
        if res is None or not res.query:
            return []
        client = self.connect()
        rows: list[dict[str, Any]] = []
        for at in range(0, len(values), 500):
            chunk = [v.replace(",", "\\,") for v in values[at : at + 500]]
            reply = client.call(
                res.query, {"conditions": [f"{field}?={','.join(chunk)}"], "limit": 1000}
            )
            rows += reply.get("inventories", []) if isinstance(reply, dict) else []
        return rows

    def _one(self, cmd: ApiCall, result: Any) -> dict[str, Any]:
        rows = result.get("inventories", []) if isinstance(result, dict) else []
        kind, target = cmd.resource or "Resource", cmd.target or ""
        field = "uuid" if cmd.args["conditions"][0].startswith("uuid=") else "name"
        if field == "name":
            from zcli.act import same_name_first

            rows = same_name_first(rows, target)
        if not rows:
            raise NotFound(
                f"{kind} {target!r} not found", code=f"{upper_snake(kind)}.NOT_FOUND", field=field
            )
        if len(rows) > 1:
            raise Conflict(
                f"{len(rows)} {kind} resources are named {target!r}; give the UUID",
                code="CLI.AMBIGUOUS_NAME",
                field=field,
                uuids=[r.get("uuid") for r in rows],
            )
        return {"inventory": rows[0]}

    def _deadline(self, seconds: float | None) -> _Deadline:
        """Bound the whole wait, progress events included (the client bounds each read)."""
        return _Deadline(seconds)

    # ----------------------------------------------------------------- sessions

    def login(self, cmd: Login, opts: Options) -> int:
        password = cmd.password
        if password is None:
            password = self._read_password()
        client = self.connect()
        client.session = None  # logging in must not send a stale session
        try:
            result = client.call(
                "LogInByAccount", {"accountName": cmd.account, "password": password}
            )
        finally:
            client.session = self.session  # a failed login leaves the batch's identity as it was
        inv = result.get("inventory", result) if isinstance(result, dict) else {}
        uuid = inv.get("uuid") or inv.get("sessionUuid") if isinstance(inv, dict) else None
        if not isinstance(uuid, str) or not uuid:
            raise ZmnError("LogInByAccount returned no session UUID", code="CLI.NO_SESSION")
        session.save(self.endpoint, uuid)
        client.session = self.session = uuid
        self.session_source = "stored"
        self.err.write(f"logged in as {cmd.account} at {self.endpoint}\n")
        if opts.quiet or opts.output in ("json", "yaml"):
            render({"inventory": inv}, opts, None, self.out, self.err)
        return EXIT_OK

    def _read_password(self) -> str:
        if sys.stdin.isatty():
            import getpass

            return getpass.getpass("password: ")
        if self.stdin_busy:
            raise UsageError("login in a batch read from stdin needs --password", field="password")
        return sys.stdin.readline().rstrip("\n")

    def logout(self) -> int:
        current = self.session
        if current:
            client = self.connect()
            cat = self._require_catalogue()
            api = cat.apis.get("LogOut")
            args = {"sessionUuid": current} if api and "sessionUuid" in api.params else {}
            try:
                client.call("LogOut", args)
            except ZmnError as exc:
                if not session_rejected(exc):
                    self.err.write(f"warning: {exc.code}: {exc.message}\n")
            client.session = None
        forgot = session.forget(self.endpoint)
        self.session, self.session_source = None, None
        self.err.write("logged out\n" if current or forgot else "not logged in\n")
        return EXIT_OK

    # ----------------------------------------------------------------- errors

    def report(self, exc: ZmnError, where: str = "") -> int:
        self.err.write(f"error: {exc.code}: {exc.message}\n")
        if exc.field:
            self.err.write(f"field: {exc.field}\n")
        if where:
            self.err.write(f"at {where}\n")
        if self.session and session_rejected(exc):
            self.err.write("session expired: zcli login\n")
            return EXIT_FAILED
        return exc.exit_status


def reads_only(tokens: list[str]) -> str | None:
    """What a command the catalogue's read-only slice may serve needs from it (no help
    asked): the resource word of ``RES list ...`` and ``RES get ...``, the API name of
    ``api Query<Type> ...``."""
    if len(tokens) < 2 or is_help(tokens):
        return None
    if tokens[1] in ("list", "get"):
        return tokens[0]
    if tokens[0] == "api" and tokens[1].startswith("Query"):
        return tokens[1]
    return None


class _Deadline:
    """``with _Deadline(seconds):`` raises :class:`Timeout` when the block outlasts
    ``seconds`` (main thread only; None: no limit). signal and threading are imported only
    when there is a limit."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.previous: Any = None
        self.armed = False

    def __enter__(self) -> None:
        seconds = self.seconds
        if not seconds:
            return
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return

        def expire(_signum: int, _frame: Any) -> None:
            raise Timeout(f"no result within {seconds:g}s", code="CLIENT.TIMEOUT")

        self.previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        self.armed = True

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            import signal

            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            self.armed = False
