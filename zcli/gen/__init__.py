"""Generators of the files derived from the API catalogue: ``completions/`` and ``man/``.

    python -m zcli.gen completions [--out DIR]     (make completions)
    python -m zcli.gen man [--out DIR]             (make man)
    python -m zcli.gen check                       exit 1 when a checked-in file is stale

This is a development tool: it builds the catalogue in-process from the code (a
:class:`zmn.core.node.Node` with every entry-point service, on an in-memory SQLite), so it
needs no running node and may import ``zmn.core``; zcli itself never does. The output is
deterministic (sorted, no dates, no UUIDs) so that regenerating a current tree changes
nothing, which ``tests/unit/test_generated_current.py`` checks.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

Files = dict[str, str]  # path relative to the output root -> content


def build_catalogue() -> dict[str, Any]:
    """The catalogue a node with every installed service would publish."""
    from zmn.core.catalogue import build_catalogue as build
    from zmn.core.config import BootConfig
    from zmn.core.node import Node

    with tempfile.TemporaryDirectory(prefix="zcli-gen-") as home:
        config = BootConfig(Path(home), {"db.url": "sqlite://"})
        node = Node(config, node_uuid="0" * 32)
        try:
            node.load_services(None)
            if node.plugin_errors:
                problems = "; ".join(f"{k}: {v}" for k, v in sorted(node.plugin_errors.items()))
                raise SystemExit(f"zcli.gen: services failed to load: {problems}")
            return build(node)
        finally:
            node.db.dispose()


def generate(kind: str, catalogue: dict[str, Any] | None = None) -> Files:
    """The files of one kind (``completions`` or ``man``), by relative path."""
    from zcli.gen import completions, manpages

    makers: dict[str, Callable[[dict[str, Any]], Files]] = {
        "completions": completions.generate,
        "man": manpages.generate,
    }
    return makers[kind](catalogue if catalogue is not None else build_catalogue())


def write(files: Files, out: Path) -> list[Path]:
    """Write the files that differ; return the paths written."""
    written = []
    for rel, text in sorted(files.items()):
        path = out / rel
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def stale(files: Files, root: Path = ROOT) -> list[str]:
    """Relative paths whose checked-in content differs from ``files``."""
    out = []
    for rel, text in sorted(files.items()):
        path = root / rel
        if not path.exists() or path.read_text() != text:
            out.append(rel)
    return out
