"""``zmn backup FILE`` and ``zmn restore FILE``: the database, its schema revision and zmn.conf.

A backup is a gzipped tar (mode 0600: it holds agent secrets and SSH credentials) of

``manifest.json``  format, zmn version, schema revision, database backend, creation time
``zmn.conf``       the node's boot settings as they were
``zmn.db``         SQLite: a consistent copy made with SQLite's online backup API, or
``database.sql``   MariaDB/MySQL: ``mariadb-dump --single-transaction`` (a consistent InnoDB
                   snapshot without locking the nodes out); PostgreSQL: ``pg_dump`` (one
                   snapshot by design), both taken while the nodes run

Restore goes into a stopped node's home (its lock is held meanwhile, so no node starts on a
half-restored database): ``zmn.conf`` is written when the home has none, then the database
named by the home's ``db.url`` is replaced. It must be of the backup's backend, and empty
unless ``force`` is given. A restored schema older than the code is left for ``zmn upgrade``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL, make_url

from zmn import __version__
from zmn.api.errors import Conflict, InvalidArgument, OperationFailed
from zmn.core.config import BootConfig

FORMAT = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    format: int
    zmn_version: str
    schema: str | None
    backend: str  # sqlite, mysql, postgresql
    created: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            int(data["format"]),
            str(data["zmnVersion"]),
            data.get("schema"),
            str(data["backend"]),
            str(data["created"]),
        )

    def to_json(self) -> bytes:
        data = {
            "format": self.format,
            "zmnVersion": self.zmn_version,
            "schema": self.schema,
            "backend": self.backend,
            "created": self.created,
        }
        return json.dumps(data, indent=2).encode()


def backend_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name == "mariadb":
        return "mysql"
    if name not in ("sqlite", "mysql", "postgresql"):
        raise InvalidArgument(f"db.url: backend {name!r} cannot be backed up", field="db.url")
    return name


def _tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise OperationFailed(
        f"{names[0]} is not installed (Debian: mariadb-client / postgresql-client)",
        code="NODE.BACKUP_TOOL_MISSING",
    )


def _client_argv(url: URL, backend: str) -> tuple[list[str], dict[str, str]]:
    """Connection options for the backend's command-line tools, password in the environment."""
    env = dict(os.environ)
    if backend == "mysql":
        argv = [f"--host={url.host or '127.0.0.1'}", f"--port={url.port or 3306}"]
        argv.append(f"--user={url.username or 'root'}")
        if url.password:
            env["MYSQL_PWD"] = str(url.password)
        return argv, env
    argv = [f"--host={url.host or '127.0.0.1'}", f"--port={url.port or 5432}"]
    argv.append(f"--username={url.username or 'postgres'}")
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return argv, env


def _run(argv: list[str], env: dict[str, str], what: str, **kw: Any) -> bytes:
    proc = subprocess.run(argv, env=env, capture_output=True, check=False, **kw)  # noqa: S603
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise OperationFailed(f"{what} failed: {' / '.join(tail)}", code="NODE.BACKUP_FAILED")
    return bytes(proc.stdout)


def _dump(url_text: str, backend: str, workdir: Path) -> tuple[str, Path]:
    """(name in the archive, file) of a consistent copy of the database."""
    url = make_url(url_text)
    if backend == "sqlite":
        target = workdir / "zmn.db"
        src = sqlite3.connect(f"file:{url.database}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # page by page, consistent while the node writes
        finally:
            dst.close()
            src.close()
        return "zmn.db", target
    argv, env = _client_argv(url, backend)
    target = workdir / "database.sql"
    if backend == "mysql":
        cmd = [_tool("mariadb-dump", "mysqldump"), *argv, "--single-transaction",
               "--skip-lock-tables", "--no-tablespaces", "--add-drop-table", str(url.database)]  # fmt: skip
    else:
        cmd = [_tool("pg_dump"), *argv, "--no-owner", "--no-privileges", "--clean",
               "--if-exists", str(url.database)]  # fmt: skip
    with open(target, "wb") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.PIPE, check=False)  # noqa: S603
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise OperationFailed(f"{cmd[0]} failed: {' / '.join(tail)}", code="NODE.BACKUP_FAILED")
    return "database.sql", target


