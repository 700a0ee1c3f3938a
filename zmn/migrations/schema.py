"""Schema migrations with Alembic, driven from code (no alembic.ini needed by operators).

``upgrade(url)`` brings any backend to the newest revision; it creates the schema on an empty
database and does nothing on one that is current, so a second node's ``zmn init`` joins a
shared database without re-creating it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None  # noqa: S101 - type narrowing for mypy, not a runtime check
    return head


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str) -> tuple[str | None, str]:
    """Migrate to head; returns (revision before, revision after)."""
    before = current_revision(url)
    command.upgrade(alembic_config(url), "head")
    return before, head_revision()
