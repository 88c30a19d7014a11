"""Exits the monitor decides but does not place (pure domain, used by :mod:`.monitor`):

* **A strategy left FAILED for a human** (an entry leg never filled and the filled ones were left
  open, or their unwind did not finish): it still holds open legs, so it is valued and evaluated
  like any open strategy, but every rule that fired becomes a HIGH ``ALERT`` (``not exited
  automatically``) and a ``left_for_human`` HIGH alert names its open legs, every cycle until
  nothing is open. No intent, no order: what to do with a half-built position is a human's call.
  Its expired legs still settle at intrinsic value (the exchange settles them, no order is placed)
  and once nothing is open the strategy is ``UNWOUND``.
* **A strategy without quotes** (a leg missing from the session's stored chain: that symbol's fetch
  failed): its exits cannot be priced or filled, so they are held back as ALERTs (urgency kept)
  with a message naming the symbol, the session and what to materialize; no intent is written, so
  the next cycle with quotes places them.
* **A session without any stored chain** for the open strategies: :class:`QuotesUnavailable` (the
  cycle stops after settling expired legs, before any valuation, snapshot or intent).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import replace

import polars as pl

from ..errors import OptionsV4Error
from .decisions import DECISION_SCHEMA, Action, Urgency
from .exit_rules import ExitEvaluation

__all__ = ["LEFT_FOR_HUMAN", "QuotesUnavailable", "hold_exits", "materialize_hint", "unquoted"]

#: the rule name of the alert every FAILED strategy with open legs gets
LEFT_FOR_HUMAN = "left_for_human"


def materialize_hint(session: dt.date) -> str:
    """The commands that store a session's option chain (its chain assets alone, or the whole day)."""
    d = session.isoformat()
    return f"`options-v4 backfill --start {d} --end {d} --job session_chains` (or `options-v4 run --date {d}`)"


class QuotesUnavailable(OptionsV4Error):
    """No stored option chain for the session of a cycle that must value open strategies: nothing was
    evaluated, no intent written and no order placed (legs past their expiry were settled first)."""

    def __init__(self, session: dt.date, symbols: Iterable[str], settled: int = 0) -> None:
        self.session = session
        self.symbols = sorted(set(symbols))
        self.settled = settled
        shown = ", ".join(self.symbols[:8]) + (f" and {len(self.symbols) - 8} more" if len(self.symbols) > 8 else "")
        super().__init__(
            f"no stored option chain for {session} (open strategies on {shown}): nothing was evaluated and no "
            f"exit placed; materialize the session's chain with {materialize_hint(session)}, then run the cycle "
            "again" + (f" ({settled} expired leg(s) were settled)" if settled else ""))


def unquoted(valuation_strategies: pl.DataFrame, session: dt.date) -> dict[str, str]:
    """strategy key -> why its exits are held: the strategies with a leg that has no quote."""
    miss = valuation_strategies.filter(pl.col("quotes_missing") > 0)
    return {k: f"not placed: no quotes for {n} leg(s) of {sym} on {session}; materialize the chain with "
               f"{materialize_hint(session)}"
            for k, sym, n in miss.select("strategy_id", "symbol", "quotes_missing").iter_rows()}


def hold_exits(ev: ExitEvaluation, *, failed: Mapping[str, str], unpriced: Mapping[str, str]) -> ExitEvaluation:
    """``ev`` with nothing actionable for the strategies of ``failed`` (key -> the left_for_human
    reason) and ``unpriced`` (key -> why), as the module docstring says."""
    keys = set(failed) | set(unpriced)
    if not keys:
        return ev
    dec = ev.decisions
    sid = pl.col("strategy_id")
    is_failed, is_held = sid.is_in(list(failed)), sid.is_in(list(unpriced))
    fired = pl.col("action") != Action.HOLD.value
    why = sid.replace_strict(dict(unpriced), default=None, return_dtype=pl.Utf8)
    held = dec.filter(~(is_failed & ~fired)).with_columns(
        pl.when(is_failed | (is_held & fired)).then(pl.lit(Action.ALERT.value)).otherwise(pl.col("action"))
        .alias("action"),
        pl.when(is_failed).then(pl.lit(Urgency.HIGH.value)).otherwise(pl.col("urgency")).alias("urgency"),
        pl.when(is_failed | (is_held & fired)).then(pl.lit(0, pl.Int64)).otherwise(pl.col("lots")).alias("lots"),
        pl.when(is_failed).then(pl.lit("FAILED, left for a human -- not exited automatically: ") + pl.col("reason"))
        .when(is_held & fired).then(why + pl.lit(" -- ") + pl.col("reason")).otherwise(pl.col("reason"))
        .alias("reason"),
        pl.when(is_failed).then(pl.lit(False)).otherwise(pl.col("primary")).alias("primary"),
        pl.when(sid.is_in(list(keys))).then(pl.lit(False)).otherwise(pl.col("actionable")).alias("actionable"),
    )
    extra = pl.DataFrame([dict(strategy_id=k, action=Action.ALERT.value, urgency=Urgency.HIGH.value,
                               rule=LEFT_FOR_HUMAN, level="failed", intent_key=f"{k}:{LEFT_FOR_HUMAN}:failed",
                               value=None, threshold=None, lots=0, reason=r, precedence=0, primary=True,
                               actionable=False) for k, r in failed.items()], schema=DECISION_SCHEMA)
    order = {k: i for i, k in enumerate(dict.fromkeys(dec.get_column("strategy_id").to_list()))}
    out = (pl.concat([extra, held.cast(DECISION_SCHEMA)])
           .with_columns(sid.replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_o"))
           .sort("_o", "precedence", maintain_order=True).drop("_o"))
    lq = ev.leg_quantities.filter(~pl.col("strategy_id").is_in(list(keys)))
    return replace(ev, decisions=out, leg_quantities=lq)
