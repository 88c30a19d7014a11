"""Settings read from the environment, with defaults for the embedded, offline setup.

Every variable the project reads is listed in README.md. Secrets (Dhan token, Supabase key)
are never read here for logging: resources take them through ``dg.EnvVar``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
#: The checkout's root when the package is installed in editable mode (it has pyproject.toml).
PROJECT_ROOT = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").exists() else None

MARKET_SOURCES = ("simulated", "nse_files", "dhan", "yfinance")
DEFAULT_PARTITION_START = "2024-01-01"


def home_dir() -> Path:
    """Folder for the project's local state (SQLite warehouse, charts): git-ignored ``.data``."""
    env = os.environ.get("OPTIONS_V4_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if PROJECT_ROOT is not None:
        return PROJECT_ROOT / ".data"
    return Path.home() / ".options_v4"


def database_url() -> str:
    """Warehouse URL: ``DATABASE_URL`` or a SQLite file under :func:`home_dir`."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        # Supabase and Heroku hand out postgres:// URLs; SQLAlchemy wants a driver name.
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url[len("postgres://"):]
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url
    path = home_dir() / "options_v4.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


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
    return os.environ.get("OPTIONS_V4_PARTITION_START", DEFAULT_PARTITION_START)
