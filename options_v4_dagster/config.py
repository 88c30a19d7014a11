"""Settings read from the environment, with defaults for the embedded, offline setup.

Every variable the project reads is listed in README.md. Secrets (Dhan token, Supabase database
password) are never logged: Dagster resources take them through ``dg.EnvVar`` and pass them in.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError
from .types import MARKET_SOURCES  # noqa: F401  (one definition, in types.py)

PACKAGE_DIR = Path(__file__).resolve().parent
#: The checkout's root when the package is installed in editable mode (it has pyproject.toml).
PROJECT_ROOT = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").exists() else None

DEFAULT_PARTITION_START = "2024-01-01"
#: Sessions per run of a backfill: the per-session assets' backfill policy (defs/partitions.py) and the
#: default of `options-v4 backfill --sessions-per-run`.
BACKFILL_SESSIONS_PER_RUN = 64


def home_dir() -> Path:
    """Folder for the project's local state (SQLite warehouse, charts): git-ignored ``.data``."""
    env = os.environ.get("OPTIONS_V4_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if PROJECT_ROOT is not None:
        return PROJECT_ROOT / ".data"
    return Path.home() / ".options_v4"


#: Warehouse back-ends (store/warehouse.py is written for these two).
DATABASE_BACKENDS = ("postgresql", "sqlite")
#: Seconds to wait for a PostgreSQL connection (libpq ``connect_timeout``) unless the URL sets one.
DEFAULT_DB_CONNECT_TIMEOUT = 5
#: ``OPTIONS_V4_WAREHOUSE``: ``sqlalchemy`` (``DATABASE_URL`` or SQLite) or ``supabase`` (the Supabase
#: project's PostgreSQL, from ``SUPABASE_DB_URL`` or ``SUPABASE_URL`` + ``SUPABASE_DB_PASSWORD``).
WAREHOUSE_KINDS = ("sqlalchemy", "supabase")
#: Hosts that get no ``sslmode=require`` (a local stand-in of Supabase's PostgreSQL).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def warehouse_kind() -> str:
    """``OPTIONS_V4_WAREHOUSE`` (default ``sqlalchemy``); any other value is a :class:`ConfigError`."""
    kind = os.environ.get("OPTIONS_V4_WAREHOUSE", "").strip().lower() or "sqlalchemy"
    if kind not in WAREHOUSE_KINDS:
        raise ConfigError(f"OPTIONS_V4_WAREHOUSE={kind!r} is not a warehouse; choose one of "
                          f"{', '.join(WAREHOUSE_KINDS)}")
    return kind


def database_url_variable() -> str:
    """The environment variable(s) the warehouse URL comes from, for error messages."""
    if warehouse_kind() == "supabase":
        return "SUPABASE_DB_URL" if os.environ.get("SUPABASE_DB_URL", "").strip() else "SUPABASE_URL"
    return "DATABASE_URL"


def database_url(*, supabase_db_url: str | None = None, supabase_db_password: str | None = None) -> str:
    """Warehouse URL. ``OPTIONS_V4_WAREHOUSE=supabase``: :func:`supabase_database_url`; otherwise
    ``DATABASE_URL`` or a SQLite file under :func:`home_dir`.

    ``supabase_db_url`` / ``supabase_db_password``: the secrets as a Dagster resource resolved them
    (``dg.EnvVar``); ``None`` reads ``SUPABASE_DB_URL`` / ``SUPABASE_DB_PASSWORD`` from the environment
    (the CLI). ``DATABASE_URL`` is checked here: not a URL, or a back-end other than PostgreSQL/SQLite,
    is a :class:`ConfigError` naming the variable (never its password). A PostgreSQL URL without a
    ``connect_timeout`` gets :data:`DEFAULT_DB_CONNECT_TIMEOUT` seconds, so an unreachable host fails
    in seconds instead of waiting for the operating system's TCP timeout.
    """
    if warehouse_kind() == "supabase":
        def env(var: str, given: str | None) -> str:
            return (os.environ.get(var, "") if given is None else given).strip()

        return supabase_database_url(db_url=env("SUPABASE_DB_URL", supabase_db_url),
                                     project_url=os.environ.get("SUPABASE_URL", "").strip(),
                                     password=env("SUPABASE_DB_PASSWORD", supabase_db_password))
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return _checked_database_url(url)
    path = home_dir() / "options_v4.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def supabase_database_url(*, db_url: str = "", project_url: str = "", password: str = "") -> str:
    """The Supabase project's PostgreSQL URL (Supabase is PostgreSQL; the warehouse talks to it directly).

    ``db_url`` (``SUPABASE_DB_URL``, the connection string of the dashboard's Connect dialog, direct or
    pooler) wins; otherwise ``project_url`` (``SUPABASE_URL``, ``https://<ref>.supabase.co``) gives the
    direct connection ``postgres@db.<ref>.supabase.co:5432/postgres`` with ``password``
    (``SUPABASE_DB_PASSWORD``). ``sslmode=require`` unless the URL sets an sslmode or the host is local.
    A missing or malformed piece is a :class:`ConfigError` naming the variable, never the password.
    """
    from sqlalchemy.engine import URL

    if db_url:
        url = _checked_database_url(db_url, "SUPABASE_DB_URL", backends=("postgresql",))
    else:
        if not project_url:
            raise ConfigError("OPTIONS_V4_WAREHOUSE=supabase needs SUPABASE_DB_URL (the project's Postgres "
                              "connection string) or SUPABASE_URL with SUPABASE_DB_PASSWORD")
        host = urlsplit(project_url if "://" in project_url else f"https://{project_url}").hostname or ""
        ref, _, domain = host.partition(".")
        if not ref or domain != "supabase.co":
            raise ConfigError(f"SUPABASE_URL={project_url!r} is not a Supabase project URL "
                              "(https://<ref>.supabase.co); set SUPABASE_DB_URL to the connection string instead")
        if not password:
            raise ConfigError("SUPABASE_DB_PASSWORD is not set: OPTIONS_V4_WAREHOUSE=supabase with SUPABASE_URL "
                              "needs the database password (dashboard: Project Settings > Database)")
        url = _checked_database_url(URL.create("postgresql+psycopg", username="postgres", password=password,
                                               host=f"db.{ref}.supabase.co", port=5432, database="postgres")
                                    .render_as_string(hide_password=False), "SUPABASE_URL")
    return _with_ssl(url)


def _with_ssl(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if "sslmode" in parsed.query or (parsed.host or "localhost") in LOCAL_HOSTS:
        return url
    return parsed.update_query_dict({"sslmode": "require"}).render_as_string(hide_password=False)


def _checked_database_url(url: str, var: str = "DATABASE_URL",
                          backends: tuple[str, ...] = DATABASE_BACKENDS) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    # Supabase and Heroku hand out postgres:// URLs; SQLAlchemy wants a driver name.
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"{var} is not a database URL (expected e.g. "
                          "postgresql://user:password@host:5432/dbname"
                          + (" or sqlite:////path/to/file.db)" if "sqlite" in backends else ")")) from None
    backend = parsed.get_backend_name()
    if backend not in backends:
        raise ConfigError(f"{var} names a {parsed.drivername!r} database; the warehouse runs on "
                          f"{' or '.join(backends)} (postgresql://..." + (" or sqlite:///...)" if "sqlite" in backends
                                                                         else ")"))
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
            raise ConfigError(f"{var} driver {parsed.drivername!r} is not installed; use postgresql://")
        if "connect_timeout" not in parsed.query:
            parsed = parsed.update_query_dict({"connect_timeout": str(DEFAULT_DB_CONNECT_TIMEOUT)})
        return parsed.render_as_string(hide_password=False)
    return url


def database_location(url: str | None = None) -> str:
    """Where the warehouse is, safe to print: ``host:port/dbname`` or the SQLite path (no password)."""
    from sqlalchemy.engine import make_url

    u = make_url(url or database_url())
    if u.get_backend_name() == "sqlite":
        return f"sqlite file {u.database or ':memory:'}"
    return f"{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"


def market_source(override: str | None = None) -> str:
    src = (override or os.environ.get("OPTIONS_V4_MARKET_DATA") or "simulated").strip().lower()
    if src not in MARKET_SOURCES:
        raise ConfigError(
            f"OPTIONS_V4_MARKET_DATA={src!r} is not a market data source; choose one of {', '.join(MARKET_SOURCES)}"
        )
    return src


def nse_data_dir(override: str | None = None) -> Path:
    """Folder of real NSE files (``OPTIONS_V4_NSE_DATA_DIR``; default ``../shared/data/nse``)."""
    raw = override or os.environ.get("OPTIONS_V4_NSE_DATA_DIR")
    if raw:
        return Path(raw).expanduser().resolve()
    base = PROJECT_ROOT if PROJECT_ROOT is not None else Path.cwd()
    return (base.parent / "shared" / "data" / "nse").resolve()


def partition_start() -> str:
    raw = os.environ.get("OPTIONS_V4_PARTITION_START", "").strip() or DEFAULT_PARTITION_START
    try:
        dt.date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"OPTIONS_V4_PARTITION_START={raw!r} is not a date in YYYY-MM-DD form") from None
    return raw


