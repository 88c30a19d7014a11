"""Reads and writes of trade monitoring (:mod:`..trading.monitor`): the valuation inputs of the open
strategies, the session's quotes and the underlyings' closes, exit intents (reserved once per key),
the per-strategy monitor state, the ``strategy_monitoring`` snapshots, settlement records and the
hash-chained audit log.

**Strategy key.** A monitored position is ``strategy_id@<first 8 characters of the allocation id>``
(:func:`strategy_key`): the candidate's id alone repeats when two allocations of a session hold the
same candidate. It is the ``strategy_id`` of the valuation frames, so intent keys read
``20250717-NIFTY-bull_call_spread-moderate@3fa2b1c9:stop_loss:stop``.

**Valuation inputs** (:func:`monitor_inputs`): strategies in state OPEN or PARTIALLY_EXITED, and
those left FAILED for a human that hold (or held) filled legs, with their legs from ``positions``. A leg already closed (quantity 0) is not valued; its realized P&L and
fees are carried on the strategy's first open leg so the strategy's P&L stays the total the money
rules compare. ``strategy_parameters`` and ``strategy_exit_levels`` hold money for the candidate's
lots: max loss / profit and every INR level (targets, stop, trailing, scale-out P&L) are scaled by
the entered shares over the candidate's shares (first leg). ``capital`` is the allocation's
``capital_used``; ``entered_at`` the strategy's ``opened_at`` (a FAILED one's ``started_at``), or the
allocation session's close when that is later than ``as_of`` (a past session replayed after a wall-clock entry).

The audit log is :mod:`.audit`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from ..calendar import session_close
from ..trading.broker import Fill
from ..trading.orders import OrderStatus, OrderType, Side, exit_correlation_id
from ..trading.quotes import ChainQuoteBook
from . import archive
from .audit import audit_rows
from .instruments import instrument_specs
from .schema import (
    exit_intents,
    monitor_state,
    option_chain_data,
    order_events,
    orders,
    portfolio_allocation,
    portfolio_allocation_summary,
    positions,
    strategy_details,
    strategy_execution_status,
    strategy_exit_levels,
    strategy_monitoring,
    strategy_parameters,
    trades,
    underlying_bars,
)
from .trading import TradingStore, insert_ignore, upsert
from .warehouse import Warehouse

__all__ = ["MONITORED_STATES", "MonitorInputs", "SessionQuotes", "allocation_capital",
           "claim_intent", "closed_today_pnl", "daily_loss_breach", "get_intent", "intents",
           "last_trade_at", "monitor_inputs", "open_leg_quantities",
           "read_monitor_state", "record_settlement", "reserve_intent", "session_quotes", "strategy_key",
           "underlying_closes", "write_cycle"]

MONITORED_STATES = ("OPEN", "PARTIALLY_EXITED")
#: a strategy FAILED at entry with filled legs left for a human: valued and alerted, never exited
HUMAN_STATES = ("FAILED",)
_MONEY_LEVELS = ("profit_target", "stop_loss", "trailing_activation", "trailing_distance")


def strategy_key(strategy_id: str, allocation_id: str) -> str:
    """The monitored position's key (module docstring)."""
    return f"{strategy_id}@{allocation_id[:8]}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- valuation inputs -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MonitorInputs:
    legs: pl.DataFrame  # valuation.OPEN_LEGS_SCHEMA columns (strategy_id = strategy key) + broker, entry_side
    facts: pl.DataFrame  # valuation.STRATEGY_FACTS_SCHEMA (strategy_id = strategy key)
    levels: pl.DataFrame  # exit_rules.LEVELS_SCHEMA (strategy_id = strategy key), money scaled to the position
    strategies: pl.DataFrame  # strategy_key, strategy_id, allocation_id, position_id, position_no, symbol,
    #                           strategy_name, state, broker, open_legs


