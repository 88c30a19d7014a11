"""Implied volatility across whole chains: forwards, per-contract IV and greeks, ATM term structure.

Two IV conventions (DESIGN.md):
- ``forward``: Black-76 on the expiry's forward (futures price where the chain has one, else
  put-call parity over liquid strikes near the money), discounted at ``rate``; T = calendar time
  from the snapshot to 15:30 IST on expiry / 365. Used by every analytic.
- ``nse``: Black-Scholes on spot with r = 10%, the same T but at least one day (NSE shows
  expiry-day IVs with T = 1/365), solved from the last price. It reproduces the
  impliedVolatility NSE publishes.

Everything is vectorized over the chain (numpy/polars); the only Python loops are over
(symbol, expiry) groups, never over contracts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.special import ndtr

from .black import greeks_black76, implied_vol_black76, implied_vol_bsm

#: THE INR risk-free rate (continuously compounded) for forwards and discounting, about the 91-day T-bill /
#: MIBOR: the one definition every module (simulated market, sanity screen, IV settings) imports
DEFAULT_RATE = 0.065
NSE_RATE = 0.10  # the rate NSE states for its option-chain IVs
NSE_MIN_T = 1.0 / 365.0  # NSE's IVs on expiry day use one day (measured on 17-Jul-2025: 110 legs, median 24.0 h)
SECONDS_PER_YEAR = 365.0 * 86400.0
PARITY_STRIKES = 6  # strikes nearest the money used for the parity forward


@dataclass(frozen=True)
class IVConfig:
    rate: float = DEFAULT_RATE
    nse_rate: float = NSE_RATE
    max_spread_pct: float = 0.5  # a two-sided quote wider than this (of mid) is not used for IV


def year_fraction(snapshot_ts: pl.Expr, expiry: pl.Expr) -> pl.Expr:
    """Calendar years from the snapshot (UTC) to 15:30 IST on the expiry date."""
    expiry_close = expiry.cast(pl.Datetime("us")).dt.offset_by("10h").dt.replace_time_zone("UTC")
    return (expiry_close - snapshot_ts).dt.total_microseconds().cast(pl.Float64) / 1e6 / SECONDS_PER_YEAR


def with_prices(chain: pl.DataFrame, cfg: IVConfig = IVConfig()) -> pl.DataFrame:
    """Add ``mid`` (two-sided, sane quotes only), ``iv_price`` (mid, else LTP) and ``iv_price_kind``."""
    bid, ask = pl.col("bid"), pl.col("ask")
    two_sided = (bid > 0) & (ask > 0) & (bid <= ask) & ((ask - bid) <= cfg.max_spread_pct * (ask + bid) / 2)
    mid = pl.when(two_sided).then((bid + ask) / 2).otherwise(None)
    ltp = pl.when(pl.col("ltp") > 0).then(pl.col("ltp")).otherwise(None)
    return chain.with_columns(mid.alias("mid")).with_columns(
        pl.coalesce(pl.col("mid"), ltp).alias("iv_price"),
        pl.when(pl.col("mid").is_not_null()).then(pl.lit("mid"))
        .when(ltp.is_not_null()).then(pl.lit("ltp")).otherwise(None).alias("iv_price_kind"),
    )


def forwards(chain: pl.DataFrame, cfg: IVConfig = IVConfig()) -> pl.DataFrame:
    """One row per (symbol, expiry): T, discount factor, forward and how it was found.

    ``forward_method``: ``futures`` (the chain's futures price), ``parity`` (median of
    K + (C - P)/df over the strikes nearest the money with both sides priced), or ``carry``
    (spot x e^{rT}, when neither is available).
    """
    c = chain if "iv_price" in chain.columns else with_prices(chain, cfg)
    c = c.with_columns(year_fraction(pl.col("snapshot_ts"), pl.col("expiry")).alias("t_years"))
    base = c.group_by(["symbol", "expiry"]).agg(
        pl.col("t_years").first(),
        pl.col("underlying_price").first().alias("spot"),
        pl.col("futures_price").drop_nulls().first().alias("futures_price"),
    ).with_columns((-cfg.rate * pl.col("t_years").clip(lower_bound=0.0)).exp().alias("df"))
    calls = c.filter(pl.col("option_type") == "CE").select("symbol", "expiry", "strike", pl.col("iv_price").alias("c"))
    puts = c.filter(pl.col("option_type") == "PE").select("symbol", "expiry", "strike", pl.col("iv_price").alias("p"))
    pairs = (
        calls.join(puts, on=["symbol", "expiry", "strike"])
        .drop_nulls(["c", "p"])
        .join(base.select("symbol", "expiry", "spot", "df"), on=["symbol", "expiry"])
        .with_columns((pl.col("strike") + (pl.col("c") - pl.col("p")) / pl.col("df")).alias("f_k"),
                      (pl.col("strike") - pl.col("spot")).abs().alias("dist"))
        .sort("dist")
        .group_by(["symbol", "expiry"])
        .agg(pl.col("f_k").head(PARITY_STRIKES).median().alias("parity_forward"),
             pl.len().alias("parity_pairs"))
    )
    out = base.join(pairs, on=["symbol", "expiry"], how="left").with_columns(
        pl.when(pl.col("futures_price").is_not_null()).then(pl.col("futures_price"))
        .when(pl.col("parity_forward").is_not_null() & (pl.col("parity_forward") > 0)).then(pl.col("parity_forward"))
        .otherwise(pl.col("spot") * (cfg.rate * pl.col("t_years").clip(lower_bound=0.0)).exp())
        .alias("forward"),
        pl.when(pl.col("futures_price").is_not_null()).then(pl.lit("futures"))
        .when(pl.col("parity_forward").is_not_null() & (pl.col("parity_forward") > 0)).then(pl.lit("parity"))
        .otherwise(pl.lit("carry")).alias("forward_method"),
    )
    return out.select("symbol", "expiry", "t_years", "df", "spot", "forward", "forward_method").sort("symbol", "expiry")


def chain_iv(chain: pl.DataFrame, cfg: IVConfig = IVConfig()) -> pl.DataFrame:
    """Per contract: ``iv`` (forward convention, from mid else LTP), ``iv_nse`` (NSE convention,
    from LTP), Black-76 greeks at ``iv``, the forward used, and ``iv_reason`` when ``iv`` is null
    (``no_price``, ``expired``, ``at_intrinsic``, ``no_solution``: price outside the no-arbitrage bounds)."""
    c = with_prices(chain, cfg)
    fw = forwards(c, cfg)
    c = c.join(fw.select("symbol", "expiry", "t_years", "df", "forward", "forward_method"), on=["symbol", "expiry"],
               how="left")
    price = c.get_column("iv_price").to_numpy().astype(float)
    F = c.get_column("forward").to_numpy().astype(float)
    K = c.get_column("strike").to_numpy().astype(float)
    T = c.get_column("t_years").to_numpy().astype(float)
    df = c.get_column("df").to_numpy().astype(float)
    is_call = (c.get_column("option_type") == "CE").to_numpy()
    S = c.get_column("underlying_price").to_numpy().astype(float)
    ltp = c.get_column("ltp").to_numpy().astype(float)
    with np.errstate(all="ignore"):
        iv = implied_vol_black76(price, F, K, T, is_call, df)
        at_intrinsic = iv == 0.0  # sigma = 0 is exact for a price at intrinsic: no usable volatility
        iv = np.where(at_intrinsic, np.nan, iv)
        # NSE convention: a contract expiring today (15:30 close, T <= 0 but not past the day) counts one day
        t_nse = np.where(T > 0, np.maximum(T, NSE_MIN_T), np.where(T > -0.5 / 365.0, NSE_MIN_T, np.nan))
        iv_nse = implied_vol_bsm(np.where(ltp > 0, ltp, np.nan), S, K, t_nse, cfg.nse_rate, is_call)
        g = greeks_black76(F, K, T, np.where(np.isfinite(iv), iv, np.nan), is_call, df, S=S)  # theta: spot held
        sq = iv * np.sqrt(np.maximum(T, 0.0))
        d1 = (np.log(F / K) + 0.5 * sq * sq) / sq
        fwd_delta = np.where(is_call, ndtr(d1), ndtr(d1) - 1.0)
    reason = np.where(~np.isfinite(price), "no_price", np.where(
        T <= 0, "expired", np.where(at_intrinsic, "at_intrinsic", "no_solution"))).astype(object)
    reason[np.isfinite(iv)] = None
    return c.with_columns(
        pl.Series("iv", iv).fill_nan(None),
        pl.Series("iv_nse", iv_nse).fill_nan(None),
        pl.Series("delta", np.asarray(g["delta"], dtype=float)).fill_nan(None),
        pl.Series("gamma", np.asarray(g["gamma"], dtype=float)).fill_nan(None),
        pl.Series("vega", np.asarray(g["vega"], dtype=float)).fill_nan(None),
        pl.Series("theta", np.asarray(g["theta"], dtype=float)).fill_nan(None),
        pl.Series("fwd_delta", fwd_delta).fill_nan(None),
        pl.Series("iv_reason", reason.tolist(), dtype=pl.Utf8),
    )


#: chain_iv columns the option_greeks table stores (with the contract key); the rest comes from the chain
#: (quotes, spot, lot size) or is derived exactly (mid, fwd_delta) by :func:`from_stored`
STORED_COLUMNS = ("iv", "iv_price", "iv_price_kind", "iv_reason", "iv_nse", "delta", "gamma", "vega", "theta",
                  "forward", "forward_method", "t_years", "df")
CONTRACT_KEY = ("symbol", "expiry", "strike", "option_type")


def from_stored(greeks: pl.DataFrame, chain: pl.DataFrame) -> pl.DataFrame:
    """:func:`chain_iv` output rebuilt from what option_greeks stored for a session joined to the
    session's stored chain (quote columns): equal, column for column, to ``chain_iv(chain, cfg)`` with
    the IVConfig the greeks were computed with. ``mid`` is the IV price where it was a mid quote;
    ``fwd_delta`` is recomputed from the stored iv, forward and T (the same formula)."""
    quotes = chain.drop([c for c in (*STORED_COLUMNS, "mid", "fwd_delta") if c in chain.columns])
    out = quotes.join(greeks.select(*CONTRACT_KEY, *STORED_COLUMNS), on=list(CONTRACT_KEY), how="inner")
    out = out.with_columns(pl.when(pl.col("iv_price_kind") == "mid").then(pl.col("iv_price"))
                           .otherwise(None).cast(pl.Float64).alias("mid"))
    return with_forward_delta(out)


# --- term structure ------------------------------------------------------------------------

def _interp_at(x: np.ndarray, y: np.ndarray, x0: float) -> float:
    """Linear interpolation at x0 between the nearest points on each side; nan if x0 is outside."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    if x.size == 0 or x0 < x[0] or x0 > x[-1]:
        return float("nan")
    return float(np.interp(x0, x, y))


