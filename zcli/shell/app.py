"""``zcli shell`` (also bare ``zcli`` on a terminal): the interactive shell.

The grammar is zcli's with the leading ``zcli`` implied, and the ``api`` keyword optional, so
``QueryZone state=Enabled`` works as typed in ZStack's CLI. Every line runs through the one
:class:`~zcli.runner.Runner` (one connection, the catalogue cached, errors and exit statuses
as for one-shot commands). Completion reads names from memory; a background thread keeps
them fresh so that typing never waits on the node. A line ending in ``\\`` continues on the
next; Ctrl-C cancels the line (or a running command), Ctrl-D or ``exit`` leaves.
"""

from __future__ import annotations

import queue
import shlex
import sys
import threading
from collections.abc import Callable
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.filters import is_searching
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.search import accept_search

from zcli import cache
from zcli.catalogue import Catalogue
from zcli.help import render_help
from zcli.options import Options, parse_globals
from zcli.parser import ApiCall, Help, Login, Logout, UsageError, parse
from zcli.runner import Runner
from zcli.shell.completer import ShellCompleter
from zcli.shell.history import ScrubbingFileHistory, history_path, secret_names
from zcli.shell.namecache import NameCache
from zmn.api.errors import EXIT_OK, EXIT_USAGE, ZmnError

SHELL_HELP = """\
zcli shell: zcli's commands without the leading "zcli"; the "api" keyword is optional
(QueryZone state=Enabled). Tab completes APIs, resources, verbs, parameters, query fields
through joins (cluster.zone.name), operators, values and live names. A line ending in \\
continues on the next; Ctrl-C cancels the line; Ctrl-R searches the history (Enter runs
the line found); Ctrl-D or "exit" leaves.
"help <ApiName>" describes an API, "help <resource> [<verb>]" a command.
"set output json" (or -c, --timeout, -q, --no-header, --no-wait) sets an option for the
rest of the session ("set" alone shows them, "set -q off" clears a flag); "status" shows
who you are at which endpoint.

"""
# ``set`` takes the global options a line may take, by their long or short name
SETTABLE = ("output", "columns", "timeout", "quiet", "no-header", "no-wait")
OFF_WORDS = ("off", "false", "no", "0")


class Refresher(threading.Thread):
    """Runs the shell's network chores (names, who am I) off the typing path."""

    def __init__(self, shell: Shell) -> None:
        super().__init__(name="zcli-names", daemon=True)
        self.shell = shell
        self.jobs: queue.Queue[Callable[[], None]] = queue.Queue()
        self.pending: set[str] = set()
        self.lock = threading.Lock()

    def want(self, type_name: str) -> None:
        with self.lock:
            if type_name in self.pending:
                return
            self.pending.add(type_name)
        self.jobs.put(lambda: self._refresh(type_name))

    def _refresh(self, type_name: str) -> None:
        with self.lock:
            self.pending.discard(type_name)
        names, cat = self.shell.names, self.shell.catalogue()
        if cat is None:
            return
        names.refresh(cat, [type_name])
        names.save()
        self.shell.names_arrived()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job()
            except Exception:  # node gone, session expired: try next time
                self.shell.names.close()


