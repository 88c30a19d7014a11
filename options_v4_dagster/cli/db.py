"""The warehouse from the command line: the connection check every warehouse command makes first, and
``options-v4 db upgrade|current|history`` (schema migrations)."""

from __future__ import annotations

from options_v4_dagster import config
from options_v4_dagster.errors import ConfigError

from .output import console


def check_database() -> str:
    """Connect once to the warehouse named by ``DATABASE_URL`` (or, with ``OPTIONS_V4_WAREHOUSE=supabase``,
    ``SUPABASE_DB_URL`` / ``SUPABASE_URL``): a clear :class:`ConfigError` naming the variable and
    host:port (never the password) instead of SQLAlchemy's traceback. Returns the location."""
    import sqlalchemy as sa

    url = config.database_url()
    where = config.database_location(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines() or [type(exc).__name__]
        reason = lines[0]
        password = engine.url.password
        if password:
            reason = reason.replace(str(password), "***")
        raise ConfigError(f"{config.database_url_variable()}: cannot connect to the warehouse at {where}: "
                          f"{reason}") from None
    finally:
        engine.dispose()
    return where


def cmd_db(args) -> int:
    """The warehouse schema: ``upgrade`` to the newest migration, ``current`` revision, ``history``."""
    from options_v4_dagster.store import Warehouse, migrate

    wh = Warehouse(config.database_url(), create=False)
    try:
        if args.db_command == "upgrade":
            res = wh.migrate()
            before = f"{res.stamped} (stamped: tables without a schema version)" if res.stamped \
                else res.before or "empty"
            console.print(f"warehouse {wh.describe()}: {before} -> {res.after}" if res.changed
                          else f"warehouse {wh.describe()}: already at {res.after} (head)")
        elif args.db_command == "current":
            console.print(f"warehouse {wh.describe()}: {migrate.describe_current(wh.engine)}")
        else:
            for rev, down, doc in migrate.history():
                console.print(f"{down or '<base>'} -> {rev}  {doc.splitlines()[0] if doc else ''}")
    finally:
        wh.dispose()
    return 0
