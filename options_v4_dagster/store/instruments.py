"""Reads of table ``instruments`` (one session's tradable contracts, written by the ``instruments``
asset): the frame, :class:`~..trading.rules.InstrumentSpec` per security id (what the paper broker
validates orders against) and per contract (what the execution plan looks legs up by).

Contracts are matched on (underlying, expiry, strike rounded to 4 decimals, CE / PE / FUT / EQ):
:func:`contract_of`. Futures get ``option_type`` "FUT" and strike 0 in their spec.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
import sqlalchemy as sa

from ..trading.rules import InstrumentSpec
from .protocol import WarehouseLike
from .schema import instruments

__all__ = ["Contract", "contract_of", "find_instrument", "instrument_specs", "instruments_count",
           "session_instruments", "specs_by_contract"]

#: (underlying, expiry, strike, kind): kind CE / PE / FUT / EQ; strike None unless an option, expiry None for EQ
Contract = tuple[str, dt.date | None, float | None, str]

_KIND = {"FUTIDX": "FUT", "FUTSTK": "FUT", "EQUITY": "EQ"}


def contract_of(symbol: str, expiry: dt.date | None, strike: float | None, kind: str) -> Contract:
    """The lookup key of a contract (a strategy leg's ``instrument`` is its ``kind``)."""
    k = kind.upper()
    if k in ("CE", "PE"):
        return symbol.upper(), expiry, round(float(strike), 4) if strike is not None else None, k
    return symbol.upper(), expiry if k == "FUT" else None, None, k


def session_instruments(wh: WarehouseLike, session: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
    """The session's instruments rows (of the underlyings ``symbols``, default all)."""
    t = instruments
    q = sa.select(t).where(t.c.trade_date == session)
    if symbols is not None:
        q = q.where(t.c.symbol.in_(sorted({s.upper() for s in symbols})))
    return wh.read(q.order_by(t.c.symbol, t.c.expiry, t.c.strike, t.c.option_type))


def instruments_count(wh: WarehouseLike, session: dt.date) -> int:
    return wh.count("instruments", session)


def _spec(r: dict) -> InstrumentSpec:
    kind = r["option_type"] or _KIND.get(r["instrument_type"], r["instrument_type"])
    return InstrumentSpec(str(r["security_id"]), r["symbol"], r["expiry"], float(r["strike"] or 0.0), kind,
                          int(r["lot_size"]), float(r["tick_size"]), r["freeze_quantity"])


def specs_by_contract(frame: pl.DataFrame) -> dict[Contract, InstrumentSpec]:
    """``{contract_of(...): spec}`` of the tradable rows of ``frame`` (:func:`session_instruments`):
    options, futures and equities (an index is not tradable)."""
    out: dict[Contract, InstrumentSpec] = {}
    for r in frame.filter(pl.col("instrument_type") != "INDEX").iter_rows(named=True):
        spec = _spec(r)
        out[contract_of(r["symbol"], r["expiry"], r["strike"], spec.option_type)] = spec
    return out


def instrument_specs(wh: WarehouseLike, session: dt.date, symbols: Sequence[str] | None = None
                     ) -> dict[str, InstrumentSpec]:
    """``{security_id: spec}`` of the session's derivatives (options and futures) of ``symbols``
    (default all): what the paper broker checks lots, ticks and freeze quantities against. ``{}`` when
    the session has no instruments rows."""
    frame = session_instruments(wh, session, symbols)
    return {s.security_id: s for s in specs_by_contract(frame).values() if s.option_type != "EQ"}


def find_instrument(wh: WarehouseLike, session: dt.date, symbol: str, expiry: dt.date | None,
                    strike: float | None, option_type: str) -> InstrumentSpec | None:
    """The spec of one contract on the session (``option_type`` CE / PE / FUT / EQ), None if not listed."""
    return specs_by_contract(session_instruments(wh, session, [symbol])).get(
        contract_of(symbol, expiry, strike, option_type))