class Shell:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.runner = Runner(opts)
        self.fallback: Catalogue | None = None
        self.account = "?"
        self.waiting = False  # a completion lacked names that are on their way
        self.failed = EXIT_OK  # the first failing command's status (what a pipe returns)
        self.names = NameCache(self.runner.endpoint, self.runner.session, ttl=5)
        self.refresher = Refresher(self)
        self.session: PromptSession[str] | None = None

    # ----------------------------------------------------------------- state

    def catalogue(self) -> Catalogue | None:
        return self.runner._catalogue or self.fallback

    def start(self, interactive: bool = True) -> None:
        """Connect and load the catalogue; a node that is down leaves the last cached one.
        Interactive, start the thread that keeps names fresh and warm every type once."""
        try:
            cat = self.runner.catalogue(optional=True)
        except ZmnError as exc:
            self.runner.report(exc)
            cat = None
        if self.runner._catalogue is None:
            newest = cache.newest()
            self.fallback = cat or (Catalogue(newest[1], newest[0]) if newest else None)
            self.runner.err.write(
                f"warning: {self.runner.endpoint} does not answer; commands will fail until"
                " it does\n"
            )
        else:
            self.names.remember(self.runner._catalogue.hash)
        if not interactive:
            return
        self.refresher.start()
        self._whoami()
        cat = self.catalogue()
        if cat is not None:  # so that the first Tab has names
            for res in cat.resources.values():
                if res.query and any(f["name"] == "uuid" for f in res.fields):
                    self.refresher.want(res.name)

    def _whoami(self) -> None:
        client = self.runner.client
        if self.runner.session is None:
            peer = client is not None and client.hello.get("auth") == "peer"
            self.account = "admin" if peer else "-"
            return
        session_uuid = self.runner.session
        self.refresher.jobs.put(lambda: self._lookup_account(session_uuid))

    def _lookup_account(self, session_uuid: str) -> None:
        client = self.names.client()
        rows = client.call("QuerySession", {"conditions": [f"uuid={session_uuid}"]})
        account = (rows.get("inventories") or [{}])[0].get("accountUuid")
        if account:
            found = client.call("QueryAccount", {"conditions": [f"uuid={account}"]})
            self.account = (found.get("inventories") or [{}])[0].get("name") or "?"
            self._invalidate_screen()

    def names_for(self, type_name: str) -> list[tuple[str, str]]:
        if self.names.stale(type_name):
            self.refresher.want(type_name)
            if not self.names.known(type_name):
                self.waiting = True
        return self.names.rows(type_name)

    def names_arrived(self) -> None:
        """Names a completion lacked have come: show the menu again with them."""
        if not self.waiting or self.session is None:
            return
        self.waiting = False
        app = self.session.app
        loop = getattr(app, "loop", None)
        if app.is_running and loop is not None:
            buffer = self.session.default_buffer
            loop.call_soon_threadsafe(lambda: buffer.start_completion(select_first=False))

    def _invalidate_screen(self) -> None:
        if self.session is not None and self.session.app.is_running:
            self.session.app.invalidate()

    def prompt(self) -> str:
        return f"{self.account}@{short_endpoint(self.runner.endpoint)}> "

    def status(self) -> str:
        """``status``: the full endpoint, who, the session and the options set."""
        client = self.runner.client
        hello = client.hello if client is not None else {}
        lines = [
            f"endpoint  {self.runner.endpoint}",
            f"account   {self.account}",
            f"session   {self.runner.session_source or 'none (peer credentials)'}",
            f"node      {hello.get('node') or '-'} (zmn {hello.get('version') or '?'})",
            f"options   {self.settings()}",
        ]
        return "\n".join(lines) + "\n"

    def settings(self) -> str:
        o = self.opts
        parts = [f"output={o.output}"]
        if o.columns:
            parts.append("columns=" + ",".join(o.columns))
        if o.timeout:
            parts.append(f"timeout={o.timeout:g}")
        parts += [name for name in ("quiet", "no-header", "no-wait") if getattr(o, _attr(name))]
        return " ".join(parts)

    def set_option(self, args: list[str]) -> int:
        """``set output json``: a global option for the rest of the session."""
        if not args:
            self.runner.out.write(self.settings() + "\n")
            return EXIT_OK
        name = args[0].lstrip("-")
        name = {"o": "output", "c": "columns", "q": "quiet"}.get(name, name)
        if name not in SETTABLE or len(args) > 2:
            raise UsageError(
                f"set takes one of {', '.join(SETTABLE)} and a value (set output json)",
                field=args[0],
            )
        attr = _attr(name)
        if attr in ("quiet", "no_header", "no_wait"):
            value = not (len(args) == 2 and args[1].lower() in OFF_WORDS)
            setattr(self.opts, attr, value)
        elif len(args) != 2:
            raise UsageError(f"set {name} needs a value", field=name)
        else:
            if attr == "columns":
                self.opts.columns = []
            self.opts, _ = parse_globals([f"--{name}", args[1]], self.opts, in_batch=True)
        self.runner.err.write(f"{self.settings()}\n")
        return EXIT_OK

    # ----------------------------------------------------------------- lines

    def normalise(self, tokens: list[str]) -> list[str]:
        """``QueryZone ...`` means ``api QueryZone ...``; ``help CreateZone`` the API's help."""
        cat = self.catalogue()
        if cat is None or not tokens:
            return tokens
        head = tokens[0]
        if head in cat.apis and cat.resource(head) is None:
            return ["api", *tokens]
        if head == "help" and len(tokens) > 1 and tokens[1] in cat.apis:
            if cat.resource(tokens[1]) is None:
                return ["help", "api", *tokens[1:]]
        return tokens

    def execute(self, text: str) -> bool:
        """Run one (possibly continued) line; False when the shell should end."""
        text = text.replace("\\\n", " ").strip()
        try:
            tokens = shlex.split(text, comments=True)
        except ValueError as exc:
            self.runner.err.write(f"error: CLI.USAGE: cannot split the line: {exc}\n")
            self.failed = self.failed or EXIT_USAGE
            return True
        if not tokens:
            return True
        if tokens[0] in ("exit", "quit"):
            return False
        if tokens[0] in ("set", "status"):
            try:
                if tokens[0] == "status":
                    self.runner.out.write(self.status())
                else:
                    self.set_option(tokens[1:])
            except ZmnError as exc:
                self.failed = self.failed or self.runner.report(exc)
            return True
        try:
            opts, tokens = parse_globals(tokens, self.opts, in_batch=True)
        except ZmnError as exc:
            self.failed = self.failed or self.runner.report(exc)
            return True
        tokens = self.normalise(tokens)
        if tokens == ["help"]:
            self.runner.out.write(SHELL_HELP + render_help(Help([]), self.catalogue()))
            return True
        cmd = self._parsed(tokens)
        status = self.runner.run(tokens, opts)
        self.failed = self.failed or status
        self.after(cmd, status)
        return True

    def _parsed(self, tokens: list[str]) -> Any:
        cat = self.catalogue()
        try:
            return parse(tokens, cat) if cat is not None else None
        except ZmnError:
            return None

    def after(self, cmd: Any, status: int) -> None:
        if status != EXIT_OK:
            return
        if isinstance(cmd, Login | Logout):
            if isinstance(cmd, Login):
                self.account = cmd.account or "?"
            else:
                self._whoami()
            old, self.names = self.names, NameCache(self.runner.endpoint, self.runner.session, 5)
            self.refresher.jobs.put(old.close)  # its connection belongs to that thread
        elif isinstance(cmd, ApiCall) and cmd.action == "call":
            self.names.invalidate()

    def interrupt(self) -> None:
        """Ctrl-C during a command: the reply may still come, so start a fresh connection."""
        self.runner.progress.done()
        self.runner.close()
        self.runner.client = None
        self.runner.err.write("interrupted\n")

    # ----------------------------------------------------------------- loop

    def run(self) -> int:
        interactive = sys.stdin.isatty()
        self.start(interactive)
        if not interactive:
            return self._run_piped()
        self.session = PromptSession(
            message=self.prompt,
            history=ScrubbingFileHistory(history_path(), secret_names(self.catalogue())),
            auto_suggest=AutoSuggestFromHistory(),
            completer=ShellCompleter(self.catalogue, self.names_for),
            complete_while_typing=True,
            multiline=True,
            prompt_continuation=lambda width, _line, _wrap: "." * (width - 1) + " ",
            key_bindings=_bindings(),
        )
        self.runner.err.write('zcli shell: Tab completes, "help" helps, Ctrl-D leaves\n')
        while True:
            self.waiting = False
            try:
                text = self.session.prompt()
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            try:
                if not self.execute(text):
                    break
            except KeyboardInterrupt:
                self.interrupt()
        self.runner.close()
        return EXIT_OK

    def _run_piped(self) -> int:
        """Lines from a pipe: the shell's grammar without prompt or completion; every line
        runs, and the status is the first failing line's, as a script would want."""
        pending = ""
        for line in sys.stdin:
            if line.rstrip("\n").endswith("\\"):
                pending += line.rstrip("\n") + "\n"
                continue
            if not self.execute(pending + line):
                break
            pending = ""
        if pending:
            self.execute(pending)
        self.runner.close()
        return self.failed