def _env_number(var: str, default: float, *, minimum: float, integer: bool = False) -> float:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not {'an integer' if integer else 'a number'}") from None
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{var}={raw!r} must be at least {minimum}")
    return value


def dhan_settings() -> dict:
    """Dhan transport settings from the environment (defaults in brackets):

    - ``DHAN_CIRCUIT_FAILURES`` [4]: consecutive connection failures (refused, reset, timed out)
      after which the provider fails fast for :envvar:`DHAN_CIRCUIT_RESET_SECONDS` [600];
    - ``DHAN_TIMEOUT_SECONDS`` [10]: read timeout of one HTTP request; ``DHAN_CONNECT_TIMEOUT_SECONDS`` [3];
    - ``DHAN_CALL_TIMEOUT_SECONDS`` [25]: budget of one call, retries included.
    """
    return {
        "circuit_failures": int(_env_number("DHAN_CIRCUIT_FAILURES", 4, minimum=1, integer=True)),
        "circuit_reset": _env_number("DHAN_CIRCUIT_RESET_SECONDS", 600.0, minimum=0.0),
        "timeout": _env_number("DHAN_TIMEOUT_SECONDS", 10.0, minimum=0.01),
        "connect_timeout": _env_number("DHAN_CONNECT_TIMEOUT_SECONDS", 3.0, minimum=0.01),
        "call_timeout": _env_number("DHAN_CALL_TIMEOUT_SECONDS", 25.0, minimum=0.01),
    }


def dhan_order_settings() -> dict:
    """Settings of the live Dhan broker's shared order-rate limiter (defaults in brackets):

    - ``DHAN_ORDER_LIMITER_PATH`` [``<home_dir>/dhan_order_limiter.sqlite``]: the SQLite file every
      process placing orders for the account shares (with a ``.lock`` file beside it);
    - ``DHAN_ORDER_MAX_WAIT_SECONDS`` [30]: longest wait for an order slot before the request is
      refused as rate-limited (nothing sent);
    - ``DHAN_ORDER_RATE_MARGIN_MS`` [0]: each of Dhan's windows (10/s, 250/min, 1,000/h, 7,000/day)
      is counted this much longer (a request already holds its slot until its answer comes back).
    """
    path = os.environ.get("DHAN_ORDER_LIMITER_PATH", "").strip()
    return {
        "path": Path(path).expanduser() if path else home_dir() / "dhan_order_limiter.sqlite",
        "max_wait": _env_number("DHAN_ORDER_MAX_WAIT_SECONDS", 30.0, minimum=0.0),
        "margin_ms": int(_env_number("DHAN_ORDER_RATE_MARGIN_MS", 0, minimum=0, integer=True)),
    }
