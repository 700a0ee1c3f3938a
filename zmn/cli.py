"""``zmn``: initialise, start, stop and inspect the management node.

    zmn init                 create $ZMN_HOME, migrate the database, create the admin account
    zmn upgrade              migrate the database to this release's schema (nodes may run)
    zmn backup FILE          consistent online backup: database, schema revision, zmn.conf
    zmn restore FILE         put a backup into a stopped node's home (--force: replace data)
    zmn start [--foreground] run the node (background by default; returns once the API answers)
    zmn stop                 graceful stop: running jobs finish (or are interrupted after the grace)
    zmn status [-o json]     exit 0 only when the node answers
    zmn logs [-f] [-n N]     the node's log (the journal when systemd runs it, else zmn.log)
    zmn service install      a systemd unit (Type=notify, restart on failure, journal)
    zmn plugins              installed service plugins (read from metadata, nothing imported)
    zmn replay LOG           re-run an API log (api.log=PATH in zmn.conf) against the node

Exit statuses: 0 ok, 1 failed, 2 usage, 5 not running / unreachable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from zmn import __version__
from zmn.api.errors import EXIT_FAILED, EXIT_UNAVAILABLE, ZmnError
from zmn.core.config import CONF_TEMPLATE, BootConfig


def _config(args: SimpleNamespace) -> BootConfig:
    home = Path(args.home).expanduser() if args.home else None
    return BootConfig.load(home)


def _err(text: str) -> None:
    print(f"zmn: {text}", file=sys.stderr)


# --------------------------------------------------------------------------- init


def cmd_init(args: SimpleNamespace) -> int:
    from zmn.migrations.schema import upgrade
    from zmn.services.identity.bootstrap import ensure_admin

    home = Path(args.home).expanduser() if args.home else BootConfig.load().home
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    conf = home / "zmn.conf"
    if conf.exists():
        print(f"keeping existing {conf}")
    else:
        lines = CONF_TEMPLATE.format(home=home)
        if args.db_url:
            lines += f"db.url={args.db_url}\n"
        if args.bus_url:
            lines += f"bus.url={args.bus_url}\n"
        conf.write_text(lines)
        print(f"wrote {conf}")
    config = BootConfig.load(home)
    before, after = upgrade(config.db_url)
    if before is None:
        print(f"created the database schema ({after}) at {_safe_url(config.db_url)}")
    elif before == after:
        print(f"joined the existing database at {_safe_url(config.db_url)} (schema {after})")
    else:
        print(f"migrated the database from {before} to {after}")
    from zmn.core.db import Database

    db = Database(config.db_url)
    try:
        created, password = ensure_admin(db, args.admin_password or None)
    finally:
        db.dispose()
    if created:
        assert password is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
        secret = home / "admin-password"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        print(f"created account admin with password: {password}")
        print(f"(also written to {secret}, mode 0600; this is the only time it is printed)")
    else:
        print("account admin exists; its password is unchanged")
    return 0


def _safe_url(url: str) -> str:
    from zmn.core.node import _redact

    return _redact(url)


def cmd_upgrade(args: SimpleNamespace) -> int:
    """Migrate the database to this code's schema under the cluster-wide migration lock."""
    from zmn.migrations.schema import schema_status, upgrade

    config = _config(args)
    status, current, head = schema_status(config.db_url)
    if status == "empty":
        _err(f"the database at {_safe_url(config.db_url)} is not initialised; run: zmn init")
        return EXIT_FAILED
    if args.check:
        print(f"database {current}, code {head}: {status}")
        return 0 if status == "current" else EXIT_FAILED
    before, after = upgrade(config.db_url)
    if before == after:
        print(f"the database is current (schema {after})")
    else:
        print(f"migrated the database from {before} to {after}")
    return 0


# --------------------------------------------------------------------------- backup / restore


def cmd_backup(args: SimpleNamespace) -> int:
    from zmn.ops.backup import backup

    config = _config(args)
    manifest = backup(config, Path(args.file))
    print(
        f"backed up the {manifest.backend} database (schema {manifest.schema}) and zmn.conf"
        f" of {config.home} to {args.file}"
    )
    return 0


