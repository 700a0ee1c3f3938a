"""Snapshot files: compared byte for byte; ``ZCLI_RECORD=1`` writes them instead."""

from __future__ import annotations

import os
from pathlib import Path


def check(path: Path, text: str, why: str = "") -> None:
    """``text`` equals the file at ``path`` (written first when ``ZCLI_RECORD`` is set)."""
    if os.environ.get("ZCLI_RECORD"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} changed{why}:\n{text}"
