"""Why a node cannot start, said in one line with the fix (never a traceback).

Every check raises :class:`StartFailed` (code ``NODE.*``), which ``zmn start`` prints and the
daemon logs before it exits with status 1, leaving no socket behind:

* ``check_tls``: ``api.tls.cert``/``api.tls.key`` name readable PEM files that load;
* ``check_database``: the one place that decides whether the database can be served (the
  file is a database that passes SQLite's ``quick_check``, the server answers, the schema is
  this node's (:func:`zmn.daemon.check_schema`), every table the services need exists);
* ``bind_failure``: what an ``OSError`` from binding an endpoint means (address in use...).

``zmn.conf`` that cannot be read is reported by :meth:`zmn.core.config.BootConfig.load`.
"""

from __future__ import annotations

import errno
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from zmn.api.errors import Unavailable

if TYPE_CHECKING:
    from zmn.core.config import BootConfig


class StartFailed(Unavailable):
    """The node cannot start; the message says why and what to do."""

    default_code = "NODE.START_FAILED"
    default_retryable = False


# ----------------------------------------------------------------------------- TLS


def check_tls(config: BootConfig) -> None:
    cert, key = config.get("api.tls.cert"), config.get("api.tls.key")
    if not cert and not key:
        return
    fix = (
        "set api.tls.cert and api.tls.key in zmn.conf to a PEM certificate and its key"
        " (or remove both to serve TCP without TLS)"
    )
    if not cert:
        raise StartFailed(f"api.tls.key is set but api.tls.cert is not; {fix}", code="NODE.TLS")
    for name, path in (("api.tls.cert", cert), ("api.tls.key", key)):
        if path and not Path(path).is_file():
            raise StartFailed(
                f"{name}: {path} does not exist or is not a file; {fix}", code="NODE.TLS"
            )
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key or None)
    except (ssl.SSLError, OSError) as exc:
        raise StartFailed(
            f"api.tls.cert {cert} / api.tls.key {key or cert} do not load ({exc}); {fix}",
            code="NODE.TLS",
        ) from None


# ----------------------------------------------------------------------------- binding


def bind_failure(exc: OSError, where: str, setting: str) -> StartFailed:
    """``where`` (e.g. ``tcp://0.0.0.0:5443``) could not be bound; ``setting`` is the key."""
    if exc.errno == errno.EADDRINUSE:
        why = "the address is already in use (another process listens there)"
        fix = f"stop that process or choose another port with {setting} in zmn.conf"
        code = "NODE.ADDRESS_IN_USE"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "no interface of this machine has that address"
        fix = f"set {setting} in zmn.conf to an address of this machine (or 0.0.0.0)"
        code = "NODE.ADDRESS_UNAVAILABLE"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied (ports below 1024 need root, files need write access)"
        fix = f"choose another {setting} in zmn.conf"
        code = "NODE.ADDRESS_DENIED"
    else:
        why = exc.strerror or str(exc)
        fix = f"check {setting} in zmn.conf"
        code = "NODE.BIND_FAILED"
    return StartFailed(f"cannot listen on {where}: {why}; {fix}", code=code)


# ----------------------------------------------------------------------------- database


def check_database(config: BootConfig) -> None:
    """Refuse a database this node cannot serve. The one function for every database check at
    start: add new ones here (the schema version check is :func:`zmn.daemon.check_schema`)."""
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import DBAPIError

    from zmn.core.db import make_engine
    from zmn.core.node import _redact
    from zmn.daemon import check_schema

    url = config.db_url
    engine = make_engine(url)
    try:
        try:
            with engine.connect() as conn:
                if engine.dialect.name == "sqlite":
                    problems = [str(r[0]) for r in conn.execute(text("PRAGMA quick_check"))]
                    if problems != ["ok"]:
                        raise _corrupt(url, "; ".join(problems[:3]))
                existing = set(inspect(conn).get_table_names())
        except DBAPIError as exc:
            if engine.dialect.name == "sqlite":
                raise _corrupt(url, str(exc.orig)) from None
            raise StartFailed(
                f"cannot use the database at {_redact(url)}: {exc.orig}; check db.url in"
                " zmn.conf and that the database server runs and accepts this user",
                code="NODE.DATABASE_UNREACHABLE",
            ) from None
    finally:
        engine.dispose()
    check_schema(config)
    missing = sorted(set(_required_tables(config)) - existing)
    if missing:
        raise StartFailed(
            f"the database at {_redact(url)} lacks table(s) {', '.join(missing[:8])}"
            + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            + "; it was changed outside zmn: restore it from a backup (zmn restore), or run"
            " zmn init on an empty database",
            code="NODE.DATABASE_INCOMPLETE",
        )


def _corrupt(url: str, detail: str) -> StartFailed:
    from zmn.core.node import _redact

    return StartFailed(
        f"the database at {_redact(url)} fails its integrity check ({detail}); restore it from"
        " a backup, or move it away and run zmn init for a new one",
        code="NODE.DATABASE_CORRUPT",
    )


def _required_tables(config: BootConfig) -> list[str]:
    """The tables of every service this node loads (their models register with the base)."""
    from zmn.core import plugins
    from zmn.core.db import Base

    disabled = config.disabled_plugins
    for ep in plugins.all_entry_points():
        if ep.name in disabled:
            continue
        try:
            ep.load()
        except Exception:  # noqa: S112 - a broken plugin is reported when the node loads it
            continue
    return list(Base.metadata.tables)
