"""Settings read from the environment, with defaults for the embedded, offline setup.

Every variable the project reads is listed in README.md. Secrets (Dhan token, Supabase key)
are never read here for logging: resources take them through ``dg.EnvVar``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from .errors import ConfigError
from .types import MARKET_SOURCES  # noqa: F401  (one definition, in types.py)

PACKAGE_DIR = Path(__file__).resolve().parent
#: The checkout's root when the package is installed in editable mode (it has pyproject.toml).
PROJECT_ROOT = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").exists() else None

DEFAULT_PARTITION_START = "2024-01-01"


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


def database_url() -> str:
    """Warehouse URL: ``DATABASE_URL`` or a SQLite file under :func:`home_dir`.

    ``DATABASE_URL`` is checked here: not a URL, or a back-end other than PostgreSQL/SQLite, is a
    :class:`ConfigError` naming the variable (never its password). A PostgreSQL URL without a
    ``connect_timeout`` gets :data:`DEFAULT_DB_CONNECT_TIMEOUT` seconds, so an unreachable host fails
    in seconds instead of waiting for the operating system's TCP timeout.
    """
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        # Supabase and Heroku hand out postgres:// URLs; SQLAlchemy wants a driver name.
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url[len("postgres://"):]
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return _checked_database_url(url)
    path = home_dir() / "options_v4.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _checked_database_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError("DATABASE_URL is not a database URL (expected e.g. "
                          "postgresql://user:password@host:5432/dbname or sqlite:////path/to/file.db)") from None
    backend = parsed.get_backend_name()
    if backend not in DATABASE_BACKENDS:
        raise ConfigError(f"DATABASE_URL names a {parsed.drivername!r} database; the warehouse runs on "
                          f"{' or '.join(DATABASE_BACKENDS)} (postgresql://... or sqlite:///...)")
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", "psycopg2"):
            raise ConfigError(f"DATABASE_URL driver {parsed.drivername!r} is not installed; use postgresql://")
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
