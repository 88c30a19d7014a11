"""A session materialized through Dagster for end-to-end tests (the README's `options-v4 run`) in a
scratch folder: its own DAGSTER_HOME, SQLite warehouse and OPTIONS_V4_HOME."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from options_v4_dagster.cli import main as cli_main


def run_session(base: Path, session: dt.date, source: str = "simulated", extra: list[str] | None = None) -> dict:
    """``options-v4 run --date SESSION --source SOURCE`` into ``base``; the environment it used
    (DAGSTER_HOME, DATABASE_URL, OPTIONS_V4_HOME) and ``exit_code``."""
    env = {"DAGSTER_HOME": str(base / "dagster_home"), "DATABASE_URL": f"sqlite:///{base / 'wh.db'}",
           "OPTIONS_V4_HOME": str(base / "home")}
    (base / "dagster_home").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("OPTIONS_V4_MARKET_DATA", raising=False)
        code = cli_main(["run", "--date", session.isoformat(), "--source", source, *(extra or [])])
    return {**env, "exit_code": code}
