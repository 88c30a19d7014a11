"""What the replay reads for one session -- and nothing dated after it.

:class:`SessionView` wraps the market-data provider for one session ``t``: every request for a date
after ``t`` (a chain of a later session, bars ending later) raises :class:`LookAhead` instead of
answering. The replay builds one view per session and reads only through it.

Per session the replay needs:

* an **entry session**: the session's inputs computed the way the assets compute them
  (:func:`~..strategies.inputs.computed_inputs`: universe, chains through the sanity screen, IVs and
  greeks, bars, realized vol, technical signals), the candidates of
  :func:`~..strategies.pipeline.create_for_session` as the rows of the strategy tables, the
  ``fno_universe`` rows and the ``market_conditions`` row the allocation rules are resolved from
  (:func:`market_conditions_row`: the ``market_conditions`` asset's row, from the same
  :mod:`..quant.regime` functions);
* **every session**: the chains of the underlyings the portfolio holds (:func:`held_chains`), which
  value the positions, fill the exits and give the closes the expiries settle against.

No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from .. import universe as fno
from ..errors import DataError, DataUnavailable, OptionsV4Error, ProviderError
from ..market.sanity import SanityConfig, screen_chain
from ..quant import regime
from ..strategies import pipeline
from ..strategies.inputs import BARS_FETCH_DAYS, HORIZON_DAYS, computed_inputs
from ..strategies.invariants import candidate_violations
from ..types import Failure

__all__ = ["CANDIDATE_TABLES", "EntryInputs", "LookAhead", "SessionView", "entry_inputs", "held_chains",
           "market_conditions_row", "stored_entry_inputs"]

#: the strategy tables one session's candidates fill (what ``strategy_candidates`` writes)
CANDIDATE_TABLES = ("strategies", "strategy_details", "strategy_parameters", "strategy_exit_levels")


class LookAhead(OptionsV4Error):
    """The replay of a session asked for market data dated after it."""


class SessionView:
    """The provider as seen on session ``until``: requests for later dates raise :class:`LookAhead`.

    ``requested`` records the latest date asked for (the look-ahead test reads it)."""

    def __init__(self, provider, until: dt.date) -> None:
        self._provider = provider
        self.until = until
        self.name = provider.name
        self.requested: dt.date | None = None

    def _check(self, day: dt.date, what: str) -> None:
        if day > self.until:
            raise LookAhead(f"the replay of {self.until} asked for {what} of {day} (after the session)")
        self.requested = day if self.requested is None else max(self.requested, day)

    def option_chains(self, symbols: Iterable[str], session: dt.date, *, horizon_days: int = HORIZON_DAYS):
        self._check(session, "option chains")
        return self._provider.option_chains(list(symbols), session, horizon_days=horizon_days)

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        self._check(end, f"{symbol} daily bars")
        return self._provider.daily_bars(symbol, start, end)

    def symbols_for(self, session: dt.date, universe_symbols: Iterable[str]) -> list[str]:
        self._check(session, "the symbols served")
        return self._provider.symbols_for(session, universe_symbols)

    def __getattr__(self, name: str):
        # the optional per-session methods of some providers (nse_files): checked the same way
        if name in ("available_symbols", "lot_sizes"):
            inner = getattr(self._provider, name)

            def call(session: dt.date):
                self._check(session, name.replace("_", " "))
                return inner(session)
            return call
        raise AttributeError(name)


@dataclass
class EntryInputs:
    """One entry session's rows: ``tables`` the four strategy tables, ``universe`` fno_universe rows,
    ``chain`` the screened option chain (option_chain_data columns) of every symbol served,
    ``conditions`` the market_conditions row; ``dropped`` candidates that broke an invariant."""

    session: dt.date
    tables: dict[str, pl.DataFrame]
    universe: pl.DataFrame
    chain: pl.DataFrame
    conditions: pl.DataFrame
    failures: list[Failure] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    origin: str = "computed"  # or "stored": the candidates a warehouse holds for the session


def entry_inputs(view: SessionView, session: dt.date, *, risk: str = "moderate", top_per_symbol: int = 5,
                 symbols: Sequence[str] | None = None, exclude: Iterable[str] = (),
                 nifty_chain: pl.DataFrame | None = None) -> EntryInputs:
    """The session's candidates (and what the allocation reads with them), computed from ``view`` for
    ``symbols`` (default: every underlying the source serves) less ``exclude`` (the replay's held
    underlyings: it opens one position per underlying). ``nifty_chain``: NIFTY's chain when NIFTY is
    excluded (the market conditions' put-call ratio; fetched when neither has it).

    Candidates that break an invariant of ``strategies.invariants`` (the asset would fail the whole
    session on them) are dropped and named in ``dropped``: one symbol's bad figures do not stop the
    replay."""
    t0 = time.perf_counter()
    available = getattr(view, "available_symbols", None)
    served = list(available(session)) if available else view.symbols_for(session, fno.symbols())
    lots_fn = getattr(view, "lot_sizes", None)
    universe = fno.session_universe(served, session, view.name, dict(lots_fn(session)) if lots_fn else {})
    skip = set(exclude)
    wanted = [s for s in (symbols if symbols is not None else served) if s not in skip]
    if not wanted:
        raise DataUnavailable(f"no underlying to build candidates for on {session}: every one is held",
                              session=session, field="symbols", source=view.name)
    inputs, _ = computed_inputs(view, session, wanted)
    t1 = time.perf_counter()
    result = pipeline.create_for_session(inputs, risk=risk, top_per_symbol=top_per_symbol)
    tables = pipeline.to_tables(result.ranked, session, risk)
    broken = candidate_violations(tables["strategies"], tables["strategy_parameters"])
    dropped = []
    if broken.height:
        bad = broken.get_column("strategy_id").unique().to_list()
        tables = {k: v.filter(~pl.col("strategy_id").is_in(bad)) for k, v in tables.items()}
        dropped = [f"{r['strategy_id']}: {r['problem']}" for r in broken.iter_rows(named=True)]
    t2 = time.perf_counter()
    chain = inputs.iv  # the screened chain with its IVs: the chain columns are kept as they are
    nifty = chain.filter(pl.col("symbol") == "NIFTY") if chain.height else chain
    if nifty.height == 0 and nifty_chain is not None:
        nifty = nifty_chain.filter(pl.col("symbol") == "NIFTY") if nifty_chain.height else nifty_chain
    if nifty.height == 0 and "NIFTY" in served:
        nifty, _ = held_chains(view, session, ["NIFTY"])
    conditions = market_conditions_row(view, session, nifty)
    return EntryInputs(session, tables, universe, chain, conditions, list(inputs.failures) + list(result.failures),
                       dropped, {"inputs": t1 - t0, "candidates": t2 - t1, "conditions": time.perf_counter() - t2})


def market_conditions_row(view: SessionView, session: dt.date, nifty_chain: pl.DataFrame) -> pl.DataFrame:
    """The ``market_conditions`` row of the session (as the asset builds it): NIFTY trend from its bars
    up to the session, the latest India VIX on or before it, NIFTY's OI put-call ratio."""
    notes = []
    trend = None
    try:
        nifty = view.daily_bars("NIFTY", session - dt.timedelta(days=BARS_FETCH_DAYS), session)
    except (DataError, ProviderError) as exc:
        nifty = pl.DataFrame()
        notes.append(f"no NIFTY bars: {exc}")
    if nifty.height >= 50:
        trend = regime.nifty_trend(nifty.get_column("close").to_numpy()[-260:])
    else:
        notes.append(f"only {nifty.height} NIFTY bars up to {session}: trend needs 50")
    vix = None
    try:
        v = view.daily_bars(fno.VIX_SYMBOL, session - dt.timedelta(days=14), session)
        if v.height:
            vix = float(v.sort("date").get_column("close")[-1])
    except (DataError, ProviderError) as exc:
        notes.append(f"no India VIX: {exc}")
    pcr_oi, pcr_vol = regime.put_call_ratio(nifty_chain) if nifty_chain.height else (None, None)
    band = regime.vix_band(vix)
    row = {
        "trade_date": session, "nifty_close": trend.close if trend else None,
        "nifty_ema20": trend.ema20 if trend else None, "nifty_ema50": trend.ema50 if trend else None,
        "nifty_return_20d": trend.return_20d if trend else None, "nifty_trend": trend.direction if trend else None,
        "trend_strength": trend.strength if trend else None, "india_vix": vix, "vix_band": band,
        "pcr_oi": pcr_oi, "pcr_volume": pcr_vol, "pcr_sentiment": regime.pcr_sentiment(pcr_oi),
        "market_state": regime.market_state(trend.direction if trend else None, band),
        "notes": "; ".join(notes) or None, "source": view.name,
    }
    return pl.DataFrame([row], schema_overrides={k: pl.Float64 for k in (
        "nifty_close", "nifty_ema20", "nifty_ema50", "nifty_return_20d", "trend_strength", "india_vix", "pcr_oi",
        "pcr_volume")} | {k: pl.Utf8 for k in ("nifty_trend", "vix_band", "pcr_sentiment", "market_state", "notes")})


def held_chains(view: SessionView, session: dt.date, symbols: Sequence[str],
                sanity: SanityConfig | None = None) -> tuple[pl.DataFrame, list[Failure]]:
    """The screened chains of ``symbols`` on the session (what values and exits the held positions); a
    symbol whose chain fails is left out and recorded."""
    if not symbols:
        return pl.DataFrame(), []
    fetched, failures = view.option_chains(sorted(set(symbols)), session)
    screen = screen_chain(fetched, sanity or SanityConfig(), session=session)
    failures = list(failures) + screen.failures
    errors = sorted({f.symbol for f in failures if f.kind == "error"})
    return screen.clean.filter(~pl.col("symbol").is_in(errors)), failures



def stored_entry_inputs(wh, session: dt.date, *, source: str, risk: str = "moderate",
                        exclude: Iterable[str] = (), symbols: Sequence[str] | None = None) -> EntryInputs | None:
    """The session's candidates as a warehouse ``wh`` stores them (the ``strategy_candidates`` asset's
    rows of tolerance ``risk``, built from ``source``), with the session's stored universe, chain and
    market conditions; None when ``wh`` does not hold them (then the replay computes them). Only the
    session's own partitions are read. ``exclude``/``symbols`` narrow the candidates as in
    :func:`entry_inputs`."""
    from ..store.provenance import sources_of

    t0 = time.perf_counter()
    if sources_of(wh, session, ["strategy_candidates"]).get("strategy_candidates") != source:
        return None
    st = wh.read_partition("strategies", session).filter(pl.col("risk_tolerance") == risk)
    conditions = wh.read_partition("market_conditions", session)
    chain = wh.read_partition("option_chain_data", session)
    if st.height == 0 or conditions.height == 0 or chain.height == 0:
        return None
    st = st.filter(~pl.col("symbol").is_in(list(exclude)))
    if symbols is not None:
        st = st.filter(pl.col("symbol").is_in(list(symbols)))
    ids = st.get_column("strategy_id").to_list()
    tables = {"strategies": st, **{k: wh.read_partition(k, session).filter(pl.col("strategy_id").is_in(ids))
                                   for k in CANDIDATE_TABLES[1:]}}
    universe = wh.read_partition("fno_universe", session)
    return EntryInputs(session, tables, universe, chain, conditions, seconds={"stored": time.perf_counter() - t0},
                       origin="stored")
