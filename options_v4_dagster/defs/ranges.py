"""Range runs: an asset of one session materializes a backfill's range of sessions in one step.

A backfill groups sessions into runs (the assets' backfill policy, :data:`~options_v4_dagster.defs.
partitions.session_ranges`); :func:`per_session` wraps an asset's compute function so that a run of one
session calls it as before and a run of a range calls it once per session, oldest first, with
:func:`~options_v4_dagster.defs.partitions.session_of` giving that session. Each session is written as
it would be by its own run (its own transaction; the first session that fails fails the step and
leaves the sessions before it written). The step then reports one materialization for the range
(Dagster records it for every partition of the range) whose metadata summarizes the sessions, and
one result per asset check (passed when every session passed).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import time
from collections.abc import Callable, Iterable, Sequence

import dagster as dg

from options_v4_dagster.defs.partitions import processing, sessions_of

ROW_COUNT = "dagster/row_count"
_NO_VALUE = dg.MaterializeResult().value  # the default: no output value


def per_session(fn: Callable | None = None, *, keep_last: Sequence[str] = ()) -> Callable:
    """Decorate an asset's compute function (under ``@dg.asset``) to materialize a range of sessions in
    one step. ``keep_last``: metadata keys copied from the last session into the range's metadata
    (e.g. its charts)."""
    if fn is None:
        return functools.partial(per_session, keep_last=keep_last)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator_step(context, *args, **kwargs):
            sessions = sessions_of(context)
            if len(sessions) == 1:
                yield from fn(context, *args, **kwargs)
                return
            done = _each(context, fn.__name__, sessions, lambda: list(fn(context, *args, **kwargs)))
            yield from combine(done, keep_last)
        return generator_step

    @functools.wraps(fn)
    def step(context, *args, **kwargs):
        sessions = sessions_of(context)
        if len(sessions) == 1:
            return fn(context, *args, **kwargs)
        many = []  # a multi-asset returns a tuple of results

        def call() -> list:
            out = fn(context, *args, **kwargs)
            # (MaterializeResult and AssetCheckResult are named tuples themselves)
            many.append(isinstance(out, tuple | list)
                        and not isinstance(out, dg.MaterializeResult | dg.AssetCheckResult))
            return [r for r in (out if many[-1] else [out]) if r is not None]

        events = combine(_each(context, fn.__name__, sessions, call), keep_last)
        mats = [e for e in events if isinstance(e, dg.MaterializeResult)]
        checks = [e for e in events if isinstance(e, dg.AssetCheckResult)]
        for i, m in enumerate(mats):  # a returned result carries its checks
            own = [c for c in checks if c.asset_key in (None, m.asset_key)] if i == 0 else \
                [c for c in checks if c.asset_key is not None and c.asset_key == m.asset_key]
            if own:
                mats[i] = dg.MaterializeResult(asset_key=m.asset_key, metadata=m.metadata, check_results=own)
        if not mats:  # an asset check's function: one combined result over the range
            return checks[0] if len(checks) == 1 else tuple(checks)
        if any(many):
            return tuple(mats)
        return mats[0]
    return step


def _each(context, name: str, sessions: list[dt.date], call: Callable[[], list]) -> list[tuple[dt.date, list, float]]:
    done = []
    for i, session in enumerate(sessions, 1):
        t0 = time.perf_counter()
        with processing(session, last=i == len(sessions)):
            events = call()
        done.append((session, events, time.perf_counter() - t0))
        context.log.info(f"{name}: session {session} ({i}/{len(sessions)}) done in {done[-1][2]:.2f}s")
    return done


def combine(done: Iterable[tuple[dt.date, list, float]], keep_last: Sequence[str] = ()) -> list:
    """One MaterializeResult per asset key (range metadata) then one AssetCheckResult per check."""
    mats: dict = {}  # asset key (None: the asset's own) -> [(session, metadata, seconds)]
    checks: dict = {}  # (asset key, check name) -> [(session, AssetCheckResult)]
    for session, events, seconds in done:
        for ev in events:
            if isinstance(ev, dg.MaterializeResult):
                if ev.value is not _NO_VALUE:
                    raise TypeError("per_session: a range run cannot return an output value")
                mats.setdefault(ev.asset_key, []).append((session, dict(ev.metadata or {}), seconds))
                for c in ev.check_results or ():
                    checks.setdefault((c.asset_key, c.check_name), []).append((session, c))
            elif isinstance(ev, dg.AssetCheckResult):
                checks.setdefault((ev.asset_key, ev.check_name), []).append((session, ev))
            else:
                raise TypeError(f"per_session: unexpected {type(ev).__name__} from a session's step")
    out: list = [dg.MaterializeResult(asset_key=key, metadata=range_metadata(rows, keep_last))
                 for key, rows in mats.items()]
    out += [_range_check(name, key, results) for (key, name), results in checks.items()]
    return out


def _row_count(meta: dict):
    v = meta.get(ROW_COUNT)
    v = getattr(v, "value", v)
    return int(v) if isinstance(v, int | float) else None


def range_metadata(rows: list[tuple[dt.date, dict, float]], keep_last: Sequence[str] = ()) -> dict:
    """The metadata of a range's materialization: its sessions, the rows each wrote, its missing sessions.
    (No ``dagster/row_count``: Dagster records the same metadata for every partition of the range.)"""
    counts = [_row_count(m) for _, m, _ in rows]
    missing = [s.isoformat() for s, m, _ in rows if getattr(m.get("missing_session"), "value",
                                                            m.get("missing_session")) is True]
    table = ["| session | rows | seconds |", "|---|---:|---:|"]
    table += [f"| {s} | {'' if n is None else f'{n:,}'} | {sec:.2f} |" for (s, _, sec), n in zip(rows, counts, strict=True)]
    meta = {
        "sessions": dg.MetadataValue.int(len(rows)),
        "session_range": f"{rows[0][0]} .. {rows[-1][0]}",
        "rows_written": dg.MetadataValue.int(sum(n for n in counts if n is not None)),
        "rows_per_session": dg.MetadataValue.md("\n".join(table)),
        "missing_sessions": dg.MetadataValue.json(missing),
        "seconds": round(sum(sec for *_, sec in rows), 3),
    }
    last = rows[-1][1]
    for key in keep_last:
        if key in last:
            meta[f"{key} ({rows[-1][0]})"] = last[key]
    return meta


def _range_check(name: str, key, results: list[tuple[dt.date, dg.AssetCheckResult]]) -> dg.AssetCheckResult:
    failed = [(s, r) for s, r in results if not r.passed]
    first, last = results[0][0], results[-1][0]
    if failed:
        s, r = failed[0]
        description = (f"{len(failed)} of {len(results)} sessions failed ({', '.join(str(d) for d, _ in failed[:10])}); "
                       f"{s}: {r.description or ''}")
        severity, meta = r.severity, dict(r.metadata or {})
    else:
        description = f"all {len(results)} sessions {first} .. {last} passed; {last}: {results[-1][1].description or ''}"
        severity, meta = results[-1][1].severity, dict(results[-1][1].metadata or {})
    meta["failed_sessions"] = dg.MetadataValue.json([str(s) for s, _ in failed])
    return dg.AssetCheckResult(check_name=name, asset_key=key, passed=not failed, severity=severity,
                               description=description[:2000], metadata=meta)
