"""Per-symbol sanity screen of a session's option chains, run before anything is written.

:func:`screen_chain` checks the whole chain at once (polars, no per-option loops) and returns the
clean chain (symbols that fail removed), one :class:`~options_v4_dagster.market.base.Failure`
per failing symbol (stage ``chain_sanity``, kind ``error``, the reason naming expiry, strike,
type, field and values) and every violation found.

Rules (thresholds in :class:`SanityConfig`; ``tol`` = ``abs_tol_ticks`` ticks + ``rel_tol`` of
the bound). ``spot``, ``straddle``, ``upper``, ``crossed`` and ``traded_unpriced`` always exclude
the symbol; the others exclude it when the violation is material (beyond ``material_pct`` of spot
on a contract traded today, or beyond ``gross_pct`` of spot on any), else they only drop the
quote (bid/ask nulled; for a last price, the LTP nulled: stale deep ITM/OTM prints):

- ``spot``: spot null, NaN or not positive; ``straddle``: the strikes do not straddle spot;
- ``upper``: a call's bid/LTP above max(forward x df, spot), a put's above strike x df (an ask
  above it only drops the quote);
- ``lower``: a two-sided ask or mid below intrinsic on the forward (the looser of forward and
  spot); an LTP below it is stale: *drop*;
- ``crossed``: bid above ask by more than the tolerance;
- ``monotone``: along strikes, a call's bid above the next-lower strike's ask, a put's bid above
  the next-higher strike's ask (executable arbitrage), or the same on two-sided mids beyond the
  half spreads;
- ``vertical``: the mid difference of adjacent strikes above the strike difference x df;
- ``butterfly``: mids not convex in strike beyond the half spreads (slope drop x strike gap);
- ``jump``: a bid, ask or mid an order of magnitude (``jump_factor``) above or below both strike
  neighbours' mids (LTP: *drop*);
- ``iv_outlier``: the two-sided mid's implied vol (Black-76 on the forward) off the symbol's own
  smile (rolling median of the neighbouring OTM strikes) by more than ``iv_abs``/``iv_rel``;
- ``traded_unpriced``: volume > 0 but no last price and no quote.

Measured on every real file set in ../shared/data/nse: see options_v4_dagster_tests/test_sanity.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..quant.black import implied_vol_black76
from ..quant.surface import DEFAULT_RATE, IVConfig, forwards, year_fraction
from .base import Failure

STAGE = "chain_sanity"
KEY = ["symbol", "expiry", "strike", "option_type"]
GROUP = ["symbol", "expiry", "option_type"]


@dataclass(frozen=True)
class SanityConfig:
    rate: float = DEFAULT_RATE  # discounting, as quant.surface
    tick: float = 0.05  # INR, NSE's option tick
    abs_tol_ticks: float = 2.0  # absolute tolerance of every price bound, in ticks
    rel_tol: float = 0.02  # relative tolerance of the upper/vertical bounds (fraction of the bound)
    lower_rel_tol: float = 0.01  # tolerance below intrinsic, as a fraction of spot (forward/rate uncertainty)
    crossed_rel_tol: float = 0.05  # bid may exceed ask by this fraction of ask (snapshot timing) + abs tol
    max_spread_pct: float = 0.5  # a two-sided quote wider than this (of mid) is not a mid for shape rules
    jump_factor: float = 10.0  # an order of magnitude from both neighbours
    jump_min_abs_pct: float = 0.01  # ... and differing by at least this fraction of spot
    iv_window: int = 5  # strikes in the rolling-median smile
    iv_abs: float = 0.25  # vol points (fraction) off the smile ...
    iv_rel: float = 1.0  # ... and this fraction of the smile's vol
    iv_min_neighbours: int = 3
    material_pct: float = 0.0005  # a violation by more than this fraction of spot on a traded contract ...
    gross_pct: float = 0.01  # ... or by more than this on any contract excludes the symbol; smaller ones drop the quote
    max_failed_share: float = 0.20  # option_chains fails the day above this share of requested symbols

    @property
    def abs_tol(self) -> float:
        return self.abs_tol_ticks * self.tick


ALWAYS_EXCLUDE = {"spot", "straddle", "upper", "crossed", "traded_unpriced"}


@dataclass
class ScreenResult:
    clean: pl.DataFrame
    failures: list[Failure]
    violations: pl.DataFrame  # symbol, expiry, strike, option_type, rule, field, value, bound, action
    symbols_in: int = 0
    dropped_quotes: int = 0  # contracts whose LTP (or whole quote) was nulled: immaterial, deep OTM/ITM
    counts: dict[str, int] = field(default_factory=dict)  # violations per rule

    @property
    def failed_symbols(self) -> list[str]:
        return [f.symbol for f in self.failures]


VIOLATION_SCHEMA = {"symbol": pl.Utf8, "expiry": pl.Date, "strike": pl.Float64, "option_type": pl.Utf8,
                    "rule": pl.Utf8, "field": pl.Utf8, "value": pl.Float64, "bound": pl.Float64,
                    "amount": pl.Float64, "traded": pl.Boolean, "spot": pl.Float64}


def _pos(name: str) -> pl.Expr:
    """A price column with NSE's 0 (= none) and non-finite values as null."""
    c = pl.col(name)
    return pl.when(c.is_finite() & (c > 0)).then(c).otherwise(None)


