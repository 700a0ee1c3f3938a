"""Alembic environment: every service's tables, found through the service entry points."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from zmn.core import models as _core_models  # noqa: F401  (core tables)
from zmn.core.db import Base
from zmn.core.plugins import all_entry_points

for _ep in all_entry_points():
    try:
        _ep.load()  # importing a service imports its models
    except Exception:  # noqa: S112 - a broken plugin's tables are simply not managed
        continue

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(
            connection=connectable, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
