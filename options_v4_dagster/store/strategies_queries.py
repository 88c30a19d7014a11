"""Reads of what strategy creation consumes for a stored session (the upstream assets' rows).

``signal_inputs`` feeds the technical_signals asset, ``session_inputs`` the strategy_candidates
asset and ``options-v4 analyze`` for a stored session; ``stored_source`` says whether a session is
stored completely enough for that and from which market-data source.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import sqlalchemy as sa

from ..errors import DataError
from ..quant import surface
from ..strategies.inputs import SIGNAL_BARS_DAYS, SessionInputs, SignalInputs, bars_for_signals, ivs_frame
from .protocol import WarehouseLike
from .provenance import sources_of
from .schema import strategies, underlying_bars

#: the assets whose rows make a stored session's strategy inputs (provenance names)
INPUT_ASSETS = ("universe", "option_chains", "option_greeks", "technical_signals")
_INPUT_TABLES = {"universe": "fno_universe", "option_chains": "option_chain_data", "option_greeks": "option_greeks",
                 "technical_signals": "technical_signals"}


def stored_source(wh: WarehouseLike, session: dt.date) -> str | None:
    """The market-data source of a session whose universe, chains, option greeks and technical signals
    are all stored and recorded from that one source; None when any is missing or they disagree."""
    by_asset = sources_of(wh, session, INPUT_ASSETS)
    if set(by_asset) != set(INPUT_ASSETS) or len(set(by_asset.values())) != 1:
        return None
    if any(wh.count(_INPUT_TABLES[a], session) == 0 for a in INPUT_ASSETS):
        return None
    return next(iter(by_asset.values()))


def signal_inputs(wh: WarehouseLike, session: dt.date) -> SignalInputs:
    """The stored inputs of the session's technical signals (universe, bars up to the session, chain
    liquidity, IV summary with realized vol and the IV environment)."""
    universe = wh.read_partition("fno_universe", session, ["symbol", "instrument"])
    t = underlying_bars
    bars = wh.read(sa.select(t.c.symbol, t.c.date, t.c.open, t.c.high, t.c.low, t.c.close, t.c.volume)
                   .where(t.c.date.between(session - dt.timedelta(days=SIGNAL_BARS_DAYS), session)))
    if bars.height:
        bars = bars_for_signals(bars.filter(pl.col("symbol").is_in(universe.get_column("symbol").implode())), session)
    chain = wh.read_partition("option_chain_data", session, ["symbol", "oi", "volume", "lot_size"])
    summary = wh.read_partition("historical_iv_summary", session, ["symbol", "atm_iv_30d", "rv_20"])
    env = wh.read_partition("iv_percentiles", session, ["symbol", "iv_environment"])
    if env.height == 0:
        env = pl.DataFrame(schema={"symbol": pl.Utf8, "iv_environment": pl.Utf8})
    if summary.height == 0:
        summary = pl.DataFrame(schema={"symbol": pl.Utf8, "atm_iv_30d": pl.Float64, "rv_20": pl.Float64})
    return SignalInputs(session, universe, bars, chain, ivs_frame(summary, summary, env))


def session_inputs(wh: WarehouseLike, session: dt.date, source: str | None = None) -> SessionInputs:
    """The stored inputs of the session's strategy creation: option_greeks as stored (IVs and greeks
    at the IVSettings they were computed with) joined to the stored chain's quote columns, in
    :func:`quant.surface.chain_iv` form, and the stored technical signals. Raises :class:`DataError`
    when option_greeks rows lack the discount factor (stored before it was kept: re-materialize
    option_greeks) instead of assuming a rate."""
    chain = wh.read_partition("option_chain_data", session)
    greeks = wh.read_partition("option_greeks", session)
    if chain.height and greeks.height:
        lacking = greeks.filter(pl.col("t_years").is_not_null() & pl.col("df").is_null())
        if lacking.height:
            raise DataError(f"{lacking.height} option_greeks rows have no discount factor (stored by an earlier "
                            "release): re-materialize option_greeks for the session",
                            symbol=lacking.get_column("symbol")[0], session=session, field="df")
        iv = surface.from_stored(greeks, chain)
    else:
        iv = chain.clear() if chain.height == 0 else chain.head(0)
    signals = wh.read_partition("technical_signals", session)
    return SessionInputs(session, iv, signals, "stored", source or "unknown")


def latest_candidates_session(wh: WarehouseLike) -> dt.date | None:
    """The newest session with stored strategy candidates, or None when none is stored."""
    r = wh.read(sa.select(sa.func.max(strategies.c.trade_date).label("d")))
    v = r.item() if r.height else None
    return dt.date.fromisoformat(str(v)[:10]) if v is not None else None