def _prepared(chain: pl.DataFrame, cfg: SanityConfig) -> pl.DataFrame:
    c = chain.with_row_index("_row").with_columns(
        _pos("bid").alias("_bid"), _pos("ask").alias("_ask"), _pos("ltp").alias("_ltp"),
        pl.col("underlying_price").alias("_spot"),
    )
    two = (pl.col("_bid").is_not_null() & pl.col("_ask").is_not_null() & (pl.col("_bid") <= pl.col("_ask"))
           & ((pl.col("_ask") - pl.col("_bid")) <= cfg.max_spread_pct * (pl.col("_ask") + pl.col("_bid")) / 2))
    c = c.with_columns(pl.when(two).then((pl.col("_bid") + pl.col("_ask")) / 2).alias("_mid"),
                       pl.when(two).then((pl.col("_ask") - pl.col("_bid")) / 2).alias("_half"))
    good_spot = pl.col("_spot").is_not_null() & pl.col("_spot").is_finite() & (pl.col("_spot") > 0)
    ok = c.filter(good_spot)
    if ok.height:
        fw = forwards(ok.with_columns(pl.coalesce("_mid", "_ltp").alias("iv_price")),
                      IVConfig(rate=cfg.rate)).select("symbol", "expiry", "df", "forward")
    else:
        fw = pl.DataFrame(schema={"symbol": pl.Utf8, "expiry": pl.Date, "df": pl.Float64, "forward": pl.Float64})
    c = c.join(fw, on=["symbol", "expiry"], how="left").with_columns(
        year_fraction(pl.col("snapshot_ts"), pl.col("expiry")).alias("_t"))
    is_call = pl.col("option_type") == "CE"
    fdf = pl.col("forward") * pl.col("df")
    kdf = pl.col("strike") * pl.col("df")
    return c.with_columns(
        pl.when(is_call).then(pl.max_horizontal(fdf, pl.col("_spot"))).otherwise(pl.col("strike")).alias("_upper"),
        pl.when(is_call).then(pl.min_horizontal(fdf, pl.col("_spot")) - kdf)
        .otherwise(kdf - pl.max_horizontal(fdf, pl.col("_spot"))).clip(lower_bound=0.0).alias("_lower"),
    ).sort(["symbol", "expiry", "option_type", "strike"])


def _viol(frame: pl.DataFrame, mask: pl.Expr, rule: str, fld: str, value: pl.Expr, bound: pl.Expr,
          amount: pl.Expr | None = None) -> pl.DataFrame:
    """Violating rows; ``amount`` (INR, default |value - bound|) is how far beyond the bound."""
    amt = (value - bound).abs() if amount is None else amount
    return frame.filter(mask.fill_null(False)).select(
        *KEY, pl.lit(rule).alias("rule"), pl.lit(fld).alias("field"), value.cast(pl.Float64).alias("value"),
        bound.cast(pl.Float64).alias("bound"), amt.cast(pl.Float64).alias("amount"),
        (pl.col("volume").fill_null(0) > 0).alias("traded"), pl.col("_spot").alias("spot"))


