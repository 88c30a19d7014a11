"""Helpers of the data-quality asset checks: a :class:`quality.Outcome` as an ``AssetCheckResult`` and
the result for a session the universe recorded as missing."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from options_v4_dagster.defs.formatting import figures_metadata
from options_v4_dagster.quality import Outcome
from options_v4_dagster.store import WarehouseLike, failures

_SEVERITY = {"WARN": dg.AssetCheckSeverity.WARN, "ERROR": dg.AssetCheckSeverity.ERROR}


def outcome_result(outcome: Outcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=outcome.passed, severity=_SEVERITY[outcome.severity],
                               description=outcome.description, metadata=figures_metadata(outcome.figures))


def recorded_gap(wh: WarehouseLike, session: dt.date) -> dg.AssetCheckResult | None:
    """A passing result when the universe recorded the session as missing (no data that day), else None."""
    reason = failures.missing_session_reason(wh, session)
    if reason is None:
        return None
    return dg.AssetCheckResult(passed=True, description=f"no rows: the session is recorded as missing ({reason})",
                               metadata={"missing_session": True})
