"""The track record end to end (:func:`run`: a fresh replay warehouse, the replay, the trades, the
statistics, the calibration) and what it reports: the JSON summary (:func:`summary`) and the HTML
report file (:func:`html_report`). No Dagster here."""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .. import config
from ..store.track_record_queries import exit_intent_rows
from ..store.warehouse import Warehouse
from .calibration import brier, ev_calibration, exit_rule_stats, reliability
from .replay import ReplayConfig, ReplayResult, SessionRecord, replay
from .stats import MONTHLY_TARGET, breakdowns, equity_stats, monthly_returns, trade_stats
from .trades import trade_frame

__all__ = ["TrackRecord", "default_db_path", "default_report_path", "html_report", "run", "summary"]

#: the trade columns of the summary's ``trades`` list
TRADE_FIELDS = ("trade", "allocation_id", "position_id", "symbol", "strategy_name", "category", "conviction", "status",
                "entry_date", "exit_date", "exit_rule", "days_in_trade", "lots", "capital_used", "cash_flow", "fees",
                "spread_paid", "open_value", "pnl",
                "pop", "expected_value", "dte", "short_delta")


@dataclass
class TrackRecord:
    result: ReplayResult
    trades: pl.DataFrame
    intents: pl.DataFrame
    summary: dict
    db_path: Path


def default_db_path(cfg: ReplayConfig, folder: Path | None = None) -> Path:
    """``replay_<source>_<start>_<end>_<cadence>.db`` (the replay's own warehouse) in ``folder``
    (default ``.data/track_record``)."""
    return (folder or config.home_dir() / "track_record") / f"replay_{cfg.source}_{cfg.start}_{cfg.end}_{cfg.cadence}.db"


def default_report_path(cfg: ReplayConfig, folder: Path | None = None) -> Path:
    """``report_<source>_<start>_<end>_<cadence>.html`` in ``folder`` (default ``.data/track_record``)."""
    return (folder or config.home_dir() / "track_record") / f"report_{cfg.source}_{cfg.start}_{cfg.end}_{cfg.cadence}.html"


def run(cfg: ReplayConfig, provider, *, db_path: Path | None = None, stored: Warehouse | None = None,
        progress: Callable[[SessionRecord], None] | None = None) -> TrackRecord:
    """Replay ``cfg`` into a fresh SQLite warehouse at ``db_path`` (default :func:`default_db_path`;
    an existing file is replaced), then measure it. ``stored``: a warehouse whose stored candidates the
    entry sessions use where it holds them (see :func:`~.replay.replay`)."""
    path = Path(db_path) if db_path is not None else default_db_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)
    wh = Warehouse(f"sqlite:///{path}")
    try:
        res = replay(cfg, wh, provider, stored=stored, progress=progress)
        end = res.sessions[-1].session if res.sessions else cfg.end
        trades = trade_frame(wh, res.marks, end)
        intents = exit_intent_rows(wh)
    finally:
        wh.dispose()
    return TrackRecord(res, trades, intents, summary(res, trades, intents), path)


def _jsonable(v):
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float):
        return round(v, 6)
    return v


