"""The ``track_record`` asset: a walk-forward paper replay of a configured range of sessions (run config),
with the statistics, calibration and charts in its metadata and an HTML report file. Thin: the replay,
its warehouse and every figure are ``options_v4_dagster.track_record``'s."""

import datetime as dt
from pathlib import Path
from typing import Literal

import dagster as dg

from options_v4_dagster.defs.common import frame_markdown
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.market import get_provider
from options_v4_dagster.track_record.charts import all_charts, markdown
from options_v4_dagster.track_record.replay import ReplayConfig
from options_v4_dagster.track_record.report import default_db_path, default_report_path, html_report, run
from options_v4_dagster.types import RiskTolerance

GROUP = "track_record"


class TrackRecordConfig(dg.Config):
    start: str = "2025-01-01"  # first day YYYY-MM-DD
    end: str = "2025-06-30"  # last day YYYY-MM-DD
    source: Literal["simulated", "nse_files"] = "simulated"
    nse_data_dir: str = ""  # for nse_files ("" = OPTIONS_V4_NSE_DATA_DIR)
    capital: float = 1_500_000.0  # INR
    cadence: Literal["daily", "weekly"] = "weekly"  # entry sessions; exits are checked every session
    risk_tolerance: RiskTolerance = "moderate"
    symbols: list[str] | None = None  # only these underlyings (None: every one the source serves)
    output_dir: str = ""  # report and replay warehouse ("" = .data/track_record)
    use_stored_candidates: bool = False  # entry sessions use the warehouse's stored candidates where it has them


def _table(rows: list[dict], cols: list[str]) -> str:
    import polars as pl

    return frame_markdown(pl.DataFrame(rows).select(cols) if rows else pl.DataFrame(), 40, "{:,.4f}")


@dg.asset(
    group_name=GROUP,
    kinds={"python"},
    description="Walk-forward paper track record over the configured range (run config: start, end, source, "
    "capital, cadence, risk tolerance): each entry session's candidates and allocation of that session only, "
    "paper execution at its quotes with fees, every later session's monitoring cycle and exit rules, settlement "
    "at expiry; capital rolled (new allocations get the capital the open positions leave free). Metadata: "
    "returns against the 4% monthly target, CAGR, Sharpe, Sortino, drawdown, win rate, profit factor, POP "
    "calibration (reliability with Wilson intervals, Brier score), EV against realized P&L, exit rules, "
    "breakdowns, and PNG charts; an HTML report file. The replay runs in a SQLite warehouse of its own.",
)
def track_record(context: dg.AssetExecutionContext, config: TrackRecordConfig,
                 warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = ReplayConfig(dt.date.fromisoformat(config.start), dt.date.fromisoformat(config.end), source=config.source,
                       capital=config.capital, cadence=config.cadence, risk=config.risk_tolerance,
                       symbols=tuple(s.upper() for s in config.symbols) if config.symbols else None)
    provider = get_provider(cfg.source, **({"data_dir": config.nse_data_dir} if config.nse_data_dir else {}))
    folder = Path(config.output_dir) if config.output_dir else None
    tr = run(cfg, provider, db_path=default_db_path(cfg, folder),
             stored=warehouse.get() if config.use_stored_candidates else None,
             progress=lambda r: context.log.info(f"{r.session} {'entry' if r.entry else 'exits'}: equity "
                                                 f"{r.equity:,.0f}, {r.open_strategies} open, +{r.entered}, "
                                                 f"{r.exits} exits"))
    s = tr.summary
    if not tr.result.sessions:
        raise dg.Failure(description=f"{cfg.source} holds no session from {cfg.start} to {cfg.end}")
    charts = all_charts(tr.result.equity_frame(), cfg.capital, s)
    report = default_report_path(cfg, folder)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(html_report(s, charts))
    figures = {k: s[k] for k in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate",
                                 "profit_factor", "average_win", "average_loss", "average_days_in_trade",
                                 "fees_paid", "turnover", "average_monthly_return") if s.get(k) is not None}
    return dg.MaterializeResult(metadata={
        **{k: dg.MetadataValue.float(float(v)) for k, v in figures.items()},
        "sessions": s["sessions"], "entry_sessions": s["entry_sessions"],
        "stored_candidate_sessions": s["stored_candidate_sessions"],
        "trades": dg.MetadataValue.json(s["trade_counts"]),
        "max_drawdown_duration_sessions": s["max_drawdown_duration_sessions"],
        "months_meeting_target": s["months_meeting_target"],
        "brier": dg.MetadataValue.json(s["brier"]),
        "monthly_returns": dg.MetadataValue.md(_table(s["monthly_returns"], ["month", "return", "meets_target"])),
        "calibration": dg.MetadataValue.md(_table(s["calibration"], ["pop_bucket", "n", "predicted", "realized",
                                                                     "ci_low", "ci_high"])),
        "ev_calibration": dg.MetadataValue.md(_table(s["ev_calibration"]["buckets"],
                                                     ["ev_bucket", "n", "predicted", "realized"])),
        "exit_rules": dg.MetadataValue.md(_table(s["exit_rules"], ["rule", "fired", "trades_closed", "win_rate",
                                                                   "average_pnl", "pnl"])),
        "by_strategy": dg.MetadataValue.md(_table(s["by_strategy"], ["strategy_name", "trades", "open", "win_rate",
                                                                     "pnl", "profit_factor", "average_days"])),
        "charts": dg.MetadataValue.md(markdown(charts)),
        "report": dg.MetadataValue.path(str(report)),
        "replay_warehouse": dg.MetadataValue.path(str(tr.db_path)),
        "seconds": s["run"]["seconds"],
    })
