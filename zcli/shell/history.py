"""Shell history in ``${XDG_STATE_HOME:-~/.local/state}/zcli/history``, secrets scrubbed.

A line that carries a secret parameter (``password=...``, ``--password ...``; every catalogue
parameter marked ``secret``) is kept with the value replaced by ``***``, in memory as well as
on disk, so that neither the file nor the up-arrow gives a password back. The file is mode
0600 in a 0700 directory.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit.history import FileHistory

from zcli.catalogue import Catalogue, camel, kebab

MASK = "***"
ALWAYS_SECRET = ("password",)


def history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "zcli" / "history"


def secret_names(catalogue: Catalogue | None) -> set[str]:
    """Every parameter name the catalogue marks secret, plus ``password``."""
    names = set(ALWAYS_SECRET)
    if catalogue is not None:
        for api in catalogue.apis.values():
            names.update(p.name for p in api.params.values() if p.raw.get("secret"))
    return names


def scrub(line: str, secrets: Iterable[str]) -> str:
    """``login --account a --password s3cret`` -> ``login --account a --password ***``."""
    names = set(secrets)
    if not names:
        return line
    try:
        tokens = shlex.split(line.replace("\\\n", " "))  # continued lines are one command
    except ValueError:
        return _scrub_text(line, names)
    out: list[str] = []
    changed = False
    mask_next = False
    for token in tokens:
        if mask_next:
            out.append(MASK)
            mask_next, changed = False, True
            continue
        key, sep, _ = token.lstrip("-").partition("=")
        if camel(key) in names and (sep or token.startswith("--")):
            if sep:
                out.append(token[: token.index("=") + 1] + MASK)
                changed = True
            else:
                out.append(token)
                mask_next = True
            continue
        out.append(token)
    if not changed:
        return line
    return " ".join(t if t == MASK or t.endswith("=" + MASK) else shlex.quote(t) for t in out)


def _scrub_text(line: str, names: set[str]) -> str:
    """For a line shlex cannot split (an open quote): mask from the secret to the end."""
    words = "|".join(re.escape(w) for n in sorted(names) for w in {n, kebab(n)})
    return re.sub(rf"((?:--)?(?:{words})(?:=|\s+)).*$", rf"\g<1>{MASK}", line, flags=re.S)


class ScrubbingFileHistory(FileHistory):
    """A FileHistory that never stores a secret; the file and its directory are private."""

    def __init__(self, path: Path, secrets: Iterable[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.secrets = set(secrets)
        super().__init__(str(path))

    def append_string(self, string: str) -> None:
        super().append_string(scrub(string, self.secrets))