def summary(res: ReplayResult, trades: pl.DataFrame, intents: pl.DataFrame) -> dict:
    """The track record as one JSON-ready dict (README: ``options-v4 track-record --json``)."""
    cfg = res.config
    eq = res.equity_frame()
    es = equity_stats(eq, cfg.capital)
    ts = trade_stats(trades, cfg.capital)
    months = monthly_returns(eq, cfg.capital)
    parts = breakdowns(trades)
    notes = [f"{r.session}: {n}" for r in res.sessions for n in r.notes]
    out = {
        "config": {"start": cfg.start.isoformat(), "end": cfg.end.isoformat(), "source": cfg.source,
                   "capital": cfg.capital, "cadence": cfg.cadence, "risk": cfg.risk,
                   "symbols": list(cfg.symbols) if cfg.symbols else "all"},
        "sessions": len(res.sessions), "entry_sessions": sum(1 for r in res.sessions if r.entry),
        "stored_candidate_sessions": sum(1 for r in res.sessions if r.inputs == "stored"),
        "first_session": res.sessions[0].session.isoformat() if res.sessions else None,
        "last_session": res.sessions[-1].session.isoformat() if res.sessions else None,
        **{k: v for k, v in es.items() if k != "sessions"},
        "monthly_target": MONTHLY_TARGET, "monthly_returns": months,
        "months_meeting_target": sum(1 for m in months if m["meets_target"]),
        "average_monthly_return": (sum(m["return"] for m in months) / len(months)) if months else None,
        **{k: v for k, v in ts.items() if k not in ("trades", "closed", "open", "unwound")},
        "trade_counts": {k: ts[k] for k in ("trades", "closed", "open", "unwound")},
        "trades": [{k: _jsonable(r[k]) for k in TRADE_FIELDS} for r in trades.iter_rows(named=True)],
        "calibration": reliability(trades), "brier": brier(trades), "ev_calibration": ev_calibration(trades),
        "exit_rules": exit_rule_stats(trades, intents),
        "by_strategy": parts["strategy_name"], "by_category": parts["category"], "by_conviction": parts["conviction"],
        "by_dte": parts["dte_bucket"], "by_short_delta": parts["delta_bucket"],
        "equity_curve": [{"session": r.session.isoformat(), "equity": round(r.equity, 2), "cash": round(r.cash, 2),
                          "open_value": round(r.open_value, 2), "open_strategies": r.open_strategies,
                          "entered": r.entered, "exits": r.exits, "settled": r.settled} for r in res.sessions],
        "notes": notes,
        "run": {"seconds": round(res.seconds, 1)},
    }
    return out


# -- HTML ---------------------------------------------------------------------------------------------

def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _num(x, fmt="{:,.0f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _table(rows: list[dict], cols: list[tuple[str, str, Callable]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(f(r.get(k))))}</td>" for k, _, f in cols) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def headline_rows(s: dict) -> list[tuple[str, str]]:
    """The headline figures as (label, text) pairs (the CLI's summary table and the HTML's)."""
    return [
        ("sessions (entry sessions)", f"{s['sessions']} ({s['entry_sessions']})"),
        ("equity start -> end", f"INR {s['start_equity']:,.0f} -> {s['end_equity']:,.0f}"),
        ("total return", _pct(s["total_return"])),
        ("average monthly return (target)", f"{_pct(s['average_monthly_return'])} ({s['monthly_target']:.0%}); "
                                            f"{s['months_meeting_target']} of {len(s['monthly_returns'])} months met it"),
        ("CAGR", _pct(s.get("cagr"))), ("annual volatility", _pct(s.get("annual_volatility"))),
        ("Sharpe (daily, annualized)", _num(s.get("sharpe"), "{:.2f}")),
        ("Sortino", _num(s.get("sortino"), "{:.2f}")),
        ("max drawdown", f"{_pct(s['max_drawdown'])} (peak {s.get('max_drawdown_peak')}, valley "
                         f"{s.get('max_drawdown_valley')}, recovered {s.get('max_drawdown_recovery') or 'not yet'}; "
                         f"{s.get('max_drawdown_duration_sessions')} sessions)"),
        ("Calmar", _num(s.get("calmar"), "{:.2f}")),
        ("trades: closed / open at end / unwound", "{closed} / {open} / {unwound}".format(**s["trade_counts"])),
        ("win rate", _pct(s["win_rate"])), ("profit factor", _num(s["profit_factor"], "{:.2f}")),
        ("average win / loss (INR)", f"{_num(s['average_win'])} / {_num(s['average_loss'])}"),
        ("average days in trade", _num(s["average_days_in_trade"], "{:.1f}")),
        ("fees paid / spread paid vs mid (INR)", f"{_num(s['fees_paid'])} / {_num(s['spread_paid'])}"), ("turnover (premium traded / capital)", f"{s['turnover']:.2f}x"),
        ("Brier score (reference, skill)", f"{_num(s['brier']['brier'], '{:.3f}')} ("
                                           f"{_num(s['brier']['reference'], '{:.3f}')}, "
                                           f"{_num(s['brier']['skill'], '{:+.3f}')})"),
        ("predicted EV vs realized P&L (closed, INR)", f"{_num(s['ev_calibration']['predicted_total'])} vs "
                                                      f"{_num(s['ev_calibration']['realized_total'])}"),
    ]


