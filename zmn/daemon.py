"""Running the management node as a process: lock, pid file, signals, graceful stop.

One node per ``$ZMN_HOME``: the daemon holds an exclusive ``flock`` on ``zmn.lock`` for its
whole life, so a second node on the same home refuses at once, and a lock left by a killed
process disappears with it (stale pid and socket files are simply replaced).
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from zmn.api.errors import Unavailable, ZmnError
from zmn.core.config import BootConfig
from zmn.ops.sdnotify import notify
from zmn.startup import bind_failure, check_database, check_tls

if TYPE_CHECKING:
    from zmn.server import ApiServer

log = logging.getLogger("zmn.daemon")


class AlreadyRunning(Unavailable):
    default_code = "NODE.ALREADY_RUNNING"


def acquire_lock(config: BootConfig) -> IO[str]:
    """Hold the home's lock, or raise AlreadyRunning naming the holder's pid."""
    config.home.mkdir(parents=True, exist_ok=True)
    handle = open(config.lock_file, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        pid = read_pid(config)
        raise AlreadyRunning(
            f"another management node is running on {config.home}"
            + (f" (pid {pid})" if pid else "")
            + "; stop it with: zmn stop",
            retryable=False,
        ) from None
    return handle


def lock_is_held(config: BootConfig) -> bool:
    if not config.lock_file.exists():
        return False
    with open(config.lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def read_pid(config: BootConfig) -> int | None:
    try:
        return int(config.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def setup_logging(
    config: BootConfig, stream: IO[str] | None = None, *, to_file: bool = False
) -> None:
    """Log to ``stream`` (stderr: the journal under systemd), or to the rotated file log."""
    level = getattr(logging, config.get("log.level", "INFO").upper(), logging.INFO)
    handler: logging.Handler
    if to_file:
        from zmn.ops.logfile import file_handler

        handler = file_handler(config, own_std=True)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def check_schema(config: BootConfig) -> None:
    from zmn.migrations.schema import check_schema_version

    check_schema_version(config.db_url)


def check_cluster(config: BootConfig) -> None:
    """Several nodes (a RabbitMQ bus) need one database they all reach: not a SQLite file."""
    if config.bus_url.startswith(("amqp://", "amqps://")) and config.db_url.startswith("sqlite"):
        raise Unavailable(
            "bus.url is RabbitMQ (several management nodes) but db.url is SQLite, which the"
            " nodes cannot share: set db.url=mysql+pymysql://... or"
            " db.url=postgresql+psycopg://... in zmn.conf, or bus.url=local:// for one node",
            code="NODE.SQLITE_MULTI_NODE",
            retryable=False,
        )


def check_start(config: BootConfig) -> None:
    """Everything that can be known to fail before the node binds anything."""
    check_cluster(config)
    config.tcp_listen  # noqa: B018 - raises on a malformed api.tcp.listen
    check_tls(config)
    check_database(config)


async def serve(config: BootConfig) -> None:
    from zmn.core.node import Node
    from zmn.server import ApiServer

    node = Node(config)
    node.load_services()
    server = ApiServer(node)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node.on_fenced = stop.set  # evicted by the cluster: stop serving (zmn.core.cluster)
    await start_server(server, config)
    try:
        await node.start()
    except Exception:
        await server.stop()
        raise
    for name, problem in node.plugin_errors.items():
        log.error("plugin %s is not loaded: %s", name, problem)
    settle_gc()
    log.info("serving on %s", ", ".join(node.endpoints))
    notify(f"READY=1\nSTATUS=serving on {', '.join(node.endpoints)}\nMAINPID={os.getpid()}")
    await stop.wait()
    notify("STOPPING=1")
    log.info("stopping: refusing new changes, letting running jobs finish")
    node.stopping = True
    await node.jobs.drain(float(config.get("shutdown.grace", "30")))
    await server.stop()
    await node.stop(grace=0)
    log.info("stopped")


# The cyclic collector's thresholds while the node serves: CPython's defaults. Collecting less
# often (50,000/20/20 was tried: the young generation was collected every few creates) let
# the cyclic garbage of refused connections under an anonymous flood wait for a full
# collection, and the node's RSS grew by 352 MiB in tests/security/test_limits_flood.py
# (10,000/10/10: the same; 2,000/10/10 passed). What stays is gc.freeze(): the full
# collections no longer walk the start-up objects (SQLAlchemy's metadata, the registry).
GC_THRESHOLDS = (700, 10, 10)


def settle_gc() -> None:
    """Once the node serves: collect the start-up garbage, move every object alive now
    (modules, services, metadata, caches) out of the collector's sight (``gc.freeze``: the
    full collections no longer walk them), with :data:`GC_THRESHOLDS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def start_server(server: ApiServer, config: BootConfig) -> None:
    """Bind the endpoints; on failure none stays bound and no socket file stays behind."""
    try:
        await server.start()
    except BaseException as exc:
        await server.stop()
        if isinstance(exc, OSError):
            tcp = config.get("api.tcp.listen")
            bound_unix = any(e.startswith("unix:") for e in server.node.endpoints)
            where, setting = (
                (f"tcp {tcp}", "api.tcp.listen")
                if tcp and bound_unix
                else (f"unix socket {config.unix_path}", "ZMN_HOME")
            )
            raise bind_failure(exc, where, setting) from None
        raise


def run(config: BootConfig, *, log_to_file: bool = False, checked: bool = False) -> int:
    """Run in the foreground until SIGTERM/SIGINT; the exit status of the process.
    ``checked``: the caller ran :func:`check_start` already (``zmn start`` does, to say on
    the terminal what is wrong), so it is not run twice."""
    setup_logging(config, to_file=log_to_file)
    try:
        lock = acquire_lock(config)
    except AlreadyRunning as exc:
        log.error("%s", exc.message)
        return 1
    try:
        if not checked:
            check_start(config)
        config.pid_file.write_text(f"{os.getpid()}\n")
        asyncio.run(serve(config))
        return 0
    except ZmnError as exc:  # a reason with its fix, never a traceback
        log.error("cannot start: %s", exc.message)
        return 1
    finally:
        if read_pid(config) == os.getpid():
            config.pid_file.unlink(missing_ok=True)
        lock.close()


CHECKED = "--checked"  # zmn start ran check_start before it spawned the node


def main() -> None:
    """``python -m zmn.daemon [HOME] [--checked]``: zmn start's background node."""
    args = sys.argv[1:]
    home = next((Path(a) for a in args if a != CHECKED), None)
    sys.exit(run(BootConfig.load(home), log_to_file=True, checked=CHECKED in args))


if __name__ == "__main__":
    main()
