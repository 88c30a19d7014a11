"""One session's strategy creation end to end, as plain functions over polars frames (no Dagster):
technical signals per underlying, candidates built, analysed, scored, ranked and given exit
levels, and the rows of the strategy tables. The Dagster assets and the ``analyze`` command both
call these.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..quant import indicators
from ..types import Failure
from .analytics import analyze
from .build import BuildConfig, Candidate, build_candidates
from .exits import ExitConfig, ExitLevels, exit_levels_all
from .inputs import SessionInputs, SignalInputs
from .payoff_curves import PayoffCurves, payoff_curves
from .scoring import Scored, ScoringConfig, rank, score_candidates, views_from_signals

#: IV / realized-vol ratios that stand in for the IV environment before 20 sessions of IV history exist
IV_RV_LOW, IV_RV_HIGH = 0.9, 1.25


_BARS_INPUT: dict[str, pl.DataType] = {
    "symbol": pl.Utf8, "date": pl.Date, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
    "close": pl.Float64, "volume": pl.Float64,
}


def technical_frame(session: dt.date, symbols: pl.DataFrame, bars: pl.DataFrame, chain: pl.DataFrame,
                    ivs: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``technical_signals`` for the session.

    ``symbols``: symbol, instrument; ``bars``: daily OHLCV up to the session; ``chain``: symbol,
    oi, volume, lot_size; ``ivs``: symbol, atm_iv_30d, h_rv_20, iv_environment (from iv_percentiles).
    Where the IV percentile is not yet defined (under 20 sessions of history) the environment comes
    from the ratio of 30-day IV to 20-session realized vol, and ``notes`` says so.
    """
    if bars.height == 0:  # no requested symbol has bars: every indicator column, all null (degraded, not fatal)
        bars = pl.DataFrame(schema=_BARS_INPUT)
    sig = indicators.analyze(bars, as_of=session)
    base = symbols.select("symbol", (pl.col("instrument") == "INDEX").alias("is_index"))
    sig = base.join(sig, on="symbol", how="left").with_columns(
        pl.when(pl.col("date").is_null() & pl.col("reason").is_null())
        .then(pl.lit(f"no daily bars up to {session}: direction unknown"))
        .otherwise(pl.col("reason")).alias("reason"))
    env = ivs.with_columns(
        pl.when(pl.col("iv_environment").is_not_null()).then(pl.col("iv_environment"))
        .when((pl.col("atm_iv_30d") / pl.col("h_rv_20")) >= IV_RV_HIGH).then(pl.lit("HIGH"))
        .when((pl.col("atm_iv_30d") / pl.col("h_rv_20")) <= IV_RV_LOW).then(pl.lit("LOW"))
        .when(pl.col("atm_iv_30d").is_not_null() & pl.col("h_rv_20").is_not_null()).then(pl.lit("NORMAL"))
        .otherwise(None).alias("env"),
        pl.when(pl.col("iv_environment").is_null() & pl.col("atm_iv_30d").is_not_null()
                & pl.col("h_rv_20").is_not_null())
        .then(pl.lit("IV environment from IV/RV (IV percentile needs 20 sessions of history)"))
        .otherwise(None).alias("env_note"),
    ).select("symbol", pl.col("env").alias("iv_environment"), "env_note")
    sig = indicators.market_states(sig, env.select("symbol", "iv_environment")).join(
        env.select("symbol", "env_note"), on="symbol", how="left")
    profile = indicators.stock_profile(sig.select("symbol", "rv_20", "rv_60", "is_index"),
                                       chain if chain.height else None)
    sig = sig.join(profile.select("symbol", "volatility_bucket",
                                  *(["liquidity_bucket"] if "liquidity_bucket" in profile.columns else [])),
                   on="symbol", how="left")
    if "liquidity_bucket" not in sig.columns:
        sig = sig.with_columns(pl.lit(None, dtype=pl.Utf8).alias("liquidity_bucket"))
    notes = pl.concat_str([pl.col("reason"), pl.col("env_note")], separator="; ", ignore_nulls=True)
    return sig.select(
        pl.lit(session).alias("trade_date"), "symbol", "close", "ema20", "ema50", "ema200", "rsi14", "macd",
        "macd_signal", "macd_hist", "bb_width", "atr14", "atr_pct", "volume_ratio", "consolidation", "breakout",
        "direction", "strength", "iv_environment", "market_state", "volatility_bucket", "liquidity_bucket",
        "rv_20", pl.when(notes == "").then(None).otherwise(notes).alias("notes"),
    )


