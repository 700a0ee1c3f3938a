"""Boot settings: ``$ZMN_HOME/zmn.conf`` (``key=value`` lines), overridden by ``ZMN_*``.

An environment variable overrides a key by upper-casing it and replacing dots with
underscores: ``ZMN_DB_URL`` overrides ``db.url``, ``ZMN_API_TCP_LISTEN`` ``api.tcp.listen``.

Keys (defaults in :data:`DEFAULTS`):

``db.url``            SQLAlchemy URL; default ``sqlite:///$ZMN_HOME/zmn.db``
``bus.url``           ``local://`` (in-process) or ``amqp://user:pass@host:port/vhost``
``bus.namespace``     prefix of every RabbitMQ queue and exchange name, so several clusters
                      (or test runs) share one broker without seeing each other (default none)
``api.unix.path``     unix socket; default ``$ZMN_HOME/zmn.sock``
``api.tcp.listen``    ``HOST:PORT`` to serve TCP as well (empty: no TCP)
``api.tls.cert`` / ``api.tls.key``   serve TLS on the TCP endpoint
``plugins.disabled``  comma-separated service names not to load
``node.name``         display name of this node (default: the host name)
``log.level``         DEBUG, INFO, WARNING, ERROR
``shutdown.grace``    seconds ``zmn stop`` lets running jobs finish
``flowchain.<name>``  replace a flow chain's steps
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from zmn.api.errors import InvalidArgument

DEFAULTS = {
    "db.url": "",
    "bus.url": "local://",
    "api.unix.path": "",
    "api.tcp.listen": "",
    "api.tls.cert": "",
    "api.tls.key": "",
    "plugins.disabled": "",
    "node.name": "",
    "log.level": "INFO",
    "shutdown.grace": "30",
}

CONF_TEMPLATE = """\
# zmn.conf: boot settings of the management node (key=value; ZMN_* variables override).
# db.url=sqlite:///{home}/zmn.db
# db.url=mysql+pymysql://root@127.0.0.1:3306/zstack
# db.url=postgresql+psycopg://postgres@127.0.0.1:5432/zstack
# bus.url=local://
# bus.url=amqp://guest:guest@127.0.0.1:5672/%2F
# api.tcp.listen=127.0.0.1:8080
# plugins.disabled=
# log.level=INFO
"""


def default_home() -> Path:
    env = os.environ.get("ZMN_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "zmn"


def parse_conf(text: str, source: str = "zmn.conf") -> dict[str, str]:
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(
                f"{source}:{lineno}: expected key=value, got {raw!r}", field=f"{source}:{lineno}"
            )
        values[key.strip()] = value.strip()
    return values


def _read_conf(conf: Path) -> str:
    try:
        return conf.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidArgument(
            f"cannot read {conf}: {why}; it must be a UTF-8 text file of key=value lines"
            " readable by the user running zmn (zmn init writes a fresh one when it is absent)",
            code="NODE.CONFIG_UNREADABLE",
            field=str(conf),
        ) from None


@dataclass
class BootConfig:
    home: Path
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, home: Path | None = None, env: dict[str, str] | None = None) -> BootConfig:
        home = (home or default_home()).expanduser().resolve()
        env = dict(os.environ if env is None else env)
        values = dict(DEFAULTS)
        conf = home / "zmn.conf"
        if conf.exists():
            values.update(parse_conf(_read_conf(conf), str(conf)))
        for name, value in env.items():
            if name.startswith("ZMN_") and name not in ("ZMN_HOME", "ZMN_ENDPOINT", "ZMN_SESSION"):
                values[name[4:].lower().replace("_", ".")] = value
        return cls(home, values)

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default) or default

    @property
    def db_url(self) -> str:
        return self.get("db.url") or f"sqlite:///{self.home / 'zmn.db'}"

    @property
    def bus_url(self) -> str:
        return self.get("bus.url", "local://")

    @property
    def unix_path(self) -> Path:
        return Path(self.get("api.unix.path") or self.home / "zmn.sock")

    @property
    def tcp_listen(self) -> tuple[str, int] | None:
        text = self.get("api.tcp.listen")
        if not text:
            return None
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise InvalidArgument(
                f"api.tcp.listen must be HOST:PORT, got {text!r}", field="api.tcp.listen"
            )
        return host.strip("[]") or "127.0.0.1", int(port)

    @property
    def disabled_plugins(self) -> set[str]:
        return {p.strip() for p in self.get("plugins.disabled").split(",") if p.strip()}

    @property
    def node_name(self) -> str:
        return self.get("node.name") or socket.gethostname()

    @property
    def pid_file(self) -> Path:
        return self.home / "zmn.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "zmn.log"

    @property
    def lock_file(self) -> Path:
        return self.home / "zmn.lock"