def monitor_inputs(wh: Warehouse, as_of: dt.datetime, *, brokers: Sequence[str] | None = None,
                   keys: Sequence[str] | None = None) -> MonitorInputs:
    """The open strategies (states OPEN / PARTIALLY_EXITED, and FAILED with filled legs; of ``brokers``
    / strategy ``keys`` when given) as valuation inputs (module docstring)."""
    e, p, o = strategy_execution_status, positions, orders
    q = sa.select(e.c.allocation_id, e.c.position_id, e.c.position_no, e.c.strategy_id, e.c.symbol, e.c.strategy_name,
                  e.c.state, e.c.broker, e.c.opened_at, e.c.started_at).where(
        e.c.state.in_(MONITORED_STATES + HUMAN_STATES))
    if brokers is not None:
        q = q.where(e.c.broker.in_(list(brokers)))
    st = wh.read(q.order_by(e.c.allocation_id, e.c.position_no))
    if st.height == 0:
        return _empty_inputs()
    st = st.with_columns(pl.concat_str([pl.col("strategy_id"), pl.lit("@"), pl.col("allocation_id").str.slice(0, 8)])
                         .alias("strategy_key"))
    if keys is not None:
        st = st.filter(pl.col("strategy_key").is_in(list(keys)))
    if st.height == 0:
        return _empty_inputs()
    aids = st.get_column("allocation_id").unique().to_list()
    lot = (sa.select(sa.func.max(o.c.lot_size)).where(o.c.allocation_id == p.c.allocation_id,
                                                      o.c.position_id == p.c.position_id, o.c.leg == p.c.leg)
           .scalar_subquery())
    legs = wh.read(sa.select(p.c.allocation_id, p.c.position_id, p.c.leg, p.c.symbol, p.c.security_id, p.c.expiry,
                             p.c.strike, p.c.option_type, p.c.entry_side, p.c.quantity, p.c.average_price,
                             p.c.entry_quantity, lot.label("lot_size"), p.c.fees, p.c.realized_pnl)
                   .where(p.c.allocation_id.in_(aids)))
    legs = legs.join(st.select("allocation_id", "position_id", "strategy_key", "broker"),
                     on=["allocation_id", "position_id"], how="inner")
    st = st.filter(~pl.col("state").is_in(HUMAN_STATES) | pl.col("strategy_key").is_in(legs.get_column("strategy_key")))
    if st.height == 0:
        return _empty_inputs()
    legs = _fold_closed_legs(legs)
    sids = st.get_column("strategy_id").unique().to_list()
    par = wh.read(sa.select(strategy_parameters.c.strategy_id, strategy_parameters.c.max_loss,
                            strategy_parameters.c.max_profit, strategy_parameters.c.breakevens)
                  .where(strategy_parameters.c.strategy_id.in_(sids)))
    lv = wh.read(sa.select(strategy_exit_levels).where(strategy_exit_levels.c.strategy_id.in_(sids)))
    d = strategy_details
    first_leg = wh.read(sa.select(d.c.strategy_id, d.c.leg, d.c.quantity).where(d.c.strategy_id.in_(sids)))
    pa = portfolio_allocation
    alloc = wh.read(sa.select(pa.c.allocation_id, pa.c.position_id, pa.c.capital_used, pa.c.trade_date)
                    .where(pa.c.allocation_id.in_(aids)))
    scale = _scale(st, legs, first_leg)
    open_legs = legs.filter(pl.col("quantity") != 0)
    counts = open_legs.group_by("strategy_key").agg(pl.len().alias("open_legs"))
    strategies = st.join(counts, on="strategy_key", how="left").with_columns(pl.col("open_legs").fill_null(0))
    facts = _facts(st, par, alloc, scale, as_of)
    return MonitorInputs(open_legs.with_columns(pl.col("strategy_key").alias("strategy_id")),
                         facts, _levels(st, lv, scale),
                         strategies.select("strategy_key", "strategy_id", "allocation_id", "position_id", "position_no",
                                           "symbol", "strategy_name", "state", "broker", "open_legs"))