def _point_rules(c: pl.DataFrame, cfg: SanityConfig) -> list[pl.DataFrame]:
    tol = cfg.abs_tol
    out = []
    bad_spot = ~(pl.col("_spot").is_not_null() & pl.col("_spot").is_finite() & (pl.col("_spot") > 0))
    out.append(_viol(c, bad_spot, "spot", "underlying_price", pl.col("underlying_price"), pl.lit(0.0)))
    up = pl.col("_upper") * (1 + cfg.rel_tol) + tol
    for f in ("bid", "ask", "ltp"):
        out.append(_viol(c, pl.col(f"_{f}") > up, "upper", f, pl.col(f"_{f}"), pl.col("_upper")))
    lo = pl.col("_lower") - tol - cfg.lower_rel_tol * pl.col("_spot")
    lo_mid = lo - pl.col("_half")
    two_sided_ask = pl.when(pl.col("_bid").is_not_null()).then(pl.col("_ask"))
    out.append(_viol(c, two_sided_ask < lo, "lower", "ask", pl.col("_ask"), pl.col("_lower")))
    out.append(_viol(c, pl.col("_mid") < lo_mid, "lower", "mid", pl.col("_mid"), pl.col("_lower")))
    out.append(_viol(c, pl.col("_ltp") < lo, "lower", "ltp", pl.col("_ltp"), pl.col("_lower")))
    crossed = pl.col("_bid") > pl.col("_ask") * (1 + cfg.crossed_rel_tol) + tol
    out.append(_viol(c, crossed, "crossed", "bid", pl.col("_bid"), pl.col("_ask")))
    unpriced = (pl.col("volume").fill_null(0) > 0) & pl.col("_ltp").is_null() & pl.col("_bid").is_null() \
        & pl.col("_ask").is_null()
    out.append(_viol(c, unpriced, "traded_unpriced", "ltp", pl.col("ltp"), pl.col("volume")))
    return out


def _shape_rules(c: pl.DataFrame, cfg: SanityConfig) -> list[pl.DataFrame]:
    """Rules along strikes within (symbol, expiry, type); c is sorted by strike within each group."""
    tol = cfg.abs_tol
    out = []
    is_call = pl.col("option_type") == "CE"
    # executable monotonicity: the option nearer the money (lower strike for calls) is worth more.
    # For calls, richer = previous strike; for puts, richer = next strike.
    prev_ask, next_ask = pl.col("_ask").shift(1).over(GROUP), pl.col("_ask").shift(-1).over(GROUP)
    e = c.with_columns(pl.when(is_call).then(prev_ask).otherwise(next_ask).alias("_richer_ask"))
    richer_ask = pl.col("_richer_ask")
    out.append(_viol(e, pl.col("_bid") > richer_ask + tol + cfg.rel_tol * richer_ask, "monotone", "bid",
                     pl.col("_bid"), richer_ask))
    # on two-sided mids (adjacent priced strikes)
    m = c.filter(pl.col("_mid").is_not_null()).with_columns(
        pl.col("_mid").shift(1).over(GROUP).alias("_pm"), pl.col("_half").shift(1).over(GROUP).alias("_ph"),
        pl.col("strike").shift(1).over(GROUP).alias("_pk"),
    ).with_columns(
        # d = price(lower strike) - price(higher strike) for calls; reversed for puts; must be in [0, dK*df]
        pl.when(is_call).then(pl.col("_pm") - pl.col("_mid")).otherwise(pl.col("_mid") - pl.col("_pm")).alias("_d"),
        (pl.col("strike") - pl.col("_pk")).alias("_dk"),
        (tol + pl.col("_half") + pl.col("_ph")).alias("_tol"),
    )
    out.append(_viol(m, pl.col("_d") < -(pl.col("_tol") + cfg.rel_tol * pl.col("_mid")), "monotone", "mid",
                     pl.col("_mid"), pl.col("_pm")))
    vb = pl.col("_dk") * pl.col("df")
    out.append(_viol(m, pl.col("_d") > vb * (1 + cfg.rel_tol) + pl.col("_tol"), "vertical", "mid",
                     pl.col("_d"), vb))
    # butterfly: slope (dPrice/dK) non-decreasing in K for both types
    b = m.with_columns(((pl.col("_mid") - pl.col("_pm")) / pl.col("_dk")).alias("_slope")).with_columns(
        pl.col("_slope").shift(-1).over(GROUP).alias("_next_slope"),
        pl.col("_dk").shift(-1).over(GROUP).alias("_next_dk"),
        pl.col("_half").shift(-1).over(GROUP).alias("_nh"),
    ).with_columns(
        ((pl.col("_slope") - pl.col("_next_slope")) * pl.min_horizontal("_dk", "_next_dk")).alias("_convex_gap"),
        (tol + pl.col("_ph") + 2 * pl.col("_half") + pl.col("_nh") + cfg.rel_tol * pl.col("_mid")).alias("_btol"),
    )
    out.append(_viol(b, pl.col("_convex_gap") > pl.col("_btol"), "butterfly", "mid", pl.col("_convex_gap"),
                     pl.col("_btol")))
    # order-of-magnitude jumps against both neighbours' mids
    mm = c.with_columns(
        pl.col("_mid").fill_null(strategy="forward").shift(1).over(GROUP).alias("_lm"),
        pl.col("_mid").fill_null(strategy="backward").shift(-1).over(GROUP).alias("_rm"),
    ).with_columns(pl.max_horizontal("_lm", "_rm").alias("_nmax"), pl.min_horizontal("_lm", "_rm").alias("_nmin"))
    big = cfg.jump_min_abs_pct * pl.col("_spot")
    # a rich bid (selling rich) or a cheap ask (buying cheap) is what makes a trade look riskless
    for f, ups, downs in (("bid", True, False), ("ask", False, True), ("mid", True, True), ("ltp", True, True)):
        v = pl.col(f"_{f}")
        up = (v > cfg.jump_factor * pl.col("_nmax")) & (v - pl.col("_nmax") > big) & pl.lit(ups)
        down = (v * cfg.jump_factor < pl.col("_nmin")) & (pl.col("_nmin") - v > big) \
            & pl.col("_lm").is_not_null() & pl.col("_rm").is_not_null() & pl.lit(downs)
        out.append(_viol(mm, up | down, "jump", f, v, pl.when(up).then(pl.col("_nmax")).otherwise(pl.col("_nmin"))))
    return out