def cmd_restore(args: SimpleNamespace) -> int:
    from zmn.daemon import AlreadyRunning, acquire_lock
    from zmn.migrations.schema import schema_status
    from zmn.ops.backup import restore

    config = _config(args)
    try:
        lock = acquire_lock(config)  # no node starts on a half-restored database
    except AlreadyRunning as exc:
        _err(f"{exc.message}; stop it first: zmn stop")
        return EXIT_FAILED
    try:
        manifest = restore(config, Path(args.file), force=args.force)
        config = BootConfig.load(config.home)
        status, current, head = schema_status(config.db_url)
    finally:
        lock.close()
    print(
        f"restored the {manifest.backend} database of {manifest.created} (zmn"
        f" {manifest.zmn_version}, schema {manifest.schema}) into {config.home}"
    )
    if status == "older":
        print(f"its schema {current} is older than this zmn's ({head}): run: zmn upgrade")
    elif status == "newer":
        print(f"its schema {current} is newer than this zmn's ({head}): install that release")
    return 0


# --------------------------------------------------------------------------- start / stop


def _start_config(args: SimpleNamespace) -> BootConfig | None:
    """The boot config, after every check that can fail before the node binds anything
    (conf, TLS files, addresses, the database and its schema revision); None when one failed
    (said on stderr)."""
    from zmn.daemon import check_start

    try:
        config = _config(args)
        check_start(config)
    except ZmnError as exc:
        _err(f"cannot start: {exc.message}")
        return None
    return config


def _start_errors(log_file: Path, offset: int) -> list[str]:
    """What the node logged since ``offset``: its errors, else the last lines."""
    try:
        with open(log_file, "rb") as fh:
            fh.seek(offset)
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    errors = [line for line in lines if " ERROR " in line or " CRITICAL " in line]
    return errors or lines[-15:]


def cmd_start(args: SimpleNamespace) -> int:
    config = _start_config(args)
    if config is None:
        return EXIT_FAILED
    if args.foreground:
        from zmn.daemon import run

        return run(config, checked=True)
    from zmn.daemon import CHECKED, lock_is_held, read_pid

    if lock_is_held(config):
        pid = read_pid(config)
        _err(
            f"a management node is already running on {config.home}"
            + (f" (pid {pid})" if pid else "")
        )
        return EXIT_FAILED
    config.home.mkdir(parents=True, exist_ok=True)
    log = open(config.log_file, "ab")
    offset = log.tell()
    env = dict(os.environ, ZMN_HOME=str(config.home))
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "zmn.daemon", str(config.home), CHECKED],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    log.close()
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _err(f"the node exited with status {proc.returncode}; from {config.log_file}:")
            for line in _start_errors(config.log_file, offset):
                print(line, file=sys.stderr)
            return EXIT_FAILED
        status = _ping(config)
        if status is not None:
            print(
                f"zmn started (pid {proc.pid}), serving on {', '.join(status.get('endpoints', []))}"
            )
            return 0
        time.sleep(0.1)
    _err(f"the node did not answer within {args.wait:g}s; see {config.log_file}")
    return EXIT_UNAVAILABLE


def _ping(config: BootConfig) -> dict[str, Any] | None:
    from zmn.client import Client

    try:
        with Client(f"unix:{config.unix_path}", timeout=5) as client:
            result: dict[str, Any] = client.call("GetManagementNodeStatus")
            return result
    except ZmnError:
        return None


def cmd_stop(args: SimpleNamespace) -> int:
    from zmn.daemon import lock_is_held, read_pid

    config = _config(args)
    pid = read_pid(config)
    if not lock_is_held(config):
        if pid:
            config.pid_file.unlink(missing_ok=True)
        print("zmn is not running")
        return 0
    if pid is None:
        _err(f"a node holds {config.lock_file} but {config.pid_file} is missing")
        return EXIT_FAILED
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print("zmn is not running")
        return 0
    grace = float(config.get("shutdown.grace", "30"))
    deadline = time.monotonic() + grace + args.wait
    while time.monotonic() < deadline:
        if not lock_is_held(config):
            print(f"zmn stopped (pid {pid})")
            return 0
        time.sleep(0.1)
    _err(
        f"the node (pid {pid}) did not stop within {grace + args.wait:g}s; kill it with: kill -9 {pid}"
    )
    return EXIT_FAILED


# --------------------------------------------------------------------------- status / logs


