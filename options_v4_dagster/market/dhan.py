"""Live market data from Dhan through the official ``dhanhq`` SDK (2.3.0): :class:`DhanProvider`.

Construct with :meth:`DhanProvider.from_env` (``DHAN_CLIENT_ID``, ``DHAN_ACCESS_TOKEN``, optional
``DHAN_API_BASE_URL``) or directly with ``DhanProvider(client_id, access_token, base_url=...)``.
The token is handed to the SDK and never logged, shown in ``repr`` or put in an error message.

Units (Dhan -> :data:`~options_v4_dagster.market.base.CHAIN_SCHEMA`):

- Dhan's option chain gives ``oi``, ``previous_oi``, ``volume`` and the top-of-book quantities in
  **shares** (multiples of the lot size: NIFTY ``oi`` 3786445 = 58253 x 65). ``oi``, ``volume`` and
  ``oi_change`` are divided by the universe's lot size to give **contracts**, as NSE's chain shows
  them (fractional if Dhan's lot differs from the universe's). ``bid_qty``/``ask_qty`` stay in
  shares, as NSE's ``bidQty``/``askQty`` are.
- ``implied_volatility`` is in percent -> ``exchange_iv`` as a fraction; 0 -> null.
- ``top_bid_price``/``top_ask_price``/``last_price`` of 0 mean "none" -> null.
- ``close`` and ``futures_price`` are null (the live chain has neither; ``previous_close_price`` is
  the previous session's).
- ``snapshot_ts`` is the time of the request (the chain is live), ``underlying_price`` Dhan's
  ``last_price`` of the underlying.

Dhan only serves the *live* option chain: asking for any session other than the current one
raises :class:`DataUnavailable` unless ``allow_stale=True`` (then the live chain is labelled with
the requested session; ``snapshot_ts`` still tells when it was taken).

Transport (:mod:`.dhan_client`, shared with any other Dhan API): requests are spaced to Dhan's
published limits (data APIs 5/s -> 0.2 s apart; the option chain once per 3 s for the same underlying
and expiry, or for any option chain with ``chain_scope="global"``; spaced 3.05 s, since exactly
3.000 s was answered 429 at 2.999 s on Dhan's clock), transient failures are retried with back-off,
every failure is a typed error, an empty chain is :class:`DataUnavailable` (never an empty frame),
and a circuit breaker fails fast after ``circuit_failures`` consecutive connection failures.

Market quotes (:meth:`DhanProvider.quotes`, POST ``/marketfeed/quote|ltp|ohlc`` through the SDK's
``quote_data`` / ``ticker_data`` / ``ohlc_data``) come as a frame of :data:`QUOTE_SCHEMA`, one row per
instrument Dhan answered for. At most 1000 instruments go in one request and quote requests are
spaced 1 s apart (Dhan's published quote limit, a throttle key of its own apart from the 5/s of the
other data APIs). Ids Dhan leaves out of its answer (unknown or expired contracts) are simply absent
from the frame, and a warning naming them is logged; no error is raised for them. Prices of 0
(``last_price``, ``ohlc``, depth) mean "none" -> null, and a null bid/ask nulls its quantity;
``volume``/``oi`` are as Dhan gives them (shares for F&O). ``last_trade_time`` (Dhan's
``DD/MM/YYYY HH:MM:SS`` IST, only in the ``quote`` answer; its ``01/01/1980`` placeholder means
"never traded") and ``fetched_at`` (when the answer came) are tz-aware UTC.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from .. import calendar, universe
from ..errors import CircuitOpen, ConfigError, DataError, DataUnavailable, ProviderError
from .base import Failure, MarketDataProvider, empty_chain, normalize_bars, normalize_chain
from .dhan_client import PROVIDER, DhanClient, Throttle
from .dhan_frames import QUOTE_SCHEMA, bars_frame, chain_frame, quote_row, quote_segment
from .instruments import read_scrip_master, scrip_master_instruments

if TYPE_CHECKING:
    from ..trading.rules import FreezeLimits

__all__ = ["CHAIN_INTERVAL", "IST", "QUOTE_BATCH_MAX", "QUOTE_METHODS", "QUOTE_SCHEMA", "QUOTE_SEGMENTS",
           "CircuitOpen", "DhanProvider", "Throttle"]

log = logging.getLogger(__name__)

IST = calendar.IST
MARKET_OPEN = dt.time(9, 15)
#: India VIX on Dhan (scrip master: NSE, I, 21, INDEX, "INDIA VIX").
VIX_INSTRUMENT = ("21", "IDX_I", "INDEX")

#: Dhan v2 exchange segments accepted by the market quote APIs.
QUOTE_SEGMENTS = frozenset({"IDX_I", "NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "BSE_FNO", "BSE_CURRENCY",
                            "MCX_COMM"})
#: quote mode -> SDK method (POST /marketfeed/quote, /ltp, /ohlc).
QUOTE_METHODS = {"quote": "quote_data", "ltp": "ticker_data", "ohlc": "ohlc_data"}
#: Dhan's published cap on instruments in one market quote request.
QUOTE_BATCH_MAX = 1000

#: Dhan's option-chain limit is one request per 3 s; exactly 3.000 s was answered 429 (at 2.999 s on
#: Dhan's clock), so requests are spaced with a small margin.
CHAIN_INTERVAL = 3.05
#: the forms of the scrip master the SDK's ``fetch_security_list`` downloads
SCRIP_MASTER_MODES = ("compact", "detailed")


class DhanProvider(DhanClient, MarketDataProvider):
    """Option chains, expiries, daily bars and market quotes from Dhan (see the module docstring)."""

    name = PROVIDER

    def __init__(
        self,
        client_id: str,
        access_token: str,
        *,
        chain_interval: float = CHAIN_INTERVAL,
        quote_interval: float = 1.0,
        quote_batch_size: int = QUOTE_BATCH_MAX,
        chain_scope: str = "expiry",
        allow_stale: bool = False,
        scrip_master_mode: str = "detailed",
        now: Callable[[], dt.datetime] | None = None,
        **transport: Any,
    ) -> None:
        """``transport``: the :class:`~.dhan_client.DhanClient` settings (base_url, timeouts, circuit,
        retries, data_interval, clock, sleep)."""
        super().__init__(client_id, access_token, **transport)
        if chain_scope not in ("expiry", "global"):
            raise ConfigError(f"chain_scope must be 'expiry' or 'global', not {chain_scope!r}")
        if scrip_master_mode not in SCRIP_MASTER_MODES:
            raise ConfigError(f"scrip_master_mode must be one of {SCRIP_MASTER_MODES}, not {scrip_master_mode!r}")
        if not 1 <= quote_batch_size <= QUOTE_BATCH_MAX:
            raise ConfigError(f"quote_batch_size must be between 1 and {QUOTE_BATCH_MAX}, not {quote_batch_size}")
        self.chain_interval = chain_interval
        #: spacing of market quote requests (Dhan: 1 request/s) and instruments per request (<= 1000)
        self.quote_interval = quote_interval
        self.quote_batch_size = quote_batch_size
        #: "expiry": ``chain_interval`` between requests for the same underlying and expiry (Dhan's
        #: "one unique request every 3 seconds"); "global": between any two option-chain requests.
        self.chain_scope = chain_scope
        self.allow_stale = allow_stale
        #: which scrip master :meth:`instruments` downloads ("detailed" names each contract's underlying)
        self.scrip_master_mode = scrip_master_mode
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    # --- instruments -------------------------------------------------------------------

    def symbols_for(self, session: dt.date, universe_symbols: Iterable[str]) -> list[str]:
        out = []
        for sym in universe_symbols:
            try:
                if universe.get(sym).dhan_security_id:
                    out.append(sym)
            except DataError:
                continue
        return out

    def _underlying(self, symbol: str) -> universe.Underlying:
        und = universe.get(symbol)
        if not und.dhan_security_id or not und.dhan_segment:
            raise DataUnavailable("no Dhan security id in the universe table", symbol=symbol, field="dhan_security_id",
                                  source=PROVIDER)
        return und

    def _bars_instrument(self, symbol: str) -> tuple[str, str, str]:
        if symbol == universe.VIX_SYMBOL:
            return VIX_INSTRUMENT
        und = self._underlying(symbol)
        instrument = "INDEX" if und.dhan_segment == "IDX_I" else "EQUITY"
        return und.dhan_security_id, und.dhan_segment, instrument

    def live_session(self) -> dt.date:
        """The session whose chain Dhan serves now: today from 09:15 IST on a session day, else the previous one."""
        now = self._now().astimezone(IST)
        today = now.date()
        if calendar.is_session(today) and now.time() >= MARKET_OPEN:
            return today
        return calendar.previous_session(today)

    def _live_only(self, session: dt.date, what: str, symbol: str | None = None) -> None:
        live = self.live_session()
        if session != live and not self.allow_stale:
            raise DataUnavailable(
                f"Dhan serves only the live {what} (session {live}); use the nse_files source for past "
                "sessions or allow_stale=True to label the live one with this session",
                symbol=symbol, session=session, source=PROVIDER)

    # --- the scrip master ----------------------------------------------------------------

    def fetch_scrip_master(self, folder: Path, mode: str | None = None) -> Path:
        """Download Dhan's scrip master (``mode``: compact / detailed, default :attr:`scrip_master_mode`)
        with the SDK's static ``fetch_security_list(mode, filename)`` into ``folder``; the file's path.
        The SDK swallows every failure (it logs it and returns None): a download that left no file is a
        :class:`ProviderError`; a file the SDK could not read is left to :func:`read_scrip_master`,
        which names what is wrong with it."""
        from dhanhq import Security

        mode = mode or self.scrip_master_mode
        path = Path(folder) / f"dhan_scrip_master_{mode}.csv"
        path.unlink(missing_ok=True)
        url = getattr(Security, f"{mode.upper()}_CSV_URL", "?")
        Security.fetch_security_list(mode, filename=str(path))
        if not path.is_file() or path.stat().st_size == 0:
            raise ProviderError(f"the {mode} scrip master could not be downloaded from {url} (the SDK's "
                                "fetch_security_list logged why)", provider=PROVIDER, retryable=True)
        return path

    def instruments(self, symbols: Iterable[str], session: dt.date, *, horizon_days: int = 90,
                    freeze: FreezeLimits | None = None) -> tuple[pl.DataFrame, list[Failure]]:
        """The live session's contracts of ``symbols`` from Dhan's scrip master (see
        :func:`~.instruments.scrip_master_instruments`): options and futures expiring within
        ``horizon_days`` and the underlyings' index / equity rows. A past session is
        :class:`DataUnavailable` unless ``allow_stale`` (the scrip master lists today's contracts)."""
        self._live_only(session, "scrip master")
        symbols = list(symbols)
        with tempfile.TemporaryDirectory(prefix="options_v4_scrip_") as tmp:
            path = self.fetch_scrip_master(Path(tmp))
            raw = read_scrip_master(path)
            name = f"Dhan {self.scrip_master_mode} scrip master"
            try:
                out = scrip_master_instruments(raw, session=session, symbols=symbols, horizon_days=horizon_days,
                                               freeze=freeze, source=PROVIDER, file=str(path))
            except DataError as exc:  # name the download, not the temporary file
                raise DataError(exc.reason.replace(path.name, name), field=exc.field, session=session,
                                source=name) from exc
        served = set(out.filter(pl.col("exchange_segment") == "NSE_FNO").get_column("symbol").to_list())
        missing = [Failure(s, "instruments", f"the {name} lists no option or future of {s} expiring by "
                           f"{session + dt.timedelta(days=horizon_days)}", kind="missing")
                   for s in symbols if s.upper() not in served]
        return out, missing

    # --- data --------------------------------------------------------------------------

    def expiry_list(self, symbol: str) -> list[dt.date]:
        """Expiries Dhan lists now for ``symbol``'s options, sorted."""
        sym = symbol.upper()
        und = self._underlying(sym)
        data = self.call(f"expiry list {sym}", self._dhan.expiry_list, int(und.dhan_security_id),
                         und.dhan_segment, symbol=sym)
        raw = data.get("data") if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise DataError("Dhan's expiry list answer has no data list", symbol=sym, field="data", source=PROVIDER)
        if not raw:
            raise DataUnavailable("Dhan lists no option expiries", symbol=sym, field="expiry", source=PROVIDER)
        try:
            return sorted({dt.date.fromisoformat(str(x)[:10]) for x in raw})
        except ValueError:
            raise DataError(f"Dhan's expiry list has a date that is not YYYY-MM-DD: {raw[:3]!r}", symbol=sym,
                            field="expiry", source=PROVIDER) from None

    def option_chains(self, symbols: Iterable[str], session: dt.date, *, horizon_days: int = 90):
        """As the base class (one symbol's failure is recorded), except that an open circuit stops the loop:
        Dhan is unreachable, so the step fails with that one error instead of a failure row per symbol."""
        frames, failures = [], []
        for sym in symbols:
            try:
                frames.append(self.option_chain(sym, session, horizon_days=horizon_days))
            except CircuitOpen:
                raise
            except (DataError, ProviderError) as exc:
                failures.append(Failure.from_exception(sym, "option_chain", exc))
        return (pl.concat(frames, how="vertical") if frames else empty_chain()), failures

    def option_chain(self, symbol: str, session: dt.date, *, horizon_days: int = 90) -> pl.DataFrame:
        sym = symbol.upper()
        und = self._underlying(sym)
        self._live_only(session, "option chain", sym)
        limit = session + dt.timedelta(days=horizon_days)
        expiries = [e for e in self.expiry_list(sym) if session <= e <= limit]
        if not expiries:
            raise DataUnavailable(f"Dhan lists no expiry within {horizon_days} days", symbol=sym, session=session,
                                  field="expiry", source=PROVIDER)
        snapshot = self._now().astimezone(dt.UTC)
        frames = [self._chain_for_expiry(sym, und, expiry, session, snapshot) for expiry in expiries]
        return normalize_chain(pl.concat(frames, how="vertical"), symbol=sym, session=session)

    def _chain_for_expiry(self, sym: str, und: universe.Underlying, expiry: dt.date, session: dt.date,
                          snapshot: dt.datetime) -> pl.DataFrame:
        what = f"option chain {sym} {expiry.isoformat()}"
        key = ("optionchain",) if self.chain_scope == "global" else (
            "optionchain", und.dhan_security_id, und.dhan_segment, expiry)
        data = self.call(what, self._dhan.option_chain, int(und.dhan_security_id), und.dhan_segment,
                         expiry.isoformat(), symbol=sym, session=session,
                         slots=[("data-api", self.data_interval), (key, self.chain_interval)])
        return chain_frame(data, what, sym, und, expiry, session, snapshot)

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Daily OHLCV in [start, end] (Dhan's ``toDate`` is exclusive, so end + 1 day is asked)."""
        sym = symbol.upper()
        if end < start:
            raise ValueError(f"daily_bars: end {end} is before start {start}")
        security_id, segment, instrument = self._bars_instrument(sym)
        data = self.call(f"daily bars {sym} {start}..{end}", self._dhan.historical_daily_data, security_id,
                         segment, instrument, start.isoformat(), (end + dt.timedelta(days=1)).isoformat(),
                         symbol=sym)
        return normalize_bars(bars_frame(data, sym, start, end), symbol=sym)

    # --- market quotes -------------------------------------------------------------------

    def quotes(self, security_ids: Sequence[str], segment: str = "NSE_FNO", mode: str = "quote") -> pl.DataFrame:
        """Market quotes for ``security_ids`` of one exchange ``segment`` as a :data:`QUOTE_SCHEMA` frame.

        ``mode``: ``"quote"`` (LTP, OHLC, top of the 5-level depth, volume, OI, last trade time),
        ``"ohlc"`` (LTP and OHLC) or ``"ltp"``; columns a mode does not give are null. Ids are
        de-duplicated and sent in batches of at most ``quote_batch_size`` (1000), 1 s apart. Rows follow
        the order of the request; ids missing from Dhan's answer are left out and logged as a warning.
        Failures are typed errors as for the other calls (no partial frame).
        """
        if mode not in QUOTE_METHODS:
            raise ValueError(f"quotes: mode must be one of {sorted(QUOTE_METHODS)}, not {mode!r}")
        if segment not in QUOTE_SEGMENTS:
            raise ValueError(f"quotes: unknown Dhan exchange segment {segment!r} (one of {sorted(QUOTE_SEGMENTS)})")
        if isinstance(security_ids, str | bytes):
            raise TypeError("quotes: security_ids must be a sequence of ids, not one string")
        ids: list[str] = []
        for raw in security_ids:
            sid = str(raw).strip()
            if not sid.isdigit():
                raise ValueError(f"quotes: security id {raw!r} is not a number")
            sid = str(int(sid))
            if sid not in ids:
                ids.append(sid)
        if not ids:
            return pl.DataFrame(schema=QUOTE_SCHEMA)

        method = QUOTE_METHODS[mode]
        size = self.quote_batch_size
        rows: list[dict[str, Any]] = []
        missing: list[str] = []
        for start in range(0, len(ids), size):
            batch = ids[start:start + size]
            what = f"market {mode} {segment} ({len(batch)} instruments)"
            data = self.call(what, lambda b=batch: getattr(self._dhan, method)({segment: [int(x) for x in b]}),
                             slots=[("quote-api", self.quote_interval)])
            fetched = self._now().astimezone(dt.UTC)
            answered = quote_segment(data, what, segment)
            for sid in batch:
                item = answered.get(sid)
                if item is None:
                    missing.append(sid)
                    continue
                if not isinstance(item, dict):
                    raise DataError(f"{what}: the quote of {sid} is not an object", symbol=f"{segment}:{sid}",
                                    field="data", source=PROVIDER)
                rows.append(quote_row(item, sid, segment, fetched))
        if missing:
            shown = ", ".join(missing[:20]) + (", ..." if len(missing) > 20 else "")
            log.warning("dhan market %s %s: %d of %d requested ids not in the answer (unknown or expired): %s",
                        mode, segment, len(missing), len(ids), shown)
        return pl.DataFrame(rows, schema=QUOTE_SCHEMA, orient="row") if rows else pl.DataFrame(schema=QUOTE_SCHEMA)
