"""Sessions from ``zcli login``, one per endpoint, in ``$XDG_CONFIG_HOME/zcli/sessions.json``.

The file holds bearer tokens, so it is written with mode 0600 (in a 0700 directory) and
replaced atomically; a file that cannot be read counts as empty rather than breaking zcli.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:  # completion callbacks read sessions: pathlib is imported only to write
    from pathlib import Path


def _config_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "zcli")


def config_dir() -> Path:
    from pathlib import Path

    return Path(_config_dir())


def sessions_path() -> Path:
    return config_dir() / "sessions.json"


def load_all() -> dict[str, str]:
    try:
        with open(os.path.join(_config_dir(), "sessions.json"), encoding="utf-8") as f:
            text = f.read()
        import json  # only when there is a file: most scripts have no login to read

        data = json.loads(text)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def key(endpoint: str) -> str:
    """``unix:zmn.sock`` and ``unix:/abs/zmn.sock`` are the same node: key by absolute path."""
    if endpoint.startswith("unix:"):
        return "unix:" + os.path.abspath(os.path.expanduser(endpoint[5:]))
    return endpoint


def get(endpoint: str) -> str | None:
    return load_all().get(key(endpoint))


def save(endpoint: str, session: str) -> None:
    data = load_all()
    data[key(endpoint)] = session
    _write(data)


def forget(endpoint: str) -> bool:
    data = load_all()
    if data.pop(key(endpoint), None) is None:
        return False
    _write(data)
    return True


def _write(data: dict[str, str]) -> None:
    import json

    path = sessions_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
