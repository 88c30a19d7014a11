"""What strategy creation for one session consumes, and how to compute it from a market-data provider.

Two dataclasses:

- :class:`SignalInputs` — what ``technical_signals`` is computed from (universe, daily bars, the chain's
  liquidity columns, the IV summary with realized vol and the IV environment);
- :class:`SessionInputs` — what ``strategy_candidates`` is computed from (the chain with its quotes and
  the implied vols and greeks in :func:`quant.surface.chain_iv` form, and the technical signals).

For a stored session ``store.strategies_queries`` reads them from the warehouse (what the upstream
assets wrote); :func:`computed_inputs` computes them on the fly from a provider through the same
functions the assets call (sanity screen, ``chain_iv`` with the same :class:`IVConfig`, ``iv_summary``,
``realized_vols``, :func:`strategies.pipeline.signals_for_session`). Either way
:func:`strategies.pipeline.create_for_session` turns them into candidates. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from .. import calendar
from .. import universe as fno
from ..errors import CircuitOpen, DataError, DataUnavailable, ProviderError
from ..market.sanity import SanityConfig, screen_chain
from ..quant import surface
from ..types import Failure

#: calendar days of daily bars fetched per underlying (the underlying_bars asset and the on-the-fly path)
BARS_FETCH_DAYS = 365
#: calendar days of stored bars the technical signals read (EMA200 needs 200 sessions)
SIGNAL_BARS_DAYS = 400
#: option-chain horizon in calendar days (MarketDataResource.horizon_days' default)
HORIZON_DAYS = 90


@dataclass
class SignalInputs:
    """``universe``: symbol, instrument; ``bars``: symbol, date, OHLCV up to the session;
    ``chain``: symbol, oi, volume, lot_size; ``ivs``: symbol, atm_iv_30d, h_rv_20, iv_environment."""

    session: dt.date
    universe: pl.DataFrame
    bars: pl.DataFrame
    chain: pl.DataFrame
    ivs: pl.DataFrame


@dataclass
class SessionInputs:
    """``iv``: :func:`quant.surface.chain_iv` output for the session (chain quotes + IVs + greeks);
    ``signals``: rows of technical_signals; ``origin``: "stored" or "computed"; ``source``: the
    market-data source the inputs came from."""

    session: dt.date
    iv: pl.DataFrame
    signals: pl.DataFrame
    origin: str
    source: str
    failures: list[Failure] = field(default_factory=list)


def ivs_frame(summary: pl.DataFrame, rv: pl.DataFrame, environment: pl.DataFrame | None = None) -> pl.DataFrame:
    """The IV inputs of the technical signals: 30-day ATM IV, 20-session realized vol and the IV
    environment from iv_percentiles (null where unknown: the signals then use IV/RV)."""
    out = summary.select("symbol", "atm_iv_30d").join(rv.select("symbol", pl.col("rv_20").alias("h_rv_20")),
                                                       on="symbol", how="left")
    env = environment if environment is not None else pl.DataFrame(schema={"symbol": pl.Utf8,
                                                                           "iv_environment": pl.Utf8})
    return out.join(env.select("symbol", "iv_environment"), on="symbol", how="left")


def bars_for_signals(bars: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    """The bars the technical signals read: the SIGNAL_BARS_DAYS up to the session."""
    if bars.height == 0:
        return bars
    return bars.filter(pl.col("date").is_between(session - dt.timedelta(days=SIGNAL_BARS_DAYS), session))


def bars_for_rv(bars: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    """The bars iv_history's realized vols are computed from: RV_HISTORY_SESSIONS sessions up to the session."""
    if bars.height == 0:
        return bars
    first = calendar.sessions_back(session, surface.RV_HISTORY_SESSIONS)[0]
    return bars.filter(pl.col("date").is_between(first, session))


def computed_inputs(provider, session: dt.date, symbols: Sequence[str] | None = None, *,
                    iv_config: surface.IVConfig | None = None, sanity: SanityConfig | None = None,
                    horizon_days: int = HORIZON_DAYS) -> tuple[SessionInputs, SignalInputs]:
    """The session's inputs computed from ``provider`` (no warehouse), as the assets compute them:
    universe → option chains screened by the sanity screen → ``chain_iv`` → bars → realized vol and
    IV summary → technical signals. ``symbols`` narrows the universe. There is no IV history here, so
    the IV environment comes from IV/RV (as for a stored session with under 20 sessions of history).
    A provider failure for one symbol is recorded in ``SessionInputs.failures``; no chain at all is a
    :class:`DataUnavailable` naming the symbols, session and source."""
    from .pipeline import signals_for_session

    cfg = iv_config or surface.IVConfig()
    available = getattr(provider, "available_symbols", None)
    lots_fn = getattr(provider, "lot_sizes", None)
    served = list(available(session)) if available else provider.symbols_for(session, fno.symbols())
    lots = dict(lots_fn(session)) if lots_fn else {}
    universe = fno.session_universe(served, session, provider.name, lots)
    if symbols is not None:
        universe = universe.filter(pl.col("symbol").is_in(list(symbols)))
    wanted = universe.get_column("symbol").to_list()
    fetched, fetch_failures = provider.option_chains(wanted, session, horizon_days=horizon_days)
    screen = screen_chain(fetched, sanity or SanityConfig(), session=session)
    failures = list(fetch_failures) + screen.failures
    errors = sorted({f.symbol for f in failures if f.kind == "error"})
    chain = screen.clean.filter(~pl.col("symbol").is_in(errors))
    if chain.height == 0:
        raise DataUnavailable(f"no option chain for {', '.join(wanted[:5]) or 'any symbol'} on {session} from "
                              f"{provider.name}: " + "; ".join(f"{f.symbol}: {f.reason}" for f in failures[:5]),
                              session=session, field="option_chain", source=provider.name)
    iv = surface.chain_iv(chain, cfg)
    bars_frames = []
    for sym in wanted:
        try:
            bars_frames.append(provider.daily_bars(sym, session - dt.timedelta(days=BARS_FETCH_DAYS), session))
        except CircuitOpen:
            raise
        except (DataError, ProviderError) as exc:  # recorded: the direction is then unknown with a reason
            failures.append(Failure.from_exception(sym, "daily_bars", exc))
    bars = pl.concat([b for b in bars_frames if b.height]) if any(b.height for b in bars_frames) else pl.DataFrame()
    rv = surface.realized_vols(bars_for_rv(bars, session).select("symbol", "date", "close")) if bars.height else \
        surface.realized_vols(pl.DataFrame())
    summary = surface.iv_summary(iv)
    signal_inputs = SignalInputs(session, universe.select("symbol", "instrument"),
                                 bars_for_signals(bars, session) if bars.height else bars,
                                 chain.select("symbol", "oi", "volume", "lot_size"), ivs_frame(summary, rv))
    signals = signals_for_session(signal_inputs)
    return SessionInputs(session, iv, signals, "computed", provider.name, failures), signal_inputs