def atm_term_structure(iv: pl.DataFrame) -> pl.DataFrame:
    """ATM IV per (symbol, expiry): OTM-side IVs (puts below the forward, calls above)
    interpolated linearly in log-moneyness at K = F. Input: :func:`chain_iv` output."""
    otm = iv.filter(pl.col("iv").is_not_null() & (
        ((pl.col("option_type") == "CE") & (pl.col("strike") >= pl.col("forward")))
        | ((pl.col("option_type") == "PE") & (pl.col("strike") <= pl.col("forward")))
    )).with_columns((pl.col("strike") / pl.col("forward")).log().alias("k"))
    rows = []
    for (sym, exp), g in otm.group_by(["symbol", "expiry"], maintain_order=True):
        k = g.get_column("k").to_numpy()
        v = g.get_column("iv").to_numpy()
        atm = _interp_at(k, v, 0.0)
        rows.append({"symbol": sym, "expiry": exp, "t_years": g.get_column("t_years")[0],
                     "forward": g.get_column("forward")[0], "atm_iv": atm})
    schema = {"symbol": pl.Utf8, "expiry": pl.Date, "t_years": pl.Float64, "forward": pl.Float64, "atm_iv": pl.Float64}
    return pl.DataFrame(rows, schema=schema).with_columns(pl.col("atm_iv").fill_nan(None)).sort("symbol", "expiry")


