"""F&O bhavcopies: legacy ``foDDMONYYYYbhav.csv`` (``fo_bhav``) and UDiFF ``BhavCopy_NSE_FO_*.csv``
(``fo_udiff``, plain or inside a ``.zip``).

OI is in **shares** in both (legacy ``OPEN_INT``/``CHG_IN_OI``, UDiFF ``OpnIntrst``/``ChngInOpnIntrst``:
multiples of ``NewBrdLotQty``) and divided by the lot size in :func:`chain_frame`; volume (``CONTRACTS``,
``TtlTradgVol``) is already in contracts. Legacy rows with ``CONTRACTS`` = 0 carry a stale ``CLOSE``:
``close`` keeps it, ``ltp`` is null; UDiFF ``LastPric`` 0 (no trade) -> null.
"""

from __future__ import annotations

import datetime as dt
import threading

import polars as pl

from .common import CLOSE_TIME, DAY_SCHEMA, IST, SRC_FO_BHAV, SRC_UDIFF, NseFile, bad, dates, num, read_csv

LEGACY_COLS = ("INSTRUMENT", "SYMBOL", "EXPIRY_DT", "STRIKE_PR", "OPTION_TYP", "OPEN", "HIGH", "LOW", "CLOSE",
               "CONTRACTS", "VAL_INLAKH", "OPEN_INT", "CHG_IN_OI", "TIMESTAMP")
UDIFF_COLS = ("TradDt", "FinInstrmTp", "FinInstrmId", "TckrSymb", "XpryDt", "StrkPric", "OptnTp", "OpnPric",
              "HghPric", "LwPric", "ClsPric", "LastPric", "UndrlygPric", "OpnIntrst", "ChngInOpnIntrst",
              "TtlTradgVol", "TtlTrfVal", "NewBrdLotQty")


class Bhavcopies:
    """Parsed F&O bhavcopies, each parsed once (``lock`` is shared with the provider's other caches)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._cache: dict[str, pl.DataFrame] = {}

    def get(self, f: NseFile) -> pl.DataFrame:
        with self._lock:
            if f.name not in self._cache:
                self._cache[f.name] = parse_fo(f)
            return self._cache[f.name]


def parse_fo(f: NseFile) -> pl.DataFrame:
    """A bhavcopy as rows: symbol, instrument (OPT/FUT), expiry, strike, option_type, open/high/low,
    close, ltp, volume (contracts), oi_sh / oi_chg_sh (shares), turnover (INR), underlying, lot,
    security_id."""
    df = read_csv(f)
    n = f.name
    if f.kind == "fo_bhav":
        inst = df.get_column("INSTRUMENT").str.strip_chars().str.to_uppercase()
        keep = inst.is_in(["OPTIDX", "OPTSTK", "FUTIDX", "FUTSTK"])
        df, inst = df.filter(keep), inst.filter(keep)
        sessions = dates(df, "TIMESTAMP", n).unique().drop_nulls()
        vol = num(df, "CONTRACTS", n, "volume")
        close = num(df, "CLOSE", n, "close")
        out = pl.DataFrame([
            df.get_column("SYMBOL").str.strip_chars().str.to_uppercase().alias("symbol"),
            inst.str.slice(0, 3).alias("instrument"),
            dates(df, "EXPIRY_DT", n, "expiry"),
            num(df, "STRIKE_PR", n, "strike"),
            df.get_column("OPTION_TYP").str.strip_chars().str.to_uppercase().alias("option_type"),
            num(df, "OPEN", n, "open"), num(df, "HIGH", n, "high"), num(df, "LOW", n, "low"),
            close.alias("close"),
            close.alias("ltp"),
            vol,
            num(df, "OPEN_INT", n, "oi_sh"),
            num(df, "CHG_IN_OI", n, "oi_chg_sh"),
            (num(df, "VAL_INLAKH", n) * 1e5).alias("turnover"),
            pl.Series("underlying", [None] * df.height, dtype=pl.Float64),
            pl.Series("lot", [None] * df.height, dtype=pl.Int64),
            pl.Series("security_id", [None] * df.height, dtype=pl.Utf8),
        ]).with_columns(pl.when(pl.col("volume") > 0).then(pl.col("close")).alias("ltp"))
    else:
        tp = df.get_column("FinInstrmTp").str.strip_chars().str.to_uppercase()
        keep = tp.is_in(["IDO", "STO", "IDF", "STF"])
        df, tp = df.filter(keep), tp.filter(keep)
        sessions = dates(df, "TradDt", n).unique().drop_nulls()
        lot = num(df, "NewBrdLotQty", n, "lot")
        if (lot.fill_null(0) <= 0).any():
            raise bad(f"{n}: NewBrdLotQty must be a positive number on every row", n, "NewBrdLotQty")
        ltp = num(df, "LastPric", n, "ltp")
        out = pl.DataFrame([
            df.get_column("TckrSymb").str.strip_chars().str.to_uppercase().alias("symbol"),
            tp.replace_strict({"IDO": "OPT", "STO": "OPT", "IDF": "FUT", "STF": "FUT"}).alias("instrument"),
            dates(df, "XpryDt", n, "expiry"),
            num(df, "StrkPric", n, "strike").fill_null(0.0),
            df.get_column("OptnTp").str.strip_chars().str.to_uppercase().fill_null("XX").alias("option_type"),
            num(df, "OpnPric", n, "open"), num(df, "HghPric", n, "high"), num(df, "LwPric", n, "low"),
            num(df, "ClsPric", n, "close"),
            ltp,
            num(df, "TtlTradgVol", n, "volume"),
            num(df, "OpnIntrst", n, "oi_sh"),
            num(df, "ChngInOpnIntrst", n, "oi_chg_sh"),
            num(df, "TtlTrfVal", n, "turnover"),
            num(df, "UndrlygPric", n, "underlying"),
            lot.cast(pl.Int64),
            df.get_column("FinInstrmId").str.strip_chars().alias("security_id"),
        ])
    if sessions.len() > 1 or (sessions.len() == 1 and f.session and sessions[0] != f.session):
        raise bad(f"{n}: rows of several trade dates {sessions.sort().to_list()[:3]}", n,
                  "TIMESTAMP" if f.kind == "fo_bhav" else "TradDt")
    for col in ("symbol", "expiry"):
        if out.get_column(col).null_count():
            raise bad(f"{n}: rows without {col}", n, col)
    return out.with_columns(
        pl.when(pl.col(c) == 0).then(None).otherwise(pl.col(c)).alias(c) for c in ("close", "ltp")
    )


def options(fo: pl.DataFrame, exclude: set[str]) -> pl.DataFrame:
    """The option rows of a parsed bhavcopy, without the symbols in ``exclude``."""
    return fo.filter((pl.col("instrument") == "OPT") & ~pl.col("symbol").is_in(list(exclude)))


def udiff_lots_and_spot(opts: pl.DataFrame, f: NseFile) -> pl.DataFrame:
    """A UDiFF's own lot (``NewBrdLotQty``) and underlying price (``UndrlygPric``) on its option rows."""
    return opts.with_columns(pl.col("lot").alias("lot_size"), pl.lit("udiff").alias("lot_source"),
                             pl.lit(f.name).alias("lot_file"), pl.col("underlying").alias("underlying_price"),
                             pl.lit("udiff").alias("underlying_source"))