def short_endpoint(endpoint: str) -> str:
    """The prompt's name for an endpoint: the host of ``tcp://``/``tls://`` (its first label
    unless it is an address), this machine's short host name for a unix socket."""
    if endpoint.startswith(("tcp://", "tls://")):
        host = endpoint.split("://", 1)[1].rpartition(":")[0].strip("[]") or "localhost"
        is_address = host.replace(".", "").isdigit() or ":" in host
        return host if is_address else host.split(".")[0]
    import socket

    return socket.gethostname().split(".")[0] or "local"


def _attr(name: str) -> str:
    return name.replace("-", "_")


def _bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("enter", filter=is_searching)
    def _run_found(event: KeyPressEvent) -> None:
        """Enter during Ctrl-R: take the line found and run it (not just end the search)."""
        accept_search()
        event.app.current_buffer.validate_and_handle()

    @kb.add("enter", filter=~is_searching)
    def _enter(event: KeyPressEvent) -> None:
        """Enter runs the line, except after a trailing backslash, which continues it."""
        buf = event.current_buffer
        doc = buf.document
        if doc.is_cursor_at_the_end and doc.text.endswith("\\"):
            buf.insert_text("\n")
        else:
            buf.validate_and_handle()

    return kb


def run_shell(opts: Options) -> int:
    return Shell(opts).run()


def main(opts: Options, args: list[str]) -> int:
    """``zcli shell`` (takes no arguments but ``--help``)."""
    if args in (["--help"], ["-h"]):
        sys.stdout.write("usage: zcli [OPTIONS] shell\n\n" + SHELL_HELP)
        return EXIT_OK
    if args:
        sys.stderr.write(f"error: CLI.USAGE: shell takes no arguments, got {args[0]!r}\n")
        return 2
    return run_shell(opts)