def interpolate_constant_maturity(t: np.ndarray, atm: np.ndarray, target_years: float,
                                  min_t: float = 1.5 / 365) -> tuple[float, str]:
    """ATM IV at ``target_years`` by linear interpolation of total variance iv^2 T between the
    expiries around the target; the nearest expiry's IV when the target is outside them.
    Expiries closer than ``min_t`` (about a day and a half) are ignored. Returns (iv, method)."""
    ok = np.isfinite(atm) & (t >= min_t)
    t, atm = t[ok], atm[ok]
    if t.size == 0:
        return float("nan"), "none"
    order = np.argsort(t)
    t, atm = t[order], atm[order]
    if target_years <= t[0]:
        return float(atm[0]), "nearest"
    if target_years >= t[-1]:
        return float(atm[-1]), "nearest"
    i = int(np.searchsorted(t, target_years))
    w0, w1 = atm[i - 1] ** 2 * t[i - 1], atm[i] ** 2 * t[i]
    w = w0 + (w1 - w0) * (target_years - t[i - 1]) / (t[i] - t[i - 1])
    return float(np.sqrt(max(w, 0.0) / target_years)), "variance_time"


def with_forward_delta(iv: pl.DataFrame) -> pl.DataFrame:
    """Add ``fwd_delta`` (undiscounted Black-76 delta at ``iv``) when the frame lacks it."""
    if "fwd_delta" in iv.columns:
        return iv
    F, K = iv.get_column("forward").to_numpy().astype(float), iv.get_column("strike").to_numpy().astype(float)
    T = iv.get_column("t_years").to_numpy().astype(float)
    sig = iv.get_column("iv").to_numpy().astype(float)
    with np.errstate(all="ignore"):
        sq = sig * np.sqrt(np.maximum(T, 0.0))
        d1 = (np.log(F / K) + 0.5 * sq * sq) / sq
    is_call = (iv.get_column("option_type") == "CE").to_numpy()
    return iv.with_columns(pl.Series("fwd_delta", np.where(is_call, ndtr(d1), ndtr(d1) - 1.0)).fill_nan(None))