def _empty_inputs() -> MonitorInputs:
    s = {"strategy_key": pl.Utf8, "strategy_id": pl.Utf8, "allocation_id": pl.Utf8, "position_id": pl.Utf8,
         "position_no": pl.Int64, "symbol": pl.Utf8, "strategy_name": pl.Utf8, "state": pl.Utf8, "broker": pl.Utf8,
         "open_legs": pl.Int64}
    return MonitorInputs(pl.DataFrame(schema={"strategy_id": pl.Utf8}), pl.DataFrame(schema={"strategy_id": pl.Utf8}),
                         pl.DataFrame(schema={"strategy_id": pl.Utf8}), pl.DataFrame(schema=s))


def _fold_closed_legs(legs: pl.DataFrame) -> pl.DataFrame:
    """Closed legs' realized P&L and fees moved onto the strategy's first open leg (module docstring)."""
    legs = legs.with_columns(pl.col("fees").fill_null(0.0), pl.col("realized_pnl").fill_null(0.0))
    closed = legs.filter(pl.col("quantity") == 0).group_by("strategy_key").agg(
        pl.col("realized_pnl").sum().alias("_r"), pl.col("fees").sum().alias("_f"))
    first = (pl.col("quantity") != 0) & (pl.col("leg") == pl.col("leg").filter(pl.col("quantity") != 0)
                                         .min().over("strategy_key"))
    return legs.join(closed, on="strategy_key", how="left").with_columns(
        pl.when(first).then(pl.col("realized_pnl") + pl.col("_r").fill_null(0.0)).otherwise(pl.col("realized_pnl"))
        .alias("realized_pnl"),
        pl.when(first).then(pl.col("fees") + pl.col("_f").fill_null(0.0)).otherwise(pl.col("fees")).alias("fees"),
    ).drop("_r", "_f").sort("strategy_key", "leg")


def _scale(st: pl.DataFrame, legs: pl.DataFrame, details: pl.DataFrame) -> pl.DataFrame:
    """strategy_key -> entered shares / the candidate's shares (first leg with both)."""
    j = legs.select("strategy_key", "leg", "entry_quantity").join(
        st.select("strategy_key", "strategy_id"), on="strategy_key").join(
        details.rename({"quantity": "_cand"}), on=["strategy_id", "leg"], how="inner").filter(
        (pl.col("entry_quantity") > 0) & (pl.col("_cand") > 0)).sort("strategy_key", "leg")
    return j.group_by("strategy_key", maintain_order=True).first().select(
        "strategy_key", (pl.col("entry_quantity") / pl.col("_cand")).alias("scale"))


def _facts(st: pl.DataFrame, par: pl.DataFrame, alloc: pl.DataFrame, scale: pl.DataFrame,
           as_of: dt.datetime) -> pl.DataFrame:
    closes = {d: session_close(d).astimezone(dt.UTC) for d in alloc.get_column("trade_date").unique().to_list()}
    alloc = alloc.with_columns(pl.col("trade_date").replace_strict(closes, default=None,
                                                                  return_dtype=pl.Datetime("us", "UTC")).alias("_sc"))
    par = par.with_columns(pl.col("breakevens").map_elements(lambda s: [float(x) for x in json.loads(s)] if s else None,
                                                             return_dtype=pl.List(pl.Float64)))
    f = st.join(par, on="strategy_id", how="left").join(alloc, on=["allocation_id", "position_id"], how="left").join(
        scale, on="strategy_key", how="left").with_columns(pl.col("scale").fill_null(1.0))
    opened = pl.coalesce("opened_at", "started_at").dt.convert_time_zone("UTC")  # FAILED: never opened
    return f.select(
        pl.col("strategy_key").alias("strategy_id"), "symbol", "strategy_name", "state",
        (pl.col("max_loss") * pl.col("scale")).alias("max_loss"), (pl.col("max_profit") * pl.col("scale")).alias("max_profit"),
        "breakevens", pl.col("capital_used").alias("capital"),
        pl.when(opened.is_null() | (opened > pl.lit(as_of).dt.convert_time_zone("UTC"))).then(pl.col("_sc"))
        .otherwise(opened).alias("entered_at"))


