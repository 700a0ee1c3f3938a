"""Regenerate the initial revision from the models (before the first release only).

    python -m zmn.migrations.generate

Writes ``versions/0001_initial.py`` by autogenerating against an empty SQLite database. Once
a release has shipped, new changes get new revisions (``alembic revision --autogenerate``)
instead; ``tests/unit/test_migrations.py`` fails whenever the models and migrations differ.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from zmn.migrations.schema import HERE, alembic_config


def main() -> None:
    target = HERE / "versions" / "0001_initial.py"
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'empty.db'}"
        cfg = alembic_config(url)
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    produced = next((HERE / "versions").glob("0001_*.py"))
    if produced != target:
        produced.rename(target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