def delta_skew(iv: pl.DataFrame, symbol: str, expiry: dt.date, delta: float = 0.25) -> float:
    """IV of the ``delta`` put minus IV of the ``delta`` call (forward deltas), one expiry."""
    g = iv.filter((pl.col("symbol") == symbol) & (pl.col("expiry") == expiry) & pl.col("iv").is_not_null()
                  & pl.col("fwd_delta").is_not_null())
    puts = g.filter(pl.col("option_type") == "PE")
    calls = g.filter(pl.col("option_type") == "CE")
    p = _interp_at(puts.get_column("fwd_delta").to_numpy(), puts.get_column("iv").to_numpy(), -delta)
    c = _interp_at(calls.get_column("fwd_delta").to_numpy(), calls.get_column("iv").to_numpy(), delta)
    return p - c


#: Sessions of daily closes up to the session that realized vol 20/60 is computed from
RV_HISTORY_SESSIONS = 62


def realized_vols(bars: pl.DataFrame) -> pl.DataFrame:
    """Per symbol: ``rv_20`` and ``rv_60`` (:func:`realized_vol`, null where undefined) of ``bars``
    (symbol, date, close; the caller restricts them to the window). One row per symbol with bars."""
    rows = []
    if bars.height:
        for (sym,), g in bars.sort("symbol", "date").group_by(["symbol"], maintain_order=True):
            closes = g.get_column("close").to_numpy()
            rows.append({"symbol": sym, "rv_20": realized_vol(closes, 20), "rv_60": realized_vol(closes, 60)})
    out = pl.DataFrame(rows, schema={"symbol": pl.Utf8, "rv_20": pl.Float64, "rv_60": pl.Float64})
    return out.with_columns(pl.col("rv_20", "rv_60").fill_nan(None))