def _levels(st: pl.DataFrame, lv: pl.DataFrame, scale: pl.DataFrame) -> pl.DataFrame:
    if lv.height == 0:
        return pl.DataFrame(schema={"strategy_id": pl.Utf8})
    j = st.select("strategy_key", "strategy_id").join(lv, on="strategy_id", how="inner").join(
        scale, on="strategy_key", how="left").with_columns(pl.col("scale").fill_null(1.0))

    def steps(row: dict) -> str | None:
        if not row["scale_out"]:
            return row["scale_out"]
        return json.dumps([{**s, "pnl": None if s.get("pnl") is None else s["pnl"] * row["scale"]}
                           for s in json.loads(row["scale_out"])])

    scaled = [steps(r) for r in j.select("scale_out", "scale").iter_rows(named=True)]
    return j.with_columns(*[(pl.col(c) * pl.col("scale")).alias(c) for c in _MONEY_LEVELS],
                          pl.Series("scale_out", scaled, dtype=pl.Utf8)).drop("strategy_id", "scale", "trade_date") \
        .rename({"strategy_key": "strategy_id"})


def open_leg_quantities(wh: Warehouse, allocation_id: str, position_id: str) -> dict[int, int]:
    """leg -> signed open shares of one position (from ``positions``)."""
    p = positions
    with wh.engine.connect() as conn:
        rows = conn.execute(sa.select(p.c.leg, p.c.quantity).where(p.c.allocation_id == allocation_id,
                                                                   p.c.position_id == position_id)).all()
    return {int(leg): int(q) for leg, q in rows}


def last_trade_at(wh: Warehouse, allocation_ids: Sequence[str]) -> dt.datetime | None:
    """The latest fill of the allocations (a paper exit clock never starts before it)."""
    if not allocation_ids:
        return None
    with wh.engine.connect() as conn:
        v = conn.execute(sa.select(sa.func.max(trades.c.traded_at)).where(
            trades.c.allocation_id.in_(list(allocation_ids)))).scalar()
    if v is None:
        return None
    if isinstance(v, str):  # SQLite aggregate: text
        v = dt.datetime.fromisoformat(v)
    return v if v.tzinfo else v.replace(tzinfo=dt.UTC)


def allocation_capital(wh: Warehouse, allocation_ids: Sequence[str]) -> float | None:
    """The largest capital of the allocations (the paper account the exits trade in)."""
    if not allocation_ids:
        return None
    s = portfolio_allocation_summary
    with wh.engine.connect() as conn:
        v = conn.execute(sa.select(sa.func.max(s.c.capital)).where(s.c.allocation_id.in_(list(allocation_ids)))).scalar()
    return None if v is None else float(v)


# -- quotes and closes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionQuotes:
    quotes: pl.DataFrame  # valuation.QUOTES_SCHEMA + contract_key
    spot: dict[str, float]  # symbol -> the chain's underlying price
    book: ChainQuoteBook | None  # the paper broker's book (None: no stored chain)


def session_quotes(wh: Warehouse, session: dt.date, symbols: Iterable[str]) -> SessionQuotes:
    """The stored chain of ``session`` for ``symbols``: the quotes frame, spot per symbol and the book
    (with the session's instruments) the paper broker fills exits at."""
    syms = sorted({s.upper() for s in symbols})
    c = option_chain_data
    cols = (c.c.symbol, c.c.expiry, c.c.strike, c.c.option_type, c.c.bid, c.c.ask, c.c.bid_qty, c.c.ask_qty, c.c.ltp,
            c.c.underlying_price, c.c.security_id, c.c.snapshot_ts)
    chain = archive.fallback(wh, wh.read(sa.select(*cols).where(c.c.trade_date == session, c.c.symbol.in_(syms))),
                             "option_chain_data", session, [x.name for x in cols], syms) if syms else pl.DataFrame()
    if chain.height == 0:
        empty = pl.DataFrame(schema={"security_id": pl.Utf8, "contract_key": pl.Utf8, "bid": pl.Float64,
                                     "ask": pl.Float64, "ltp": pl.Float64})
        return SessionQuotes(empty, {}, None)
    book = ChainQuoteBook(chain, instruments=instrument_specs(wh, session, syms))
    quotes = book.frame.select("security_id", "contract_key", *[pl.col(k).cast(pl.Float64) for k in ("bid", "ask", "ltp")])
    spot = chain.group_by("symbol").agg(pl.col("underlying_price").drop_nulls().first())
    return SessionQuotes(quotes, dict(spot.iter_rows()), book)


