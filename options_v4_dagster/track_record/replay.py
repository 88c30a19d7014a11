"""The walk-forward replay: months of sessions through allocation, paper execution and the exit rules,
in a warehouse of its own (a fresh SQLite file: the replay's orders never mix with the real paper
account's).

For each session ``t`` of the range, in order (every read goes through a :class:`~.inputs.SessionView`
of ``t``: nothing dated after ``t`` is read):

1. **Data.** The chains of the held underlyings (every session) and, on an *entry session* (every
   session with cadence ``daily``, the first of each week with ``weekly``), the session's candidates,
   universe and market conditions (:func:`~.inputs.entry_inputs`), written as the assets write them.
2. **Monitoring** (:func:`~..trading.monitor.monitor_cycle`, mode simulation, at 15:25 IST): expired
   legs settle (index options at intrinsic value against the close; stock options were closed before
   expiry by the physical-settlement cut-off), open strategies are valued at ``t``'s quotes, the exit
   rules fire and their exits fill on a paper broker at ``t``'s quotes (fees included).
3. **Entries** (entry sessions): capital is rolled -- the allocation gets the paper account's *free*
   capital (its funds after the open positions' premium and margin), over the candidates of ``t`` only,
   less the underlyings already held (one position per underlying). The snapshot is stored, approved
   and executed with :func:`~..trading.service.execute_approval` on the paper broker at ``t``'s quotes.
4. **Mark**: equity = initial capital + every fill's cash flow - fees + the open legs at ``t``'s mid
   (else last price, else the last mark seen).

The paper account's capital is the initial capital plus realized P&L less fees (what a fresh paper
broker needs to count the carried open positions' premium and margin correctly); the monitor's exits
run on a paper broker with that capital (the one ``monitor_cycle`` builds would take an allocation's
capital, which is the free capital of its day). No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import polars as pl

from .. import calendar
from ..allocation.errors import AllocationError
from ..allocation.session import allocate_session, allocation_frames, industry_allocations
from ..errors import DataError, ProviderError
from ..store import Append, Replace
from ..store import monitoring as ms
from ..store.allocations import snapshot_appends
from ..store.track_record_queries import account_cash, open_legs
from ..store.trading_queries import ApprovalError, approve
from ..store.warehouse import Warehouse
from ..trading.execution import PreTradeCheckFailed
from ..trading.monitor import MonitorConfig, default_as_of, monitor_cycle
from ..trading.paper import PaperBroker, PaperConfig
from ..trading.quotes import StaticQuoteBook
from ..trading.replay import paper_execution
from ..trading.service import carry_open_positions, execute_approval, paper_start
from .inputs import CANDIDATE_TABLES, SessionView, entry_inputs, held_chains, stored_entry_inputs

__all__ = ["CADENCES", "ReplayConfig", "ReplayResult", "SessionRecord", "entry_days", "replay", "replay_days"]

CADENCES = ("daily", "weekly")
RUN_ID = "track-record"


@dataclass(frozen=True)
class ReplayConfig:
    start: dt.date
    end: dt.date
    source: str = "simulated"
    capital: float = 1_500_000.0
    cadence: str = "daily"
    risk: str = "moderate"
    symbols: tuple[str, ...] | None = None  # None: every underlying the source serves
    top_per_symbol: int = 5
    #: no new allocation when the free capital is below this share of the initial capital
    min_free_share: float = 0.02

    def __post_init__(self) -> None:
        if self.cadence not in CADENCES:
            raise ValueError(f"cadence must be one of {CADENCES}, got {self.cadence!r}")
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if not self.capital > 0:
            raise ValueError(f"capital must be positive, got {self.capital}")


@dataclass
class SessionRecord:
    session: dt.date
    entry: bool
    equity: float = 0.0
    cash: float = 0.0
    open_value: float = 0.0
    open_strategies: int = 0
    free_capital: float | None = None
    allocation_id: str | None = None
    entered: int = 0
    exits: int = 0  # exit intents driven this session
    settled: int = 0  # legs settled at expiry this session
    unmarked: int = 0  # open legs without a quote this session (carried at their last mark)
    inputs: str | None = None  # the entry's candidates: "computed" or "stored"
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"session": self.session.isoformat(), "entry": self.entry, "equity": round(self.equity, 2),
                "cash": round(self.cash, 2), "open_value": round(self.open_value, 2),
                "open_strategies": self.open_strategies,
                "free_capital": None if self.free_capital is None else round(self.free_capital, 2),
                "allocation_id": self.allocation_id, "entered": self.entered, "exits": self.exits,
                "settled": self.settled, "unmarked": self.unmarked, "inputs": self.inputs, "notes": list(self.notes)}


@dataclass
class ReplayResult:
    config: ReplayConfig
    sessions: list[SessionRecord]
    warehouse: Warehouse
    marks: dict[str, float]  # security id -> the last mark (the open legs' value at the end)
    seconds: float = 0.0

    def equity_frame(self) -> pl.DataFrame:
        return pl.DataFrame({"session": [s.session for s in self.sessions],
                             "equity": [s.equity for s in self.sessions],
                             "entry": [s.entry for s in self.sessions]},
                            schema={"session": pl.Date, "equity": pl.Float64, "entry": pl.Boolean})


def replay_days(cfg: ReplayConfig, provider) -> list[dt.date]:
    """The sessions replayed: NSE sessions of the range, those the source holds when it says
    (``sessions_available``: nse_files)."""
    days = calendar.sessions_between(cfg.start, cfg.end)
    held = getattr(provider, "sessions_available", None)
    if held is not None:
        have = set(held())
        days = [d for d in days if d in have]
    return days


def entry_days(days: list[dt.date], cadence: str) -> set[dt.date]:
    """Entry sessions: every one (daily) or the first replayed session of each ISO week (weekly)."""
    if cadence == "daily":
        return set(days)
    first: dict[tuple[int, int], dt.date] = {}
    for d in days:
        first.setdefault(d.isocalendar()[:2], d)
    return set(first.values())


def replay(cfg: ReplayConfig, wh: Warehouse, provider, *, stored: Warehouse | None = None,
           progress: Callable[[SessionRecord], None] | None = None) -> ReplayResult:
    """Replay ``cfg``'s range into ``wh`` (a warehouse of its own; see the module docstring).
    ``stored``: a warehouse whose stored strategy candidates (same source and risk tolerance) an
    entry session uses when it holds them (:func:`~.inputs.stored_entry_inputs`); the others are
    computed."""
    t0 = time.perf_counter()
    days = replay_days(cfg, provider)
    entries = entry_days(days, cfg.cadence)
    industries = industry_allocations(wh)
    run = _Run(cfg, wh, provider, industries, stored)
    for day in days:
        rec = run.session(day, day in entries)
        if progress is not None:
            progress(rec)
    return ReplayResult(cfg, run.records, wh, dict(run.marks), time.perf_counter() - t0)


class _Run:
    def __init__(self, cfg: ReplayConfig, wh: Warehouse, provider, industries, stored: Warehouse | None) -> None:
        self.cfg, self.wh, self.provider, self.industries, self.stored = cfg, wh, provider, industries, stored
        self.records: list[SessionRecord] = []
        self.marks: dict[str, float] = {}

    # -- the account ------------------------------------------------------------------------------
    def account_capital(self) -> float:
        """Initial capital + realized P&L - fees: cash plus the premium of the open legs at cost."""
        legs = open_legs(self.wh)
        flow, fees = account_cash(self.wh)
        at_cost = float((legs.get_column("quantity") * legs.get_column("average_price")).sum()) if legs.height else 0.0
        return self.cfg.capital + flow - fees + at_cost

    def free_capital(self, capital: float) -> float:
        """The paper account's available funds with every open leg carried (premium and margin)."""
        broker = PaperBroker(StaticQuoteBook([]), PaperConfig(capital=capital))
        carry_open_positions(broker, self.wh)
        return broker.funds().available

    # -- one session ------------------------------------------------------------------------------
    def session(self, day: dt.date, entry: bool) -> SessionRecord:
        rec = SessionRecord(day, entry)
        view = SessionView(self.provider, day)
        t = time.perf_counter()
        held = sorted(set(open_legs(self.wh).get_column("symbol").to_list())) if self.wh.count("positions") else []
        try:
            chain, failures = held_chains(view, day, held)
        except (DataError, ProviderError) as exc:
            chain, failures = pl.DataFrame(), []
            rec.notes.append(f"no chains for the held underlyings: {exc}")
        for f in failures:
            rec.notes.append(f"{f.symbol}: {f.kind}: {f.reason[:160]}")
        if chain.height:
            self.wh.replace_partition("option_chain_data", day, chain)
        rec.seconds["data"] = time.perf_counter() - t
        t = time.perf_counter()
        if held:
            self._monitor(rec, day)
        rec.seconds["monitor"] = time.perf_counter() - t
        t = time.perf_counter()
        if entry:
            self._enter(rec, day, view, chain)
        rec.seconds["entry"] = time.perf_counter() - t
        self._mark(rec, day)
        self.records.append(rec)
        return rec

    def _monitor(self, rec: SessionRecord, day: dt.date) -> None:
        legs = open_legs(self.wh)
        _, as_of = default_as_of(day)
        capital = self.account_capital()
        sq = ms.session_quotes(self.wh, day, legs.get_column("symbol").unique().to_list())
        broker, cfg = None, MonitorConfig(portfolio_capital=self._equity_before())
        if sq.book is not None:
            last = ms.last_trade_at(self.wh, legs.get_column("allocation_id").unique().to_list())
            start = max(as_of, last + dt.timedelta(seconds=1)) if last else as_of
            px = paper_execution(sq.book, capital=capital, start=start)
            carry_open_positions(px.broker, self.wh)
            broker, cfg = px.broker, replace(cfg, execution=px.config)
        report = monitor_cycle(self.wh, day, broker=broker, config=cfg)
        rec.exits = sum(1 for i in report.intents if i.driven)
        rec.settled = len(report.settled)
        rec.notes.extend(report.messages)

    def _equity_before(self) -> float:
        return self.records[-1].equity if self.records else self.cfg.capital

    def _enter(self, rec: SessionRecord, day: dt.date, view: SessionView, held_chain: pl.DataFrame) -> None:
        stored = set(held_chain.get_column("symbol").unique().to_list()) if held_chain.height else set()
        legs = open_legs(self.wh)
        held = sorted(set(legs.get_column("symbol").to_list())) if legs.height else []
        capital = self.account_capital()
        free = self.free_capital(capital)
        rec.free_capital = free
        if free < self.cfg.min_free_share * self.cfg.capital:
            rec.notes.append(f"no new allocation: free capital INR {free:,.0f} is below "
                             f"{self.cfg.min_free_share:.0%} of the initial capital")
            return
        symbols = list(self.cfg.symbols) if self.cfg.symbols else None
        # the candidates the replay can trade: one position per underlying, so none of a held one
        ei = stored_entry_inputs(self.stored, day, source=self.provider.name, risk=self.cfg.risk, exclude=held,
                                 symbols=symbols) if self.stored is not None else None
        try:
            if ei is None:
                ei = entry_inputs(view, day, risk=self.cfg.risk, top_per_symbol=self.cfg.top_per_symbol,
                                  symbols=symbols, exclude=held, nifty_chain=held_chain)
        except (DataError, ProviderError) as exc:
            rec.notes.append(f"no entries: the session's inputs failed: {exc}")
            return
        rec.inputs = ei.origin
        rec.seconds.update(ei.seconds)
        if ei.dropped:
            rec.notes.append(f"{len(ei.dropped)} candidates broke an invariant and were dropped: "
                             + "; ".join(ei.dropped[:3]))
        self.wh.replace_together([Replace.partition("fno_universe", day, ei.universe),
                                  Replace.partition("market_conditions", day, ei.conditions)]
                                 + [Replace.partition(k, day, ei.tables[k]) for k in CANDIDATE_TABLES])
        if ei.tables["strategies"].height == 0:
            errors = [f for f in ei.failures if f.kind == "error"]
            rec.notes.append(f"no entries: no strategy candidate built for the session ({len(errors)} build failures"
                             + (f", e.g. {errors[0].symbol}: {errors[0].reason[:120]}" if errors else "") + ")")
            return
        try:
            sa = allocate_session(self.wh, day, free, self.industries, risk_tolerance=self.cfg.risk)
        except AllocationError as exc:
            rec.notes.append(f"no allocation: {exc}")
            return
        frames = allocation_frames(sa, self.provider.name)
        aid = sa.allocation_id
        symbols = sorted(set(sa.result.positions.get_column("symbol").to_list()))
        more = ei.chain.filter(pl.col("symbol").is_in([s for s in symbols if s not in stored]))
        self.wh.replace_together([*snapshot_appends(RUN_ID, day, aid, frames["portfolio_allocation_summary"],
                                                    frames["portfolio_allocation"]),
                                  *([Append("option_chain_data", more)] if more.height else [])])
        rec.allocation_id = aid
        try:
            approve(self.wh, aid, approved_by=RUN_ID, at=paper_start(day))
            report = execute_approval(self.wh, allocation_id=aid, broker="paper", capital=capital)
        except (ApprovalError, PreTradeCheckFailed) as exc:
            rec.notes.append(f"allocation {aid[:12]} not executed: {exc}")
            return
        rec.entered = sum(1 for s in report.strategies if s.state == "OPEN")
        failed = [s for s in report.strategies if s.state != "OPEN"]
        if failed:
            rec.notes.append(f"{len(failed)} of {len(report.strategies)} positions not opened: "
                             + "; ".join(f"{s.symbol} {s.state} ({(s.reason or '')[:80]})" for s in failed[:3]))

    # -- marking ----------------------------------------------------------------------------------
    def _mark(self, rec: SessionRecord, day: dt.date) -> None:
        flow, fees = account_cash(self.wh)
        rec.cash = self.cfg.capital + flow - fees
        legs = open_legs(self.wh)
        value = 0.0
        if legs.height:
            sq = ms.session_quotes(self.wh, day, legs.get_column("symbol").unique().to_list())
            q = sq.quotes.select("security_id", "bid", "ask", "ltp")
            mids = {r["security_id"]: _mark_price(r) for r in q.iter_rows(named=True)}
            for r in legs.iter_rows(named=True):
                sid = r["security_id"]
                px = mids.get(sid)
                if px is None:
                    rec.unmarked += 1
                    px = self.marks.get(sid, float(r["average_price"] or 0.0))
                self.marks[sid] = px
                value += int(r["quantity"]) * px
            rec.open_strategies = legs.select("allocation_id", "position_id").unique().height
        rec.open_value = value
        rec.equity = rec.cash + value


def _mark_price(r: dict) -> float | None:
    bid, ask, ltp = r["bid"], r["ask"], r["ltp"]
    if bid is not None and ask is not None and bid > 0 and ask > 0:
        return (bid + ask) / 2.0
    if ltp is not None and ltp > 0:
        return float(ltp)
    return None
