"""Alembic environment of the warehouse (options_v4_dagster/store/schema.py is the target metadata).

Run by :mod:`options_v4_dagster.store.migrate` (``Warehouse``, ``options-v4 db upgrade``), which passes
an open connection in ``config.attributes["connection"]`` (inside its transaction and lock), and by
the ``alembic`` command of a checkout (``alembic.ini`` at the repository root), which connects to
``sqlalchemy.url`` if set, else to the warehouse of ``DATABASE_URL`` (default: the local SQLite file).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from options_v4_dagster import config as settings
from options_v4_dagster.store.migrate import VERSION_TABLE, include_name
from options_v4_dagster.store.schema import UTCDateTime, metadata

config = context.config


def render_item(type_: str, obj, autogen_context) -> str | bool:
    """Revisions spell the DDL type, not the project's TypeDecorator (its conversions are Python-side):
    a revision must not depend on code that later releases may change."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        include_name=include_name,  # tables of other applications in the same database are not ours
        compare_type=True,
        render_item=render_item,
    )


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the DDL instead of running it."""
    context.configure(url=config.get_main_option("sqlalchemy.url") or settings.database_url(),
                      target_metadata=metadata, version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or settings.database_url(),
                              poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