def signals_for_session(inputs: SignalInputs) -> pl.DataFrame:
    """THE technical-signals operation (the technical_signals asset and ``analyze`` on the fly)."""
    return technical_frame(inputs.session, inputs.universe, inputs.bars, inputs.chain, inputs.ivs)


@dataclass
class RankedCandidate:
    scored: Scored
    rank: int
    exits: ExitLevels
    market_state: str | None = None

    @property
    def candidate(self) -> Candidate:
        return self.scored.candidate


@dataclass
class CreationResult:
    ranked: list[RankedCandidate]
    failures: list[Failure]
    symbols: int
    built: int
    passed: int
    timings: dict[str, float] = field(default_factory=dict)


def create_candidates(iv: pl.DataFrame, signals: pl.DataFrame, session: dt.date, *, risk: str = "moderate",
                      lots: int = 1, top_per_symbol: int = 5, symbols: list[str] | None = None,
                      keep_all: bool = False, scoring: ScoringConfig | None = None,
                      exits: ExitConfig | None = None) -> CreationResult:
    """Build, analyse, score, rank and attach exit levels. ``iv``: :func:`quant.surface.chain_iv`
    output for the session. Keeps the ``top_per_symbol`` best candidates that pass the risk
    filters (every built candidate with ``keep_all``). The front expiry is one whose time exit
    (``exits.time_exit_dte``) falls after the session, so that no candidate is closed by the time
    exit at the next session. A missing input (lot size, spot, ...) or a non-finite margin / POP /
    expected value is a recorded failure naming the symbol, session and field, not a crash."""
    timings: dict[str, float] = {}
    exit_cfg = exits if exits is not None else ExitConfig.load()
    if symbols is not None:
        iv = iv.filter(pl.col("symbol").is_in(symbols))
    t = time.perf_counter()
    cands, build_failures = build_candidates(iv, cfg=BuildConfig(lots=lots, time_exit_dte=exit_cfg.time_exit_dte))
    timings["build"] = time.perf_counter() - t
    t = time.perf_counter()
    analyze(cands)
    cands, unusable = _finite_analytics(cands, session)
    timings["analytics"] = time.perf_counter() - t
    t = time.perf_counter()
    views = views_from_signals(signals)
    scored = score_candidates(cands, views, risk=risk, config=scoring)
    ranked_all = rank(scored)
    timings["scoring"] = time.perf_counter() - t
    t = time.perf_counter()
    kept = [sc for sc in ranked_all if keep_all or (sc.passed and sc.rank <= top_per_symbol)]
    levels = exit_levels_all([sc.candidate for sc in kept], exit_cfg)
    out: list[RankedCandidate] = []
    for sc, lv in zip(kept, levels, strict=True):
        view = views.get(sc.candidate.symbol)
        out.append(RankedCandidate(sc, sc.rank, lv, view.market_state if view else None))
    timings["exit_levels"] = time.perf_counter() - t
    failures = [Failure(f.symbol, f"build:{f.strategy}", f"{f.reason} [session={session}, field={f.field}]"
                        if f.field else f.reason, kind="error") for f in build_failures] + unusable
    served = iv.get_column("symbol").n_unique() if iv.height else 0
    with_any = {rc.candidate.symbol for rc in out}
    for sym in sorted(set(iv.get_column("symbol").unique().to_list()) - with_any) if iv.height else []:
        n_built = sum(1 for c in cands if c.symbol == sym)
        why = "no strategy could be built" if n_built == 0 else \
            f"{n_built} built, none passed the {risk} filters"
        failures.append(Failure(sym, "strategy_candidates", why, kind="error" if n_built == 0 else "filtered"))
    return CreationResult(out, failures, served, len(cands), sum(1 for s in scored if s.passed), timings)