def cmd_status(args: SimpleNamespace) -> int:
    from zmn.daemon import lock_is_held, read_pid

    config = _config(args)
    status = _ping(config)
    if status is None:
        if lock_is_held(config):
            _err(
                f"a node holds the lock (pid {read_pid(config)}) but does not answer on {config.unix_path}"
            )
        else:
            _err(f"zmn is not running on {config.home}")
        if args.output == "json":
            print(json.dumps({"running": False, "home": str(config.home)}))
        return EXIT_UNAVAILABLE
    if args.output == "json":
        print(json.dumps({"running": True, **status}, indent=2))
        return 0
    db, bus = status["database"], status["bus"]
    rows = [
        ("node", f"{status['name']} ({status['uuid']})"),
        ("version", status["version"]),
        ("pid", str(status["pid"])),
        ("uptime", _duration(status["uptimeSeconds"])),
        ("database", f"{db['backend']} {db['url']} ({'ok' if db['ok'] else 'FAILING'})"),
        ("bus", bus["backend"]),
        *_ring_rows(status.get("ring")),
        ("endpoints", ", ".join(status["endpoints"])),
        ("services", f"{len(status['services'])}: {', '.join(status['services'])}"),
        ("jobs", f"{status['jobsInFlight']} running, queue depth {status['queueDepth']}"),
    ]
    for name, problem in status.get("pluginErrors", {}).items():
        rows.append(("plugin error", f"{name}: {problem}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _ring_rows(ring: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not ring:
        return []
    members = ring["members"]
    text = f"{len(members)} node(s), this node owns {ring['share'] * 100:.1f}%"
    if ring.get("fenced"):
        text += " (FENCED: evicted by the cluster)"
    rows = [("ring", text)]
    rows += [("  member", f"{m['uuid']} {m['share'] * 100:.1f}%") for m in members]
    return rows


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def cmd_logs(args: SimpleNamespace) -> int:
    from zmn.ops.service import journal_argv, journal_unit

    config = _config(args)
    unit = journal_unit(config)
    if unit is not None:
        try:
            argv = journal_argv(unit, args.lines, args.follow)
            return subprocess.run(argv, check=False).returncode  # noqa: S603 - fixed argv
        except KeyboardInterrupt:
            return 0
    path = config.log_file
    if not path.exists():
        _err(f"no log at {path} (the node logs there when started with zmn start)")
        return EXIT_FAILED
    for line in _tail(path, args.lines):
        print(line)
    if not args.follow:
        return 0
    with open(path, errors="replace") as fh:
        fh.seek(0, os.SEEK_END)
        try:
            while True:
                line = fh.readline()
                if line:
                    print(line, end="", flush=True)
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return 0


def cmd_plugins(args: SimpleNamespace) -> int:
    from zmn.core.plugins import list_plugins

    disabled = _config(args).disabled_plugins
    for p in list_plugins():
        state = "disabled" if p.name in disabled else "enabled"
        print(f"{p.name:<16} {state:<9} {p.target}  ({p.distribution})")
    return 0


def cmd_service(args: SimpleNamespace) -> int:
    from zmn.ops import service

    config = _config(args)
    if args.print:
        spec = service.UnitSpec(
            "zmn.service",
            config.home.resolve(),
            service.zmn_executable(),
            args.user,
            int(float(config.get("shutdown.grace", "30"))) + 30,
        )
        print(service.render_unit(spec), end="")
        return 0
    path, taken = service.install(
        config,
        name=args.name,
        user=args.user,
        unit_dir=Path(args.unit_dir),
        start=not args.no_start,
    )
    print(f"wrote {path}")
    unit = path.name
    if taken:
        print(f"enabled {unit}" + ("" if args.no_start else " and started it"))
    else:
        print(
            f"systemd does not run here (or {args.unit_dir} is not its unit directory):"
            f" run systemctl daemon-reload && systemctl enable --now {unit} where it does"
        )
    return 0


# --------------------------------------------------------------------------- replay


def cmd_replay(args: SimpleNamespace) -> int:
    from zmn.client import Client
    from zmn.services.testing.replay import read_log, replay_with_client

    config = _config(args)
    entries = read_log(Path(args.log))
    endpoint = args.endpoint or f"unix:{config.unix_path}"
    with Client(endpoint, timeout=args.timeout) as client:
        rp = replay_with_client(entries, client, stop_on_mismatch=args.stop)
    for m in rp.mismatches:
        print(
            f"#{m['index']} {m['api']}: recorded {m['recorded'] or 'ok'},"
            f" replayed {m['replayed'] or 'ok'}"
        )
    print(f"replayed {rp.sent} of {len(entries)} calls, {len(rp.mismatches)} mismatch(es)")
    return EXIT_FAILED if rp.mismatches else 0


# --------------------------------------------------------------------------- main


# --------------------------------------------------------------------------- the command tree
# typer builds the static tree (help, shell completion, --version); each command hands a
# namespace of its options to the cmd_* function above, which is where the work is.

app = typer.Typer(
    name="zmn",
    help="The zstack-terminal management node: initialise, start, stop, upgrade, back up.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
service_app = typer.Typer(
    help="install the node as a systemd service", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(service_app, name="service")


class Output(StrEnum):
    text = "text"
    json = "json"


def _version(value: bool) -> None:
    if value:
        print(f"zmn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    home: Annotated[
        str | None, typer.Option(help="state directory (default $ZMN_HOME or ~/.local/share/zmn)")
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    if home:
        os.environ["ZMN_HOME"] = str(Path(home).expanduser())


def _finish(fn: Callable[[SimpleNamespace], int], **options: Any) -> None:
    """Run a command; a ZmnError becomes its message on stderr and its exit status."""
    try:
        code = fn(SimpleNamespace(home=os.environ.get("ZMN_HOME"), **options))
    except ZmnError as exc:
        _err(exc.message)
        code = exc.exit_status
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


@app.command("init", help="create the home, migrate the database, create the admin account")
def _init(
    db_url: Annotated[str | None, typer.Option(help="db.url to write into a new zmn.conf")] = None,
    bus_url: Annotated[
        str | None, typer.Option(help="bus.url to write into a new zmn.conf")
    ] = None,
    admin_password: Annotated[
        str | None, typer.Option(help="password for a newly created admin (default: generated)")
    ] = None,
) -> None:
    _finish(cmd_init, db_url=db_url, bus_url=bus_url, admin_password=admin_password)


@app.command("upgrade", help="migrate the database to this release's schema")
def _upgrade(
    check: Annotated[
        bool, typer.Option("--check", help="only say whether a migration is pending (exit 1)")
    ] = False,
) -> None:
    _finish(cmd_upgrade, check=check)


@app.command("backup", help="back up the database and zmn.conf (while nodes run)")
def _backup(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="the archive to write (a .tar.gz, mode 0600)")
    ],
) -> None:
    _finish(cmd_backup, file=file)


@app.command("restore", help="restore a backup into this (stopped) node's home")
def _restore(
    file: Annotated[str, typer.Argument(metavar="FILE", help="an archive written by zmn backup")],
    force: Annotated[
        bool, typer.Option("--force", help="replace a database that holds data")
    ] = False,
) -> None:
    _finish(cmd_restore, file=file, force=force)


@app.command("start", help="start the node")
def _start(
    foreground: Annotated[
        bool, typer.Option("--foreground", help="stay in the foreground (service managers)")
    ] = False,
    wait: Annotated[float, typer.Option(help="seconds to wait for the API (default 60)")] = 60,
) -> None:
    _finish(cmd_start, foreground=foreground, wait=wait)


@app.command("stop", help="stop the node gracefully")
def _stop(
    wait: Annotated[float, typer.Option(help="extra seconds after the grace period")] = 15,
) -> None:
    _finish(cmd_stop, wait=wait)


@app.command("status", help="show the node's status (exit 0 only when it answers)")
def _status(
    output: Annotated[
        Output, typer.Option("-o", "--output", help="text (default) or json")
    ] = Output.text,
) -> None:
    _finish(cmd_status, output=output.value)


@app.command("logs", help="print the node's log (the journal when systemd runs the node)")
def _logs(
    follow: Annotated[bool, typer.Option("-f", "--follow", help="keep printing new lines")] = False,
    lines: Annotated[
        int, typer.Option("-n", "--lines", help="lines of the end to print (default 50)")
    ] = 50,
) -> None:
    _finish(cmd_logs, follow=follow, lines=lines)


@service_app.command("install", help="write a systemd unit for this home, enable and start it")
def _service_install(
    name: Annotated[str, typer.Option(help="unit name (default zmn.service)")] = "zmn",
    user: Annotated[
        str | None, typer.Option(help="run the node as this user (default root)")
    ] = None,
    unit_dir: Annotated[
        str, typer.Option(help="where to write the unit file")
    ] = "/etc/systemd/system",
    no_start: Annotated[
        bool, typer.Option("--no-start", help="enable the unit but do not start it")
    ] = False,
    print_: Annotated[
        bool, typer.Option("--print", help="print the unit instead of writing it")
    ] = False,
) -> None:
    _finish(cmd_service, name=name, user=user, unit_dir=unit_dir, no_start=no_start, print=print_)


@app.command("plugins", help="list installed service plugins")
def _plugins() -> None:
    _finish(cmd_plugins)


@app.command("replay", help="re-run an API log against the node")
def _replay(
    log: Annotated[
        str,
        typer.Argument(
            metavar="LOG", help="JSON-lines API log (written when zmn.conf has api.log=PATH)"
        ),
    ],
    endpoint: Annotated[
        str | None, typer.Option(help="node to replay against (default: this home's socket)")
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="stop at the first mismatch")] = False,
    timeout: Annotated[float, typer.Option(help="seconds per call (default 300)")] = 300,
) -> None:
    _finish(cmd_replay, log=log, endpoint=endpoint, stop=stop, timeout=timeout)


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="zmn")


if __name__ == "__main__":
    main()