def chain_frame(opts: pl.DataFrame, fo: pl.DataFrame, f: NseFile, session: dt.date) -> pl.DataFrame:
    """Option rows that carry lot_size/lot_source/lot_file and underlying_price/underlying_source as a
    :data:`DAY_SCHEMA` chain: OI in contracts, the same-expiry future's close, no quotes, 15:30 IST."""
    futs = fo.filter(pl.col("instrument") == "FUT").group_by("symbol", "expiry").agg(
        pl.col("close").first().alias("futures_price"))
    src = SRC_UDIFF if f.kind == "fo_udiff" else SRC_FO_BHAV
    lot = pl.col("lot_size").cast(pl.Float64)
    return opts.join(futs, on=["symbol", "expiry"], how="left").with_columns(
        pl.lit(session).alias("trade_date"),
        pl.lit(None, pl.Float64).alias("bid"), pl.lit(None, pl.Float64).alias("ask"),
        pl.lit(None, pl.Float64).alias("bid_qty"), pl.lit(None, pl.Float64).alias("ask_qty"),
        (pl.col("oi_sh") / lot).alias("oi"),
        (pl.col("oi_chg_sh") / lot).alias("oi_change"),
        pl.lit(None, pl.Float64).alias("exchange_iv"),
        pl.lit(dt.datetime.combine(session, CLOSE_TIME, tzinfo=IST).astimezone(dt.UTC),
               dtype=pl.Datetime("us", "UTC")).alias("snapshot_ts"),
        pl.lit(src).alias("source"),
        pl.lit(f.name).alias("chain_file"),
    ).select(list(DAY_SCHEMA))


def near_futures(fo: pl.DataFrame, session: dt.date) -> dict[str, tuple[dt.date, float]]:
    """Per symbol: (expiry, close) of its nearest future expiring on or after ``session`` with a close."""
    fut = (fo.filter((pl.col("instrument") == "FUT") & (pl.col("expiry") >= session) & pl.col("close").is_not_null())
           .sort("expiry").group_by("symbol", maintain_order=True).agg(pl.col("expiry").first(),
                                                                       pl.col("close").first()))
    return {s: (e, c) for s, e, c in fut.iter_rows()}