def _iv_rule(c: pl.DataFrame, cfg: SanityConfig) -> list[pl.DataFrame]:
    m = c.filter(pl.col("_mid").is_not_null() & (pl.col("_t") > 0) & pl.col("forward").is_not_null())
    if m.height == 0:
        return []
    otm = ((pl.col("option_type") == "CE") & (pl.col("strike") >= pl.col("forward"))) | \
        ((pl.col("option_type") == "PE") & (pl.col("strike") < pl.col("forward")))
    m = m.filter(otm)
    with np.errstate(all="ignore"):
        iv = implied_vol_black76(m.get_column("_mid").to_numpy(), m.get_column("forward").to_numpy(),
                                 m.get_column("strike").to_numpy(), m.get_column("_t").to_numpy(),
                                 (m.get_column("option_type") == "CE").to_numpy(), m.get_column("df").to_numpy())
    m = m.with_columns(pl.Series("_iv", np.asarray(iv, dtype=float)).fill_nan(None)) \
        .filter(pl.col("_iv").is_not_null() & (pl.col("_iv") > 0)).sort(["symbol", "expiry", "strike"])
    w = cfg.iv_window
    m = m.with_columns(
        pl.col("_iv").rolling_median(w, center=True, min_samples=cfg.iv_min_neighbours).over(["symbol", "expiry"])
        .alias("_smile"))
    off = (pl.col("_iv") - pl.col("_smile")).abs()
    bad = (off > cfg.iv_abs) & (off > cfg.iv_rel * pl.col("_smile"))
    return [_viol(m, bad, "iv_outlier", "mid", pl.col("_iv"), pl.col("_smile"), amount=pl.col("_spot"))]


def _straddle(c: pl.DataFrame) -> pl.DataFrame:
    s = c.filter(pl.col("_spot").is_finite() & (pl.col("_spot") > 0)).group_by("symbol").agg(
        pl.col("strike").min().alias("kmin"), pl.col("strike").max().alias("kmax"), pl.col("_spot").first())
    bad = s.filter((pl.col("kmin") > pl.col("_spot")) | (pl.col("kmax") < pl.col("_spot")))
    return bad.select("symbol", pl.lit(None, pl.Date).alias("expiry"), pl.lit(None, pl.Float64).alias("strike"),
                      pl.lit(None, pl.Utf8).alias("option_type"), pl.lit("straddle").alias("rule"),
                      pl.lit("underlying_price").alias("field"), pl.col("_spot").alias("value"),
                      pl.col("kmax").alias("bound"), pl.col("_spot").alias("amount"), pl.lit(True).alias("traded"),
                      pl.col("_spot").alias("spot"))


def _fmt(x: float | None, spec: str = ",.2f") -> str:
    return "null" if x is None else format(x, spec)