def _first_missing_input(c: Candidate) -> str | None:
    """The first input of the margin / POP models that is missing or not positive, as ``field`` or
    ``leg N field``; None when all are there."""
    def bad(x) -> bool:
        return x is None or not np.isfinite(float(x)) or float(x) <= 0

    for name in ("spot", "lot_size", "forward", "atm_iv", "t_years"):
        if bad(getattr(c, name)):
            return name
    for j, leg in enumerate(c.legs, 1):
        if not leg.instrument.is_option:
            continue
        for name in ("strike", "price", "iv", "forward", "t_years", "df"):
            if bad(getattr(leg, name)):
                return f"leg {j} {name}"
        if leg.delta is None or not np.isfinite(leg.delta):
            return f"leg {j} delta"
    return None


def _finite_analytics(cands: list[Candidate], session: dt.date) -> tuple[list[Candidate], list[Failure]]:
    """Candidates whose margin, POP and expected value are finite; the others as failures naming
    the symbol, session, metric and the missing input (never a null stored or a crashed step)."""
    keep, failures = [], []
    for c in cands:
        a = c.analytics
        metrics = {"margin": a.margin, "pop": a.pop, "expected_value": a.expected_value}
        broken = [k for k, v in metrics.items() if v is None or not np.isfinite(v)]
        if not broken:
            keep.append(c)
            continue
        field_ = _first_missing_input(c)
        cause = f"missing input {field_}" if field_ else "inputs complete (a model defect)"
        failures.append(Failure(c.symbol, f"analytics:{c.name}",
                                f"{', '.join(broken)} not finite: {cause} [session={session}, "
                                f"field={field_ or broken[0]}]", kind="error"))
    return keep, failures


def create_for_session(inputs: SessionInputs, *, risk: str = "moderate", lots: int = 1, top_per_symbol: int = 5,
                       symbols: list[str] | None = None, keep_all: bool = False,
                       scoring: ScoringConfig | None = None) -> CreationResult:
    """THE strategy-creation operation for one session: the strategy_candidates asset (inputs read from
    the store) and ``options-v4 analyze`` (stored or computed inputs) both call this."""
    return create_candidates(inputs.iv, inputs.signals, inputs.session, risk=risk, lots=lots,
                             top_per_symbol=top_per_symbol, symbols=symbols, keep_all=keep_all, scoring=scoring)