def underlying_closes(wh: Warehouse, pairs: Iterable[tuple[str, dt.date]]) -> dict[tuple[str, dt.date], float]:
    """(symbol, date) -> the underlying's close that day: the stored chain's underlying price of that
    session, else the daily bar's close; pairs with neither are left out."""
    pairs = sorted(set(pairs))
    if not pairs:
        return {}
    syms, dates = sorted({s for s, _ in pairs}), sorted({d for _, d in pairs})
    c, b = option_chain_data, underlying_bars
    out: dict[tuple[str, dt.date], float] = {}
    bars = wh.read(sa.select(b.c.symbol, b.c.date, b.c.close).where(b.c.symbol.in_(syms), b.c.date.in_(dates)))
    for s, d, close in bars.iter_rows():
        out[(s, d)] = float(close)
    ch = wh.read(sa.select(c.c.symbol, c.c.trade_date, sa.func.max(c.c.underlying_price))
                 .where(c.c.symbol.in_(syms), c.c.trade_date.in_(dates)).group_by(c.c.symbol, c.c.trade_date))
    for s, d, px in ch.iter_rows():
        if px is not None:
            out[(s, d)] = float(px)
    for s, d, px in archive.underlying_prices(wh, syms, dates):  # sessions whose chains are archived
        out[(s, d)] = px
    return {k: v for k, v in out.items() if k in set(pairs)}


# -- exit intents ---------------------------------------------------------------------------------------------

_I = exit_intents


def _intent(row) -> dict:
    d = dict(row._mapping)
    d["quantities"] = json.loads(d["quantities"])
    return d


def reserve_intent(wh: Warehouse, values: Mapping, *, at: dt.datetime | None = None) -> tuple[dict, bool]:
    """INSERT the intent unless its key exists: (the stored row, created). ``values``: the columns of
    ``exit_intents`` (``quantities`` a list, stored as JSON)."""
    at = at or _now()
    row = {**values, "quantities": json.dumps(list(values["quantities"]), sort_keys=True, default=str),
           "attempt": values.get("attempt", 0), "version": 0, "created_at": at, "updated_at": at}
    with wh.engine.begin() as conn:
        created = insert_ignore(conn, _I, row, ["intent_key"]) == 1
        stored = conn.execute(sa.select(_I).where(_I.c.intent_key == values["intent_key"])).one()
    return _intent(stored), created


def get_intent(wh: Warehouse, key: str) -> dict | None:
    with wh.engine.connect() as conn:
        row = conn.execute(sa.select(_I).where(_I.c.intent_key == key)).first()
    return _intent(row) if row else None


def intents(wh: Warehouse, *, strategy_keys: Sequence[str] | None = None, states: Sequence[str] | None = None,
            trade_date: dt.date | None = None) -> list[dict]:
    q = sa.select(_I)
    if strategy_keys is not None:
        q = q.where(_I.c.strategy_key.in_(list(strategy_keys)))
    if states is not None:
        q = q.where(_I.c.state.in_(list(states)))
    if trade_date is not None:
        q = q.where(_I.c.trade_date == trade_date)
    with wh.engine.connect() as conn:
        return [_intent(r) for r in conn.execute(q.order_by(_I.c.created_at, _I.c.intent_key))]


def claim_intent(wh: Warehouse, key: str, *, expected_version: int, at: dt.datetime | None = None,
                 **fields) -> dict | None:
    """Compare-and-set: update the intent only if its version is still ``expected_version`` (then
    version + 1); None when another process changed it first."""
    vals = {**fields, "version": expected_version + 1, "updated_at": at or _now()}
    if "quantities" in vals:
        vals["quantities"] = json.dumps(list(vals["quantities"]), sort_keys=True, default=str)
    with wh.engine.begin() as conn:
        row = conn.execute(_I.update().where(_I.c.intent_key == key, _I.c.version == expected_version)
                           .values(**vals).returning(*_I.c)).first()
    return _intent(row) if row else None