def _describe(r: dict) -> str:
    where = f"{r['expiry']} {r['strike']:g} {r['option_type']}" if r["strike"] is not None else "chain"
    rule, fld, v, b = r["rule"], r["field"], _fmt(r["value"]), _fmt(r["bound"])
    texts = {
        "spot": lambda: f"spot {v}",
        "straddle": lambda: f"spot {v} outside the strikes (max {b})",
        "upper": lambda: f"{fld} {v} above the no-arbitrage bound {b}",
        "lower": lambda: f"{fld} {v} below intrinsic {b}",
        "crossed": lambda: f"bid {v} above ask {b}",
        "monotone": lambda: f"{fld} {v} above the adjacent nearer-the-money strike's "
                            f"{'ask' if fld == 'bid' else fld} {b}",
        "vertical": lambda: f"adjacent-strike mid difference {v} above strike gap x df {b}",
        "butterfly": lambda: f"mids not convex in strike: slope drop x strike gap {v} > tolerance {b}",
        "jump": lambda: f"{fld} {v} an order of magnitude off the neighbouring strikes' mids ({b})",
        "iv_outlier": lambda: f"implied vol {_fmt(r['value'], '.1%')} off the smile {_fmt(r['bound'], '.1%')}",
        "traded_unpriced": lambda: f"traded {_fmt(r['bound'], ',.0f')} contracts but no last price and no quote",
    }
    text = texts[rule]() if rule in texts else f"{fld} {v} vs {b}"
    return f"{rule}: {where} {text}"


def screen_chain(chain: pl.DataFrame, cfg: SanityConfig = SanityConfig(),
                 session: dt.date | None = None) -> ScreenResult:
    """Screen a normalized chain (:data:`CHAIN_SCHEMA`) of one session; see the module docstring."""
    if chain.height == 0:
        return ScreenResult(clean=chain, failures=[], violations=pl.DataFrame(schema=VIOLATION_SCHEMA))
    c = _prepared(chain, cfg)
    parts = _point_rules(c, cfg) + _shape_rules(c, cfg) + _iv_rule(c, cfg) + [_straddle(c)]
    viol = pl.concat([p.cast(VIOLATION_SCHEMA) for p in parts]).unique(keep="first", maintain_order=True)
    quote_material = (pl.col("traded") & (pl.col("amount") > cfg.material_pct * pl.col("spot"))) \
        | (pl.col("amount") > cfg.gross_pct * pl.col("spot")) | pl.col("amount").is_nan()
    # a last price may be from any moment of the day (or an earlier day): below intrinsic it is stale; only a
    # traded contract's gross jump excludes
    ltp_material = (pl.col("rule") != "lower") & pl.col("traded") & (pl.col("amount") > cfg.gross_pct * pl.col("spot"))
    material = pl.when(pl.col("field") == "ltp").then(ltp_material).otherwise(quote_material)
    viol = viol.with_columns(
        # an offer above the bound is unusable, not dangerous (nobody buys there): the quote is dropped
        pl.when((pl.col("rule") == "upper") & (pl.col("field") == "ask")).then(pl.lit("drop_quote"))
        .when(pl.col("rule").is_in(list(ALWAYS_EXCLUDE)) | material.fill_null(True)).then(pl.lit("exclude"))
        .when(pl.col("field") == "ltp").then(pl.lit("drop_ltp")).otherwise(pl.lit("drop_quote")).alias("action"))
    excl = viol.filter(pl.col("action") == "exclude")
    failures = []
    for (sym,), g in excl.group_by(["symbol"], maintain_order=True):
        rules = g.group_by("rule").len().sort("len", descending=True)
        summary = ", ".join(f"{r['rule']} x{r['len']}" for r in rules.iter_rows(named=True))
        first = "; ".join(_describe(r) for r in g.unique("rule", keep="first", maintain_order=True).head(5)
                          .iter_rows(named=True))  # one example per rule
        when = f" on {session}" if session else ""
        failures.append(Failure(sym, STAGE, f"chain excluded{when} ({summary}): {first}", kind="error"))
    bad = [f.symbol for f in failures]
    keep = viol.filter(~pl.col("symbol").is_in(bad) & pl.col("action").str.starts_with("drop"))
    drop = keep.group_by(KEY).agg((pl.col("action") == "drop_quote").any().alias("_q"))
    clean = chain.filter(~pl.col("symbol").is_in(bad))
    if drop.height:
        clean = clean.join(drop.with_columns(pl.lit(True).alias("_drop")), on=KEY, how="left").with_columns(
            pl.when(pl.col("_drop")).then(None).otherwise(pl.col("ltp")).alias("ltp"),
            *[pl.when(pl.col("_q")).then(None).otherwise(pl.col(f)).alias(f) for f in ("bid", "ask")],
        ).drop("_drop", "_q")
    counts = {r["rule"]: int(r["len"]) for r in viol.group_by("rule").len().iter_rows(named=True)}
    return ScreenResult(clean=clean.select(chain.columns), failures=failures, violations=viol,
                        symbols_in=chain.get_column("symbol").n_unique(), dropped_quotes=drop.height, counts=counts)
