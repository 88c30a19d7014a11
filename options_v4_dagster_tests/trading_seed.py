"""A stored allocation snapshot and its session's quotes for the trading tests: two bull call /
bear put spreads (NIFTY, TCS) in portfolio_allocation, their candidates' legs in strategy_details,
and the legs' contracts in option_chain_data (what ``session_quote_book`` gives the paper broker).

Quotes: a BUY leg's price is its ask, a SELL leg's its bid (the snapshot's executable prices), the
other side one rupee away, 1,500 shares shown on each side, the last price at the mid."""

from __future__ import annotations

import datetime as dt

D = dt.date(2025, 7, 17)
EXPIRY = dt.date(2025, 7, 31)
NOW = dt.datetime(2025, 7, 17, 4, 0, tzinfo=dt.UTC)


SHOWN = 1500  # shares on each side of every seeded quote


def chain_row(symbol: str, strike: float, option_type: str, side: str, price: float, security_id: str | None,
              lot_size: int, *, shown: int = SHOWN) -> dict:
    """An option_chain_data row whose executable price for ``side`` is ``price`` (module docstring)."""
    bid, ask = (price - 1.0, price) if side == "BUY" else (price, price + 1.0)
    return dict(trade_date=D, symbol=symbol, expiry=EXPIRY, strike=strike, option_type=option_type, bid=bid, ask=ask,
                bid_qty=float(shown), ask_qty=float(shown), ltp=(bid + ask) / 2, close=(bid + ask) / 2,
                underlying_price=strike, lot_size=lot_size, security_id=security_id, snapshot_ts=NOW, source="test")


def seed_allocation(wh, allocation_id: str = "a" * 64, positions: dict | None = None, *, quotes: bool = True,
                    capital: float = 1e6) -> str:
    """Store a snapshot: ``positions`` maps position_id -> (symbol, lots, lot_size, legs) with legs
    [(side, CE/PE, strike, price, security_id)] per one lot. Default: a NIFTY bull call spread (2
    lots) and a TCS bear put spread (1 lot). ``quotes``: also store the legs' quotes for the session."""

    from options_v4_dagster.store import schema

    positions = positions or {
        "AL-NIFTY": ("NIFTY", 2, 75, [("BUY", "CE", 25000.0, 120.0, "N25000CE"), ("SELL", "CE", 25200.0, 60.0, "N25200CE")]),
        "AL-TCS": ("TCS", 1, 175, [("BUY", "PE", 3400.0, 40.0, "T3400PE"), ("SELL", "PE", 3300.0, 15.0, "T3300PE")]),
    }
    with wh.engine.begin() as c:
        c.execute(schema.portfolio_allocation_summary.insert().values(
            allocation_id=allocation_id, trade_date=D, capital=capital, capital_used=1e5, deployment=0.1,
            positions=len(positions), rules="{}", industry_views="{}", created_at=NOW))
        for pid, (sym, lots, lot, legs) in positions.items():
            sid = f"20250717-{sym}-Spread-moderate"
            c.execute(schema.strategies.insert().values(strategy_id=sid, trade_date=D, symbol=sym,
                                                        strategy_name="Spread", risk_tolerance="moderate", lots=1,
                                                        lot_size=lot, created_at=NOW))
            for i, (side, typ, k, px, sec) in enumerate(legs, 1):
                c.execute(schema.strategy_details.insert().values(
                    strategy_id=sid, leg=i, trade_date=D, side=side, instrument=typ, strike=k, expiry=EXPIRY,
                    quantity=lot, price=px, security_id=sec))
                if quotes:
                    c.execute(schema.option_chain_data.insert().values(**chain_row(sym, k, typ, side, px, sec, lot)))
            c.execute(schema.portfolio_allocation.insert().values(
                allocation_id=allocation_id, position_id=pid, trade_date=D, strategy_id=sid, symbol=sym,
                strategy_name="Spread", tier="TIER1", lots=lots, lot_size=lot, capital_used=1e4, capital=1e6,
                created_at=NOW))
    return allocation_id