# -- monitor state and snapshots ------------------------------------------------------------------------------

def read_monitor_state(wh: Warehouse, keys: Sequence[str]) -> dict[str, dict]:
    if not keys:
        return {}
    t = monitor_state
    with wh.engine.connect() as conn:
        return {r.strategy_key: dict(r._mapping)
                for r in conn.execute(sa.select(t).where(t.c.strategy_key.in_(list(keys))))}


def daily_loss_breach(wh: Warehouse, session: dt.date, *, modes: Sequence[str]) -> dict | None:
    """The daily loss limit breach a monitoring cycle of one of ``modes`` recorded for ``session`` (the
    audit row ``daily_loss_limit`` the cycle appends: daily_pnl, limit, as_of, ...), the worst one;
    None when the limit was not breached that day."""
    rows = audit_rows(wh, kind="daily_loss_limit", subject=f"portfolio:daily_loss_limit:{session.isoformat()}")
    found = [d for d in (json.loads(x) for x in rows.get_column("payload").to_list() if x)
             if d.get("breached") and (d.get("mode") is None or d["mode"] in modes)]  # no mode: an older row
    return min(found, key=lambda d: d.get("daily_pnl") or 0.0) if found else None


def closed_today_pnl(wh: Warehouse, day: dt.date, *, exclude: Sequence[str] = ()) -> float:
    """The day's P&L of the strategies closed on ``day`` (last P&L less the day-start P&L)."""
    t = monitor_state
    rows = wh.read(sa.select(t.c.strategy_key, t.c.last_pnl, t.c.day_start_pnl).where(t.c.closed_day == day))
    rows = rows.filter(~pl.col("strategy_key").is_in(list(exclude)))
    return float((rows.get_column("last_pnl").fill_null(0.0) - rows.get_column("day_start_pnl").fill_null(0.0)).sum()) \
        if rows.height else 0.0


def write_cycle(wh: Warehouse, snapshots: Sequence[Mapping], states: Sequence[Mapping]) -> int:
    """One cycle's ``strategy_monitoring`` rows (a re-run of the same as_of and source replaces its
    rows) and ``monitor_state`` upserts, in one transaction; the snapshots written."""
    now = _now()
    with wh.engine.begin() as conn:
        for r in snapshots:
            upsert(conn, strategy_monitoring, {**r, "recorded_at": now}, ["as_of", "strategy_key", "source"])
        for r in states:
            upsert(conn, monitor_state, {**r, "updated_at": now}, ["strategy_key"])
    return len(snapshots)


# -- settlement -----------------------------------------------------------------------------------------------

