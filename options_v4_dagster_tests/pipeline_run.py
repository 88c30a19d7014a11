"""A session materialized through Dagster for end-to-end tests (the README's `options-v4 run`) in a
scratch folder: its own DAGSTER_HOME, SQLite warehouse and OPTIONS_V4_HOME."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
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


#: variables a scratch CLI call never inherits from the machine (live trading switches, the broker)
CLEARED = ("OPTIONS_V4_LIVE", "DHAN_CLIENT_ID", "DHAN_ACCESS_TOKEN", "OPTIONS_V4_BROKER", "OPTIONS_V4_MARKET_DATA")


def cli_call(env: dict, argv: list[str], **extra: str) -> tuple[int, str, str]:
    """``options-v4 ARGV`` in this process with the scratch ``env`` of :func:`run_session` (plus ``extra``
    variables): (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for k in CLEARED:
            mp.delenv(k, raising=False)
        for k in ("DAGSTER_HOME", "DATABASE_URL", "OPTIONS_V4_HOME"):
            mp.setenv(k, env[k])
        for k, v in extra.items():
            mp.setenv(k, v)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(argv)
    return code, out.getvalue(), err.getvalue()
