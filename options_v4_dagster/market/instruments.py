"""Instruments: every tradable contract of a session as the broker and the exchange define it — security
id, exchange segment, underlying, instrument type, expiry, strike, option type, lot size, tick size
(INR) and freeze quantity — the rows of table ``instruments`` (the original system's
``import_scrip_master.py``). No Dagster here.

Two ways in:

* **Dhan's scrip master** (:func:`read_scrip_master`, then :func:`scrip_master_instruments`), in both
  forms Dhan publishes (the SDK's ``fetch_security_list('compact' | 'detailed')``): the compact CSV
  (``SEM_EXM_EXCH_ID, SEM_SEGMENT, SEM_SMST_SECURITY_ID, SEM_INSTRUMENT_NAME, ... SEM_TICK_SIZE``) and
  the detailed CSV (``EXCH_ID, SEGMENT, SECURITY_ID, ..., UNDERLYING_SYMBOL, ..., LOT_SIZE,
  SM_EXPIRY_DATE, STRIKE_PRICE, OPTION_TYPE, TICK_SIZE, ...``), comma or tab separated (the form is
  told by the header). Kept: NSE options and futures (OPTIDX, OPTSTK, FUTIDX, FUTSTK) of the
  session's underlyings within the horizon, and the underlyings' own rows (INDEX, EQUITY series EQ).
  The compact form has no underlying column: it is the trading symbol without its
  ``-Mon2025-...`` suffix (``BAJAJ-AUTO-Jul2025-9000-CE`` -> ``BAJAJ-AUTO``).
* **A session's option chain** (:func:`chain_instruments`, the simulated and nse_files sources): one
  row per chain contract, security id = the chain's (else :func:`~..trading.quotes.contract_key`),
  lot size from the chain, tick 0.05 (NSE's option tick), segment NSE_FNO.

Units. Dhan's ``TICK_SIZE`` / ``SEM_TICK_SIZE`` is in **paise**: BANKNIFTY options carry 5 (NSE's
option tick is INR 0.05), BANKNIFTY futures 20 (INR 0.20), the BANKNIFTY index row 1; in the compact
sample NSE equities carry 1/5/10/50/100/500, NSE's price-band ticks INR 0.01..5.00 (IDEA ~8 -> 1,
SBIN ~820 -> 5, RELIANCE ~1,400 -> 10, MRF ~1.4 lakh -> 500). ``tick_size`` here is that / 100 (INR).
Index rows (not tradable) disagree (0.05 in the compact sample, 1 in the detailed one): their
``tick_size`` is null. Expiry dates are read as
``YYYY-MM-DD[ HH:MM:SS]`` or ``M/D/YYYY`` (the detailed sample was saved that way); ``0001-01-01`` is
"none". Strikes of futures (``-0.01``) and option types of non-options (``XX``) are stored as null.
Freeze quantities: the scrip master has none, so every source takes them from
:class:`~..trading.rules.FreezeLimits` (``config/freeze_limits.yaml``) per underlying and lot size.

Errors: a scrip master that cannot be read, lacks a column, or has a kept row whose field cannot be
read (a non-numeric lot, an unreadable expiry, a non-positive tick, ...) is a :class:`DataError` naming
the file (``source``), the line (header = line 1) and the column (``field``). Duplicate
(security_id, exchange_segment) rows are one too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from ..errors import ConfigError, DataError
from ..trading.broker import OrderRejected
from ..trading.quotes import contract_key_expr
from ..trading.rules import TICK_SIZE, FreezeLimits, load_freeze_limits
from ..universe import INDEX_SYMBOLS

__all__ = ["COMPACT", "DETAILED", "INSTRUMENTS_SCHEMA", "OPTION_TYPES", "chain_instruments", "empty_instruments",
           "read_scrip_master", "scrip_master_instruments", "with_freeze_quantities"]

INSTRUMENTS_SCHEMA: dict[str, pl.DataType] = {
    "trade_date": pl.Date,
    "security_id": pl.Utf8,
    "exchange_segment": pl.Utf8,  # Dhan v2 segment: NSE_FNO, NSE_EQ, IDX_I
    "symbol": pl.Utf8,  # the underlying
    "instrument_type": pl.Utf8,  # OPTIDX, OPTSTK, FUTIDX, FUTSTK, INDEX, EQUITY
    "expiry": pl.Date,
    "strike": pl.Float64,
    "option_type": pl.Utf8,  # CE / PE; null for futures and underlyings
    "lot_size": pl.Int64,  # shares
    "tick_size": pl.Float64,  # INR; null for an index
    "freeze_quantity": pl.Int64,  # shares; null for underlyings
    "trading_symbol": pl.Utf8,
    "source": pl.Utf8,
}
OPTION_TYPES = ("CE", "PE")
DERIVATIVES = ("OPTIDX", "OPTSTK", "FUTIDX", "FUTSTK")
UNDERLYINGS = ("INDEX", "EQUITY")

#: scrip-master column -> our name, per form (``underlying`` absent from the compact form)
COMPACT = {"exch": "SEM_EXM_EXCH_ID", "segment": "SEM_SEGMENT", "security_id": "SEM_SMST_SECURITY_ID",
           "instrument": "SEM_INSTRUMENT_NAME", "trading_symbol": "SEM_TRADING_SYMBOL", "lot": "SEM_LOT_UNITS",
           "expiry": "SEM_EXPIRY_DATE", "strike": "SEM_STRIKE_PRICE", "option_type": "SEM_OPTION_TYPE",
           "tick": "SEM_TICK_SIZE", "series": "SEM_SERIES"}
DETAILED = {"exch": "EXCH_ID", "segment": "SEGMENT", "security_id": "SECURITY_ID", "instrument": "INSTRUMENT",
            "underlying": "UNDERLYING_SYMBOL", "trading_symbol": "SYMBOL_NAME", "lot": "LOT_SIZE",
            "expiry": "SM_EXPIRY_DATE", "strike": "STRIKE_PRICE", "option_type": "OPTION_TYPE", "tick": "TICK_SIZE",
            "series": "SERIES"}
#: (exchange, Dhan's one-letter segment) -> the v2 API's exchange segment
_SEGMENTS = {("NSE", "D"): "NSE_FNO", ("NSE", "E"): "NSE_EQ", ("NSE", "I"): "IDX_I"}
_NO_DATE = "0001-01-01"


def empty_instruments() -> pl.DataFrame:
    return pl.DataFrame(schema=INSTRUMENTS_SCHEMA)


# -- Dhan's scrip master ------------------------------------------------------------------------


def read_scrip_master(path: str | Path) -> pl.DataFrame:
    """The rows of a Dhan scrip master file as text, in our column names (:data:`COMPACT` /
    :data:`DETAILED` keys) plus ``line`` (the file's line number) and ``form`` ("compact" or
    "detailed"). DataError naming the file (and the column) when it cannot be read or a column is missing."""
    p = Path(path)
    try:
        with p.open("r", encoding="utf-8-sig", newline="") as fh:
            header = fh.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p.name}: cannot read the scrip master ({exc})", source=str(p)) from exc
    sep = "\t" if "\t" in header else ","
    names = [h.strip() for h in header.strip("\r\n").split(sep)]
    if "SEM_SMST_SECURITY_ID" in names:
        form, cols = "compact", COMPACT
    elif "SECURITY_ID" in names:
        form, cols = "detailed", DETAILED
    else:
        raise DataError(f"{p.name}: line 1 is not a Dhan scrip master header (neither the compact SEM_* columns nor "
                        f"the detailed SECURITY_ID, UNDERLYING_SYMBOL, ... columns): {header[:120]!r}",
                        source=str(p), field="SECURITY_ID")
    missing = [c for c in cols.values() if c not in names]
    if missing:
        raise DataError(f"{p.name}: the {form} scrip master has no column {missing[0]} (line 1)", source=str(p),
                        field=missing[0])
    try:
        raw = pl.read_csv(p, separator=sep, infer_schema=False, columns=list(cols.values()), quote_char='"',
                          encoding="utf8-lossy")
    except (pl.exceptions.PolarsError, OSError) as exc:  # ragged or badly quoted lines
        raise DataError(f"{p.name}: the {form} scrip master cannot be parsed: {str(exc).splitlines()[0][:300]}",
                        source=str(p)) from exc
    out = raw.select([pl.col(v).str.strip_chars().alias(k) for k, v in cols.items()]).with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias("line"), pl.lit(form).alias("form"))
    if form == "compact":
        ts = pl.col("trading_symbol")
        out = out.with_columns(pl.coalesce(ts.str.extract(r"^(.+)-[A-Za-z]{3}\d{4}-", 1), ts).alias("underlying"))
    return out


def _field_error(rows: pl.DataFrame, col: str, what: str, file: str, cols: dict[str, str]) -> DataError:
    r = rows.row(0, named=True)
    name = cols.get(col, col)
    return DataError(f"{Path(file).name}: line {r['line']}: {name} {what} (security id {r['security_id']!r}, "
                     f"{r['trading_symbol']!r}; {rows.height} such row(s))", source=file, field=name)


def _number(df: pl.DataFrame, col: str, file: str, cols: dict[str, str], *, required: pl.Expr) -> pl.Series:
    """``col`` as Float64; DataError naming the line when a row that needs it (``required``) has none or
    a non-number."""
    s = pl.col(col)
    t = df.with_columns(s.cast(pl.Float64, strict=False).alias("_v"))
    bad = t.filter(pl.col("_v").is_null() & s.is_not_null() & (s != ""))
    if bad.height:
        raise _field_error(bad, col, f"is not a number ({bad.get_column(col)[0]!r})", file, cols)
    absent = t.filter(required & pl.col("_v").is_null())
    if absent.height:
        raise _field_error(absent, col, "is empty", file, cols)
    return t.get_column("_v")


def _expiry(df: pl.DataFrame, file: str, cols: dict[str, str], *, required: pl.Expr) -> pl.Series:
    s = pl.col("expiry")
    blank = s.is_null() | (s == "") | s.str.starts_with(_NO_DATE)
    iso, us = s.str.contains(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$"), s.str.contains(r"^\d{1,2}/\d{1,2}/\d{4}$")
    parsed = pl.when(iso).then(s.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False)) \
        .when(us).then(s.str.strptime(pl.Date, "%m/%d/%Y", strict=False))
    t = df.with_columns(pl.when(blank).then(None).otherwise(parsed).alias("_d"), blank.alias("_blank"))
    bad = t.filter(pl.col("_d").is_null() & ~pl.col("_blank"))
    if bad.height:
        raise _field_error(bad, "expiry", f"is not a date ({bad.get_column('expiry')[0]!r})", file, cols)
    absent = t.filter(required & pl.col("_d").is_null())
    if absent.height:
        raise _field_error(absent, "expiry", "is empty", file, cols)
    return t.get_column("_d")


def scrip_master_instruments(raw: pl.DataFrame, *, session: dt.date, symbols: Iterable[str] | None = None,
                             horizon_days: int | None = None, freeze: FreezeLimits | None = None,
                             source: str = "dhan", file: str = "scrip master") -> pl.DataFrame:
    """The :data:`INSTRUMENTS_SCHEMA` rows of ``raw`` (:func:`read_scrip_master`) for ``session``: NSE
    options and futures of ``symbols`` (default every underlying) expiring in ``[session, session +
    horizon_days]`` (no upper bound without a horizon), and the underlyings' INDEX / EQUITY (series EQ)
    rows. Only these rows are validated (module docstring); DataError naming file, line and column."""
    cols = COMPACT if raw.height == 0 or raw.get_column("form")[0] == "compact" else DETAILED
    seg = pl.concat_str([pl.col("exch"), pl.col("segment")], separator="|").replace_strict(
        {f"{e}|{s}": v for (e, s), v in _SEGMENTS.items()}, default=None)
    df = raw.with_columns(pl.col("underlying").str.to_uppercase(), pl.col("instrument").str.to_uppercase(),
                          seg.alias("exchange_segment"))
    kind = pl.col("instrument")
    keep = ((kind.is_in(DERIVATIVES) & (pl.col("exchange_segment") == "NSE_FNO"))
            | ((kind == "INDEX") & (pl.col("exchange_segment") == "IDX_I"))
            | ((kind == "EQUITY") & (pl.col("exchange_segment") == "NSE_EQ") & (pl.col("series") == "EQ")))
    if symbols is not None:
        keep = keep & pl.col("underlying").is_in(sorted({s.upper() for s in symbols}))
    df = df.filter(keep)
    deriv = pl.col("instrument").is_in(DERIVATIVES)
    option = pl.col("instrument").str.starts_with("OPT")
    sid = df.filter(pl.col("security_id").is_null() | ~pl.col("security_id").str.contains(r"^\d+$"))
    if sid.height:
        raise _field_error(sid, "security_id", f"is not a number ({sid.get_column('security_id')[0]!r})", file, cols)
    df = df.with_columns(_expiry(df, file, cols, required=deriv).alias("expiry_d"))
    last = session + dt.timedelta(days=horizon_days) if horizon_days is not None else dt.date.max
    df = df.filter(~deriv | pl.col("expiry_d").is_between(session, last))
    df = df.with_columns(_number(df, "lot", file, cols, required=pl.lit(True)).alias("lot_f"),
                         _number(df, "tick", file, cols, required=pl.col("instrument") != "INDEX").alias("tick_f"),
                         _number(df, "strike", file, cols, required=option).alias("strike_f"))
    checks = [(df.filter((pl.col("lot_f") <= 0) | (pl.col("lot_f") != pl.col("lot_f").round(0))), "lot",
               "is not a positive whole number"),
              (df.filter((pl.col("instrument") != "INDEX") & (pl.col("tick_f") <= 0)), "tick", "is not positive"),
              (df.filter(option & (pl.col("strike_f") <= 0)), "strike", "is not positive"),
              (df.filter(option & ~pl.col("option_type").is_in(OPTION_TYPES)), "option_type", "is not CE or PE")]
    for rows, col, what in checks:
        if rows.height:
            raise _field_error(rows, col, f"{what} ({rows.get_column(col)[0]!r})", file, cols)
    out = df.select(
        pl.lit(session, pl.Date).alias("trade_date"), "security_id", "exchange_segment",
        pl.col("underlying").alias("symbol"), pl.col("instrument").alias("instrument_type"),
        pl.when(deriv).then(pl.col("expiry_d")).alias("expiry"),
        pl.when(option).then(pl.col("strike_f")).alias("strike"),
        pl.when(option).then(pl.col("option_type")).alias("option_type"),
        pl.col("lot_f").cast(pl.Int64).alias("lot_size"),
        pl.when(pl.col("instrument") != "INDEX").then((pl.col("tick_f") / 100.0).round(6)).alias("tick_size"),
        pl.lit(None, pl.Int64).alias("freeze_quantity"), "trading_symbol", pl.lit(source).alias("source"),
    )
    dup = out.select("security_id", "exchange_segment").is_duplicated()
    if dup.any():
        rows = df.filter(dup)
        raise _field_error(rows, "security_id", "appears twice in one segment", file, cols)
    return with_freeze_quantities(out, freeze)


# -- from a session's option chain ------------------------------------------------------------------


def chain_instruments(chain: pl.DataFrame, *, freeze: FreezeLimits | None = None, source: str | None = None,
                      tick_size: float = TICK_SIZE) -> pl.DataFrame:
    """One :data:`INSTRUMENTS_SCHEMA` row per contract of ``chain`` (``CHAIN_SCHEMA`` columns): the
    chain's security id (else the contract key), its lot size, ``tick_size`` (NSE's 0.05 for options),
    segment NSE_FNO, the freeze quantity of :func:`with_freeze_quantities`, ``source`` (default the
    chain's). DataError when two contracts share a security id."""
    if chain.height == 0:
        return empty_instruments()
    sid = pl.col("security_id").cast(pl.Utf8) if "security_id" in chain.columns else pl.lit(None, pl.Utf8)
    key = contract_key_expr()
    src = pl.lit(source) if source is not None else pl.col("source")
    out = chain.select(
        pl.col("trade_date"), pl.when(sid.is_null() | (sid == "")).then(key).otherwise(sid).alias("security_id"),
        pl.lit("NSE_FNO").alias("exchange_segment"), pl.col("symbol").str.to_uppercase().alias("symbol"),
        pl.when(pl.col("symbol").str.to_uppercase().is_in(INDEX_SYMBOLS)).then(pl.lit("OPTIDX"))
        .otherwise(pl.lit("OPTSTK")).alias("instrument_type"),
        "expiry", "strike", "option_type", pl.col("lot_size").cast(pl.Int64),
        pl.lit(float(tick_size)).alias("tick_size"), pl.lit(None, pl.Int64).alias("freeze_quantity"),
        key.alias("trading_symbol"), src.cast(pl.Utf8).alias("source"),
    )
    dup = out.get_column("security_id").is_duplicated()
    if dup.any():
        first = out.filter(dup).row(0, named=True)
        raise DataError(f"the option chain gives security id {first['security_id']!r} to {int(dup.sum())} contracts",
                        symbol=first["symbol"], session=first["trade_date"], field="security_id")
    return with_freeze_quantities(out, freeze)


def with_freeze_quantities(frame: pl.DataFrame, freeze: FreezeLimits | None = None) -> pl.DataFrame:
    """``frame`` with ``freeze_quantity`` of every derivative row set from ``freeze`` (default the
    packaged ``config/freeze_limits.yaml``) by underlying and lot size; null for underlyings.
    ConfigError when an index has no configured freeze quantity."""
    freeze = freeze or load_freeze_limits()
    deriv = pl.col("instrument_type").is_in(DERIVATIVES)
    pairs = frame.filter(deriv).select("symbol", "lot_size").unique()
    table = {}
    for sym, lot in pairs.iter_rows():
        try:
            table[f"{sym}|{lot}"] = freeze.freeze_quantity(sym, int(lot))
        except OrderRejected as exc:
            raise ConfigError(f"instruments: {exc}") from exc
    key = pl.concat_str([pl.col("symbol"), pl.col("lot_size").cast(pl.Utf8)], separator="|")
    fq = key.replace_strict(table, default=None, return_dtype=pl.Int64) if table else pl.lit(None, pl.Int64)
    return frame.with_columns(pl.when(deriv).then(fq).otherwise(None).cast(pl.Int64).alias("freeze_quantity")) \
        .select(list(INSTRUMENTS_SCHEMA)).cast(INSTRUMENTS_SCHEMA)