def html_report(s: dict, charts: dict[str, bytes]) -> str:
    """A self-contained HTML page: the headline figures, the charts (embedded PNG), the calibration,
    exit-rule, breakdown and trade tables."""
    c = s["config"]
    imgs = "".join(f"<h3>{html.escape(t)}</h3><img alt='{html.escape(t)}' src='data:image/png;base64,"
                   f"{base64.b64encode(png).decode('ascii')}'/>" for t, png in charts.items())
    head = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in headline_rows(s))
    pct, n0, n2 = _pct, _num, (lambda x: _num(x, "{:.2f}"))
    brk = [("trades", "closed", str), ("open", "open", str), ("win_rate", "win rate", pct), ("pnl", "P&L", n0),
           ("average_pnl", "avg P&L", n0), ("open_pnl", "open P&L", n0), ("profit_factor", "PF", n2),
           ("average_days", "avg days", n2), ("fees", "fees", n0)]
    sections = [
        ("Monthly returns", _table(s["monthly_returns"], [("month", "month", str), ("return", "return", pct),
                                                          ("meets_target", "meets 4%", str)])),
        ("POP calibration", _table(s["calibration"], [("pop_bucket", "POP bucket", str), ("n", "n", str),
                                                      ("predicted", "predicted", pct), ("realized", "realized", pct),
                                                      ("ci_low", "95% CI low", pct), ("ci_high", "95% CI high", pct)])),
        ("EV calibration (quintiles of predicted EV)", _table(s["ev_calibration"]["buckets"], [
            ("ev_bucket", "bucket", str), ("n", "n", str), ("predicted", "predicted EV", n0),
            ("realized", "realized P&L", n0)])),
        ("Exit rules", _table(s["exit_rules"], [("rule", "rule", str), ("fired", "fired", str),
                                                ("trades_closed", "trades closed", str), ("win_rate", "win rate", pct),
                                                ("average_pnl", "avg P&L", n0), ("pnl", "P&L", n0)])),
        *[(f"By {title}", _table(s[key], [(col, title, str), *brk])) for key, col, title in (
            ("by_strategy", "strategy_name", "strategy"), ("by_category", "category", "category"),
            ("by_conviction", "conviction", "conviction"), ("by_dte", "dte_bucket", "DTE at entry"),
            ("by_short_delta", "delta_bucket", "short-leg |delta|"))],
        ("Trades", _table(s["trades"], [(k, k, lambda v: "" if v is None else v) for k in TRADE_FIELDS
                                        if k not in ("allocation_id", "position_id")])),
    ]
    body = "".join(f"<h2>{html.escape(t)}</h2>{tbl}" for t, tbl in sections)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in s["notes"][:300])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Track record {c['start']} .. {c['end']}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#f3f3f3}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>Walk-forward paper track record {c['start']} .. {c['end']}</h1>"
            f"<p>source {c['source']}, capital INR {c['capital']:,.0f}, cadence {c['cadence']}, risk {c['risk']}; "
            f"sessions {s['first_session']} .. {s['last_session']}</p><table>{head}</table>{imgs}{body}"
            f"<h2>Notes</h2><ul>{notes}</ul></body></html>")