def record_settlement(store: TradingStore, rec: Mapping, *, broker: str, intent_key: str,
                      at: dt.datetime) -> bool:
    """A settled leg (a :data:`~..trading.settlement.SETTLEMENT_SCHEMA` row) as an exit order TRADED
    at the settlement price with one fill (its STT as the fee), so the leg's position is recomputed
    from its trades like any exit. Idempotent per (intent, leg): False when already recorded."""
    qty = int(rec["quantity"])
    with store.engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(trades.c.traded_at)).where(
            trades.c.allocation_id == rec["allocation_id"], trades.c.position_id == rec["position_id"],
            trades.c.leg == int(rec["leg"]))).scalar()
    if isinstance(last, str):
        last = dt.datetime.fromisoformat(last)
    if last is not None:  # fills are ordered by time: the settlement comes after the leg's last fill
        last = last if last.tzinfo else last.replace(tzinfo=dt.UTC)
        at = max(at, last + dt.timedelta(milliseconds=1))
    cid = exit_correlation_id(intent_key, int(rec["leg"]), 0, 0)
    side = Side.SELL if qty > 0 else Side.BUY
    price = float(rec["settlement_price"])
    values = dict(correlation_id=cid, allocation_id=rec["allocation_id"], position_id=rec["position_id"],
                  strategy_id=rec.get("candidate_id"), leg=int(rec["leg"]), slice_no=0, attempt=0, purpose="exit",
                  intent=intent_key[:128], broker=broker, security_id=rec["security_id"] or "", symbol=rec["symbol"],
                  expiry=rec["expiry"], strike=rec["strike"], option_type=rec["option_type"], side=str(side),
                  quantity=abs(qty), order_type=str(OrderType.LIMIT), price=price, modifications=0,
                  status=str(OrderStatus.TRADED), version=0, filled_quantity=abs(qty), average_price=price,
                  reason=f"settled at expiry ({rec['method']}) at intrinsic {price:g} against the underlying's close "
                         f"{rec['underlying_close']:g}", adopted=False, created_at=at, updated_at=at)
    with store.engine.begin() as conn:
        if insert_ignore(conn, orders, values, ["correlation_id"]) != 1:
            return False
        conn.execute(order_events.insert(), dict(correlation_id=cid, at=at, from_status=None,
                                                 to_status=str(OrderStatus.TRADED), source="settlement",
                                                 payload=json.dumps({k: str(v) for k, v in rec.items()}, sort_keys=True)))
    fill = Fill(f"settle-{cid}", f"settle-{cid}", cid, rec["security_id"] or "", side, abs(qty), price, at)
    stt = float(rec.get("stt") or 0.0)
    store.record_fills(cid, [fill], [{"stt": stt, "fees": stt}])
    return True


def open_position_count(wh: Warehouse, *, brokers: Sequence[str] | None = None) -> int:
    """How many executed strategies are monitored (states OPEN / PARTIALLY_EXITED, FAILED with an
    open leg; of ``brokers``)."""
    e, p = strategy_execution_status, positions
    held = sa.exists().where(p.c.allocation_id == e.c.allocation_id, p.c.position_id == e.c.position_id,
                             p.c.quantity != 0)
    q = sa.select(sa.func.count()).select_from(e).where(
        sa.or_(e.c.state.in_(MONITORED_STATES), sa.and_(e.c.state.in_(HUMAN_STATES), held)))
    if brokers is not None:
        q = q.where(e.c.broker.in_(list(brokers)))
    with wh.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def has_open_positions(wh: Warehouse, *, brokers: Sequence[str] | None = None) -> bool:
    return open_position_count(wh, brokers=brokers) > 0


def snapshot_count(wh: Warehouse, *, trade_date: dt.date | None = None, source: str | None = None) -> int:
    """Rows of ``strategy_monitoring`` (of one session / source when given)."""
    t = strategy_monitoring
    q = sa.select(sa.func.count()).select_from(t)
    if trade_date is not None:
        q = q.where(t.c.trade_date == trade_date)
    if source is not None:
        q = q.where(t.c.source == source)
    with wh.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def latest_chain_session(wh: Warehouse, *, until: dt.date | None = None) -> dt.date | None:
    """The newest session with a stored option chain (at or before ``until``): what a simulated
    monitor replays."""
    c = option_chain_data
    q = sa.select(sa.func.max(c.c.trade_date))
    if until is not None:
        q = q.where(c.c.trade_date <= until)
    with wh.engine.connect() as conn:
        latest = conn.execute(q).scalar()
    archived = archive.latest_archived(wh, "option_chain_data", until=until)
    return max(d for d in (latest, archived) if d is not None) if (latest or archived) else None


def closed_results(wh: Warehouse) -> dict[str, int]:
    """Wins and losses (realized P&L after fees > 0 / <= 0) of the CLOSED strategies."""
    e = strategy_execution_status
    rows = wh.read(sa.select(e.c.realized_pnl).where(e.c.state == "CLOSED"))
    pnl = rows.get_column("realized_pnl").fill_null(0.0) if rows.height else pl.Series([], dtype=pl.Float64)
    return {"wins": int((pnl > 0).sum()), "losses": int((pnl <= 0).sum())}