def backup(config: BootConfig, dest: Path) -> Manifest:
    """Write a backup of the node's database and zmn.conf to ``dest`` (mode 0600)."""
    from zmn.migrations.schema import current_revision

    url = config.db_url
    backend = backend_of(url)
    schema = current_revision(url)
    manifest = Manifest(
        FORMAT, __version__, schema, backend, dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    dest = dest.expanduser().resolve()
    with tempfile.TemporaryDirectory(prefix="zmn-backup-") as tmp:
        name, dumped = _dump(url, backend, Path(tmp))
        partial = dest.with_name(dest.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                _add_bytes(tar, MANIFEST, manifest.to_json())
                conf = config.home / "zmn.conf"
                _add_bytes(tar, "zmn.conf", conf.read_bytes() if conf.exists() else b"")
                tar.add(dumped, arcname=name)
            os.replace(partial, dest)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return manifest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def read_manifest(tar: tarfile.TarFile, path: Path) -> Manifest:
    try:
        member = tar.extractfile(MANIFEST)
        if member is None:
            raise KeyError(MANIFEST)
        manifest = Manifest.of(json.loads(member.read()))
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidArgument(
            f"{path} is not a zmn backup (no valid {MANIFEST}): {exc}",
            code="NODE.BAD_BACKUP",
            field="FILE",
        ) from exc
    if manifest.format > FORMAT:
        raise InvalidArgument(
            f"{path} is a backup format {manifest.format} of zmn {manifest.zmn_version}; this"
            f" zmn {__version__} reads format {FORMAT}: restore it with that release",
            code="NODE.BAD_BACKUP",
            field="FILE",
        )
    return manifest


def _is_empty(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return not inspect(conn).get_table_names()
    finally:
        engine.dispose()


def restore(config: BootConfig, src: Path, *, force: bool = False) -> Manifest:
    """Put a backup into ``config``'s home; the caller holds the home's lock (node stopped)."""
    src = src.expanduser()
    try:
        tar = tarfile.open(src, "r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise InvalidArgument(
            f"cannot read backup {src}: {exc}", code="NODE.BAD_BACKUP", field="FILE"
        ) from exc
    with tar:
        manifest = read_manifest(tar, src)
        conf = config.home / "zmn.conf"
        if not conf.exists():
            data = tar.extractfile("zmn.conf")
            config.home.mkdir(parents=True, exist_ok=True)
            conf.write_bytes(data.read() if data is not None else b"")
            conf.chmod(0o600)
            config = BootConfig.load(config.home)
        url = config.db_url
        backend = backend_of(url)
        if backend != manifest.backend:
            raise InvalidArgument(
                f"the backup holds a {manifest.backend} database but db.url of {config.home} is"
                f" {backend}: set db.url in {conf} to a {manifest.backend} database",
                code="NODE.BACKUP_BACKEND_MISMATCH",
                field="db.url",
            )
        if not force and not _is_empty(url):
            raise Conflict(
                f"the database of {config.home} is not empty; restoring replaces it: add --force",
                code="NODE.RESTORE_NOT_EMPTY",
            )
        with tempfile.TemporaryDirectory(prefix="zmn-restore-") as tmp:
            name = "zmn.db" if backend == "sqlite" else "database.sql"
            member = tar.extractfile(name)
            if member is None:
                raise InvalidArgument(f"{src} holds no {name}", code="NODE.BAD_BACKUP")
            local = Path(tmp) / name
            with open(local, "wb") as fh:
                shutil.copyfileobj(member, fh)
            _load(url, backend, local)
    return manifest


def _load(url_text: str, backend: str, dump: Path) -> None:
    url = make_url(url_text)
    if backend == "sqlite":
        target = Path(str(url.database))
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        src = sqlite3.connect(dump)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        target.chmod(0o600)
        return
    argv, env = _client_argv(url, backend)
    with open(dump, "rb") as fh:
        if backend == "mysql":
            cmd = [_tool("mariadb", "mysql"), *argv, str(url.database)]
        else:
            cmd = [_tool("psql"), *argv, "--quiet", "-v", "ON_ERROR_STOP=1",
                   f"--dbname={url.database}"]  # fmt: skip
        _run(cmd, env, f"loading the backup with {Path(cmd[0]).name}", stdin=fh)