def strategy_id(session: dt.date, symbol: str, name: str, risk: str) -> str:
    return f"{session:%Y%m%d}-{symbol}-{name}-{risk}"


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def to_tables(ranked: list[RankedCandidate], session: dt.date, risk: str) -> dict[str, pl.DataFrame]:
    now = dt.datetime.now(dt.UTC)
    strategies, details, params, exits = [], [], [], []
    for rc in ranked:
        c, sc, a = rc.candidate, rc.scored, rc.candidate.analytics
        sid = strategy_id(session, c.symbol, c.name, risk)
        d = c.strategy
        strategies.append({
            "strategy_id": sid, "trade_date": session, "symbol": c.symbol, "strategy_name": d.name,
            "category": d.category.value, "outlook": d.outlook.value, "iv_preference": d.iv_preference.value,
            "risk_tolerance": risk, "market_state": rc.market_state,
            "total_score": round(float(sc.total_score), 4), "conviction": sc.conviction, "rank": rc.rank,
            "unlimited_risk": bool(d.unlimited_risk), "lots": c.lots, "lot_size": c.lot_size, "created_at": now,
        })
        for i, leg in enumerate(c.legs, 1):
            details.append({
                "strategy_id": sid, "leg": i, "trade_date": session, "side": leg.side.value,
                "instrument": leg.instrument.value, "strike": _num(leg.strike), "expiry": leg.expiry,
                "quantity": int(leg.quantity), "price": _num(leg.price), "price_kind": leg.price_kind,
                "iv": _num(leg.iv), "delta": _num(leg.delta), "security_id": leg.security_id,
            })
        g = a.greeks
        params.append({
            "strategy_id": sid, "trade_date": session, "net_premium": _num(a.net_premium),
            "max_profit": _num(a.max_profit), "max_loss": _num(a.max_loss),
            "breakevens": json.dumps([round(float(b), 4) for b in a.breakevens]), "pop": _num(a.pop),
            "pop_forward": _num(a.pop_inputs.forward), "pop_sigma": _num(a.pop_inputs.sigma),
            "pop_t_years": _num(a.pop_inputs.t_years), "expected_value": _num(a.expected_value),
            "reward_risk": _num(a.reward_risk), "delta": _num(g.delta), "gamma": _num(g.gamma),
            "theta": _num(g.theta), "vega": _num(g.vega), "margin": _num(a.margin),
            "return_on_margin": _num(a.return_on_margin),
            "score_components": json.dumps({k: round(float(v), 4) for k, v in sc.components.items()}),
            "details": json.dumps({"payoff_model": a.payoff_model, "fallback": c.fallback, "notes": c.notes,
                                   "rejections": list(sc.rejections), "scoring": sc.details, "expiry": c.expiry.isoformat(),
                                   "back_expiry": c.back_expiry.isoformat() if c.back_expiry else None}),
        })
        exits.append({"strategy_id": sid, "trade_date": session, **rc.exits.to_row()})
    schemas = {
        "strategies": {"strategy_id": pl.Utf8, "trade_date": pl.Date, "symbol": pl.Utf8, "strategy_name": pl.Utf8,
                       "category": pl.Utf8, "outlook": pl.Utf8, "iv_preference": pl.Utf8, "risk_tolerance": pl.Utf8,
                       "market_state": pl.Utf8, "total_score": pl.Float64, "conviction": pl.Utf8, "rank": pl.Int64,
                       "unlimited_risk": pl.Boolean, "lots": pl.Int64, "lot_size": pl.Int64,
                       "created_at": pl.Datetime("us", "UTC")},
    }
    frames = {
        "strategies": pl.DataFrame(strategies, schema=schemas["strategies"]),
        "strategy_details": pl.DataFrame(details, infer_schema_length=None) if details else
        pl.DataFrame(schema={"strategy_id": pl.Utf8, "trade_date": pl.Date}),
        "strategy_parameters": pl.DataFrame(params, infer_schema_length=None) if params else
        pl.DataFrame(schema={"strategy_id": pl.Utf8, "trade_date": pl.Date, "max_loss": pl.Float64}),
        "strategy_exit_levels": pl.DataFrame(exits, infer_schema_length=None) if exits else
        pl.DataFrame(schema={"strategy_id": pl.Utf8, "trade_date": pl.Date}),
    }
    return frames


def legs_not_in_chain(details: pl.DataFrame, chain: pl.DataFrame, strategies: pl.DataFrame) -> list[str]:
    """Option legs (strategy_id:leg) whose contract is absent from the session's chain."""
    if details.height == 0:
        return []
    legs = details.filter(pl.col("instrument").is_in(["CE", "PE"])).join(
        strategies.select("strategy_id", "symbol"), on="strategy_id")
    missing = legs.join(chain.rename({"option_type": "instrument"}), on=["symbol", "expiry", "strike", "instrument"],
                        how="anti")
    return [f"{r['strategy_id']}:{r['leg']}" for r in missing.iter_rows(named=True)]


def best_for_charts(ranked: list[RankedCandidate], count: int) -> list[RankedCandidate]:
    """The ``count`` best-scoring first-ranked candidates of the session (the ones it charts)."""
    if count <= 0:
        return []
    return sorted((rc for rc in ranked if rc.rank == 1), key=lambda rc: -rc.scored.total_score)[:count]


def chart_curves(ranked: list[RankedCandidate], count: int, points: int = 600) -> list[PayoffCurves]:
    """Payoff curves (``points`` per curve) of the :func:`best_for_charts` candidates, with their
    score and conviction: the data :mod:`options_v4_dagster.reports.payoff_chart` draws."""
    return [payoff_curves(rc.candidate, points, score=rc.scored.total_score, conviction=rc.scored.conviction)
            for rc in best_for_charts(ranked, count)]