def realized_vol(closes: np.ndarray, window: int) -> float:
    """Annualized (sqrt 252) close-to-close volatility of the last ``window`` returns."""
    c = np.asarray(closes, dtype=float)
    if c.size < window + 1:
        return float("nan")
    r = np.diff(np.log(c[-(window + 1):]))
    return float(np.std(r, ddof=1) * np.sqrt(252.0))


SUMMARY_SCHEMA = {
    "symbol": pl.Utf8, "spot": pl.Float64, "atm_iv_30d": pl.Float64, "atm_iv_30d_method": pl.Utf8,
    "atm_iv_near": pl.Float64, "near_expiry": pl.Date, "atm_iv_far": pl.Float64, "far_expiry": pl.Date,
    "skew_25d": pl.Float64, "term_slope": pl.Float64, "expiries": pl.Int64, "contracts_with_iv": pl.Int64,
}


def iv_summary(iv: pl.DataFrame, target_days: float = 30.0, min_t: float = 1.5 / 365) -> pl.DataFrame:
    """Per symbol: 30-day ATM IV, near/far ATM IV, 25-delta skew at the expiry nearest the target,
    term slope. Input: :func:`chain_iv` output (or the option_greeks table joined with the
    chain's ``underlying_price``) for one session."""
    iv = with_forward_delta(iv)
    term = atm_term_structure(iv)
    target = target_days / 365.0
    counts = iv.group_by("symbol").agg(pl.col("iv").is_not_null().sum().alias("contracts_with_iv"),
                                       pl.col("underlying_price").first().alias("spot"))
    spot = dict(zip(counts.get_column("symbol").to_list(), counts.get_column("spot").to_list(), strict=True))
    n_iv = dict(zip(counts.get_column("symbol").to_list(), counts.get_column("contracts_with_iv").to_list(),
                    strict=True))
    by_symbol = iv.filter(pl.col("iv").is_not_null() & pl.col("fwd_delta").is_not_null()).partition_by(
        "symbol", as_dict=True)
    rows = []
    for (sym,), g in term.group_by(["symbol"], maintain_order=True):
        t = g.get_column("t_years").to_numpy().astype(float)
        a = g.get_column("atm_iv").to_numpy().astype(float)
        exp = g.get_column("expiry").to_list()
        iv30, method = interpolate_constant_maturity(t, a, target, min_t)
        ok = np.isfinite(a) & (t >= min_t)
        near = far = None
        skew = slope = float("nan")
        if ok.any():
            idx = np.flatnonzero(ok)
            i_near, i_far = idx[np.argmin(t[idx])], idx[np.argmax(t[idx])]
            near, far = (exp[i_near], a[i_near]), (exp[i_far], a[i_far])
            if i_far != i_near:
                slope = (a[i_far] - a[i_near]) / (t[i_far] - t[i_near])
            i_30 = idx[np.argmin(np.abs(t[idx] - target))]
            part = by_symbol.get((sym,))
            if part is not None:
                skew = delta_skew(part, sym, exp[i_30])
        rows.append({
            "symbol": sym, "spot": spot.get(sym), "atm_iv_30d": iv30, "atm_iv_30d_method": method,
            "atm_iv_near": near[1] if near else None, "near_expiry": near[0] if near else None,
            "atm_iv_far": far[1] if far else None, "far_expiry": far[0] if far else None,
            "skew_25d": skew, "term_slope": slope, "expiries": int(g.height), "contracts_with_iv": n_iv.get(sym, 0),
        })
    out = pl.DataFrame(rows, schema=SUMMARY_SCHEMA)
    return out.with_columns(pl.col(pl.Float64).fill_nan(None))
