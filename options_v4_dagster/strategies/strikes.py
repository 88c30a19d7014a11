"""Strike selection on one symbol's chain (the output of :func:`quant.surface.chain_iv`).

A :class:`ChainView` holds one symbol/session's contracts as numpy arrays sorted by (expiry,
option type, strike), with per-expiry facts: T (calendar days / 365 to 15:30 on expiry),
discount factor, forward, ATM IV (OTM-side IVs interpolated linearly in log-moneyness at K = F,
as :func:`quant.surface.atm_term_structure`), expected move (ATM IV x sqrt(T) x spot) and strike
step (median spacing of the ten strikes nearest the forward).

Selecting a strike for a leg (:func:`select_strike`):

1. the rule gives a **target strike** (delta targets are inverted on the expiry's call-delta
   curve computed from the smile: each strike's OTM-side IV);
2. the candidates are that expiry/type's contracts that pass the current **liquidity level**
   (:data:`LEVELS`: open interest, volume, two-sided quote, bid-ask spread as % of mid) and lie
   within the level's distance window (in strike steps) of the target -- exactly the target for
   ``exact`` rules, strictly on the correct side of the reference leg for relative rules, and
   out of the money (in the money) for delta targets below (above) 0.5;
3. each is scored ``0.4 distance + 0.3 liquidity (OI) + 0.2 spread + 0.1 volume`` (each in [0, 1])
   and the best wins;
4. when none qualifies, the next (looser) level is tried; the level used is recorded on the leg.

A strike absent from the chain is never returned: every candidate is a row of the chain. When no
level yields a strike, :class:`StrategyUnavailable` (a :class:`~options_v4_dagster.errors.DataError`)
is raised with the reason. :func:`validate` checks a built position's strike relationships.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy.special import ndtr

from ..errors import DataError
from ..universe import INDEX_SYMBOLS
from .catalogue import Constraint, StrikeKind, StrikeRule

__all__ = [
    "LEVELS", "ChainView", "ExpiryInfo", "LiquidityLevel", "ScoreWeights", "Selection", "StrategyUnavailable",
    "chain_views", "select_strike", "target_strike", "validate",
]


class StrategyUnavailable(DataError):
    """A strategy cannot be built for a symbol/session; ``reason`` says why."""

    def __init__(self, message: str, *, strategy: str | None = None, symbol: str | None = None,
                 session: dt.date | None = None, field: str | None = None) -> None:
        self.strategy = strategy
        super().__init__(f"{strategy}: {message}" if strategy else message, symbol=symbol, session=session,
                         field=field)
        self.reason = message


@dataclass(frozen=True)
class LiquidityLevel:
    """One step of the filter ladder. ``window_steps``: how far (in strike steps) from the target a
    strike may be; ``two_sided``: a bid and an ask are required; ``max_spread_pct``: (ask - bid) / mid."""

    name: str
    min_oi: float
    min_volume: float
    max_spread_pct: float
    two_sided: bool
    window_steps: float


LEVELS: tuple[LiquidityLevel, ...] = (
    LiquidityLevel("strict", min_oi=100, min_volume=10, max_spread_pct=0.05, two_sided=True, window_steps=2.0),
    LiquidityLevel("relaxed", min_oi=20, min_volume=1, max_spread_pct=0.15, two_sided=True, window_steps=3.0),
    LiquidityLevel("loose", min_oi=1, min_volume=0, max_spread_pct=0.40, two_sided=True, window_steps=5.0),
    LiquidityLevel("any_price", min_oi=0, min_volume=0, max_spread_pct=np.inf, two_sided=False, window_steps=8.0),
)


@dataclass(frozen=True)
class ScoreWeights:
    distance: float = 0.4
    liquidity: float = 0.3
    spread: float = 0.2
    volume: float = 0.1


@dataclass
class ExpiryInfo:
    expiry: dt.date
    t_years: float
    df: float
    forward: float
    futures_price: float | None
    atm_iv: float
    step: float
    expected_move: float
    # index ranges into the view's arrays: contracts of this expiry, calls then puts, strikes ascending
    ce: slice
    pe: slice
    # the smile by strike (union of call/put strikes): OTM-side IV, the other side where missing
    smile_k: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    smile_iv: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))


@dataclass
class ChainView:
    """One symbol/session's chain as arrays (see the module docstring)."""

    symbol: str
    session: dt.date | None
    spot: float
    is_index: bool
    expiries: list[ExpiryInfo]  # all expiries with a forward, ascending
    arrays: dict[str, np.ndarray] = field(repr=False)

    def eligible(self, min_t_years: float) -> list[ExpiryInfo]:
        """Expiries at least ``min_t_years`` away with a finite ATM IV, nearest first."""
        return [e for e in self.expiries if e.t_years >= min_t_years and np.isfinite(e.atm_iv) and e.atm_iv > 0]

    def side(self, e: ExpiryInfo, option_type: str) -> slice:
        return e.ce if option_type == "CE" else e.pe

    def row(self, i: int) -> dict:
        return {k: v[i] for k, v in self.arrays.items()}


_NUM_COLS = ("strike", "bid", "ask", "mid", "iv_price", "ltp", "oi", "volume", "iv", "delta", "gamma", "vega",
             "theta", "fwd_delta", "t_years", "df", "forward", "underlying_price", "futures_price")


def chain_views(iv: pl.DataFrame) -> dict[str, ChainView]:
    """Views of every symbol in a :func:`chain_iv` frame (one session), keyed by symbol."""
    need = {"symbol", "expiry", "option_type", "lot_size", *_NUM_COLS} - set(iv.columns) - {"iv_price", "ltp"}
    if need:
        raise DataError(f"chain lacks columns {sorted(need)} (expected quant.surface.chain_iv output)",
                        field=sorted(need)[0])
    df = iv.filter(pl.col("forward").is_not_null() & pl.col("t_years").is_not_null()).sort(
        ["symbol", "expiry", "option_type", "strike"])
    if df.height == 0:
        return {}
    cols = {c: df.get_column(c).cast(pl.Float64).to_numpy().astype(float, copy=False)
            for c in _NUM_COLS if c in df.columns}
    n = df.height
    for c in ("iv_price", "ltp"):
        cols.setdefault(c, np.full(n, np.nan))
    cols["lot_size"] = df.get_column("lot_size").cast(pl.Float64).to_numpy().astype(float, copy=False)
    sec = df.get_column("security_id") if "security_id" in df.columns else pl.Series([None] * n, dtype=pl.Utf8)
    sym = df.get_column("symbol").to_numpy()
    exp = df.get_column("expiry").to_numpy()  # datetime64[D]
    is_call = (df.get_column("option_type") == "CE").to_numpy()
    session = df.get_column("trade_date")[0] if "trade_date" in df.columns else None
    sec_np = sec.to_numpy()

    # group boundaries
    sym_change = np.flatnonzero(sym[1:] != sym[:-1]) + 1
    starts = np.concatenate([[0], sym_change])
    ends = np.concatenate([sym_change, [n]])
    views: dict[str, ChainView] = {}
    for s0, s1 in zip(starts, ends, strict=True):
        symbol = str(sym[s0])
        arrays = {k: v[s0:s1] for k, v in cols.items()}
        arrays["is_call"] = is_call[s0:s1]
        arrays["security_id"] = sec_np[s0:s1]
        arrays["expiry"] = exp[s0:s1]
        views[symbol] = _make_view(symbol, session, arrays)
    return views


def _make_view(symbol: str, session, a: dict[str, np.ndarray]) -> ChainView:
    exp = a["expiry"]
    n = exp.size
    # per-contract liquidity features, once per view
    bid, ask = a["bid"], a["ask"]
    with np.errstate(all="ignore"):
        two_sided = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask >= bid)
        a["two_sided"] = two_sided
        a["spread_pct"] = np.where(two_sided, (ask - bid) / (0.5 * (bid + ask)), np.inf)
    a["priced"] = two_sided | (np.isfinite(a["iv_price"]) & (a["iv_price"] > 0))
    a["oi0"] = np.where(np.isfinite(a["oi"]), a["oi"], 0.0)
    a["volume0"] = np.where(np.isfinite(a["volume"]), a["volume"], 0.0)
    chg = np.flatnonzero(exp[1:] != exp[:-1]) + 1
    starts = np.concatenate([[0], chg])
    ends = np.concatenate([chg, [n]])
    spot = float(np.nanmedian(a["underlying_price"]))
    expiries = []
    for e0, e1 in zip(starts, ends, strict=True):
        calls = a["is_call"][e0:e1]
        n_calls = int(calls.sum())  # 'CE' sorts before 'PE'
        ce, pe = slice(e0, e0 + n_calls), slice(e0 + n_calls, e1)
        F = float(a["forward"][e0])
        T = float(a["t_years"][e0])
        fut = a["futures_price"][e0:e1]
        fut = fut[np.isfinite(fut)]
        k_all = np.unique(a["strike"][e0:e1])
        near = k_all[np.argsort(np.abs(k_all - F))[:11]]
        step = float(np.median(np.diff(np.sort(near)))) if near.size > 1 else max(F * 0.01, 0.05)
        smile_k, smile_iv = _smile(a, ce, pe, F)
        atm = _atm_iv(smile_k, smile_iv, F)
        em = atm * np.sqrt(max(T, 0.0)) * spot if np.isfinite(atm) else np.nan
        expiries.append(ExpiryInfo(
            expiry=exp[e0].astype("datetime64[D]").item(), t_years=T, df=float(a["df"][e0]), forward=F,
            futures_price=float(fut[0]) if fut.size else None, atm_iv=atm, step=step, expected_move=float(em),
            ce=ce, pe=pe, smile_k=smile_k, smile_iv=smile_iv))
    return ChainView(symbol=symbol, session=session, spot=spot, is_index=symbol.upper() in INDEX_SYMBOLS,
                     expiries=expiries, arrays=a)


def _smile(a: dict[str, np.ndarray], ce: slice, pe: slice, F: float) -> tuple[np.ndarray, np.ndarray]:
    """IV by strike: puts below the forward, calls above; the other side where one is missing."""
    kc, ivc = a["strike"][ce], a["iv"][ce]
    kp, ivp = a["strike"][pe], a["iv"][pe]
    k = np.union1d(kc, kp)
    c = np.full(k.size, np.nan)
    p = np.full(k.size, np.nan)
    c[np.searchsorted(k, kc)] = ivc
    p[np.searchsorted(k, kp)] = ivp
    otm, itm = np.where(k >= F, c, p), np.where(k >= F, p, c)
    iv = np.where(np.isfinite(otm), otm, itm)
    ok = np.isfinite(iv) & (iv > 0)
    return k[ok], iv[ok]


def _atm_iv(k: np.ndarray, iv: np.ndarray, F: float) -> float:
    """OTM-side IV interpolated linearly in log-moneyness at K = F; NaN when F is outside the strikes."""
    if k.size == 0 or not (k[0] <= F <= k[-1]):
        return float("nan")
    return float(np.interp(np.log(F), np.log(k), iv))


def leg_iv(view: ChainView, e: ExpiryInfo, i: int) -> float:
    """The contract's own IV, else the smile's IV at its strike (the OTM side's)."""
    v = view.arrays["iv"][i]
    if np.isfinite(v) and v > 0:
        return float(v)
    k = view.arrays["strike"][i]
    j = np.searchsorted(e.smile_k, k)
    if j < e.smile_k.size and e.smile_k[j] == k:
        return float(e.smile_iv[j])
    return float(np.interp(k, e.smile_k, e.smile_iv)) if e.smile_k.size else float("nan")


@dataclass(frozen=True)
class Selection:
    index: int  # row in the view's arrays
    strike: float
    target: float
    level: int
    level_name: str
    score: float


def target_strike(view: ChainView, e: ExpiryInfo, option_type: str, rule: StrikeRule,
                  ref_strike: float | None = None) -> float:
    """The strike a rule aims at on expiry ``e`` (not necessarily listed)."""
    F = e.forward
    if rule.kind is StrikeKind.ATM:
        return F
    if rule.kind is StrikeKind.MONEYNESS:
        return F * rule.value
    if rule.kind is StrikeKind.EXPECTED_MOVE:
        return F + rule.value * e.expected_move
    if rule.kind is StrikeKind.DELTA:
        return _delta_strike(e, option_type, rule.value, view.symbol)
    if ref_strike is None:
        raise ValueError("a relative rule needs the reference strike")
    return ref_strike + relative_steps(e, rule) * e.step


def relative_steps(e: ExpiryInfo, rule: StrikeRule) -> int:
    """Whole strike steps of a relative rule (an expected-move fraction rounds to at least
    ``rule.min_steps`` steps)."""
    if rule.unit == "steps":
        return int(round(rule.value))
    if rule.value == 0:
        return 0
    n = int(round(rule.value * e.expected_move / e.step))
    return int(np.sign(rule.value)) * max(abs(n), rule.min_steps)


def _delta_strike(e: ExpiryInfo, option_type: str, d: float, symbol: str) -> float:
    """Strike whose forward delta is ``d`` (call) or ``-d`` (put), from the smile."""
    k, iv = e.smile_k, e.smile_iv
    if k.size < 2 or e.t_years <= 0:
        raise StrategyUnavailable(f"no implied vols on {e.expiry} to place a delta target", symbol=symbol,
                                  field="iv")
    sq = iv * np.sqrt(e.t_years)
    call_delta = ndtr((np.log(e.forward / k) + 0.5 * sq * sq) / sq)  # decreasing in K
    call_delta = np.minimum.accumulate(call_delta)  # monotone despite a noisy smile
    want = d if option_type == "CE" else 1.0 - d
    # np.interp needs increasing x: reverse
    return float(np.interp(want, call_delta[::-1], k[::-1]))


def select_strike(view: ChainView, e: ExpiryInfo, option_type: str, rule: StrikeRule, *,
                  ref_strike: float | None = None, levels: tuple[LiquidityLevel, ...] = LEVELS,
                  weights: ScoreWeights = ScoreWeights(), strategy: str | None = None,
                  allowed: np.ndarray | None = None) -> Selection:
    """Choose a listed strike for one leg (see the module docstring); raises :class:`StrategyUnavailable`.

    ``allowed``: when given, only these strikes qualify (a leg whose strike another leg must match
    exactly, e.g. the front leg of a calendar, is limited to strikes the other expiry lists).
    """
    target = target_strike(view, e, option_type, rule, ref_strike)
    sl = view.side(e, option_type)
    a = view.arrays
    k = a["strike"][sl]
    if k.size == 0:
        raise StrategyUnavailable(f"no {option_type} contracts on {e.expiry}", strategy=strategy,
                                  symbol=view.symbol, session=view.session, field="option_type")
    oi, vol = a["oi0"][sl], a["volume0"][sl]
    two_sided, spread, priced = a["two_sided"][sl], a["spread_pct"][sl], a["priced"][sl]
    dist = np.abs(k - target)
    tol = 1e-9 * max(abs(target), 1.0)
    if rule.kind is StrikeKind.RELATIVE and ref_strike is not None:
        n = relative_steps(e, rule)
        if rule.exact:
            geometric = dist <= max(tol, 1e-6 * e.step)
        elif n > 0:
            geometric = k > ref_strike + tol
        elif n < 0:
            geometric = k < ref_strike - tol
        else:
            geometric = np.ones(k.size, bool)
    elif rule.kind is StrikeKind.DELTA and rule.value != 0.5:
        # a delta below 0.5 is an out-of-the-money strike, above 0.5 in the money
        otm = k > e.forward if option_type == "CE" else k < e.forward
        geometric = otm if rule.value < 0.5 else ~otm & (k != e.forward)
    else:
        geometric = np.ones(k.size, bool)
    if allowed is not None:
        geometric &= np.isin(np.round(k, 6), np.round(allowed, 6))
    if not geometric.any():
        if rule.kind is StrikeKind.DELTA:
            why = f"{'out-of' if rule.value < 0.5 else 'in'}-the-money strike for {rule.describe()}"
        elif ref_strike is None:
            why = "strike that the position's other legs can match exactly"
        elif rule.exact:
            why = f"strike {target:g} (exactly {relative_steps(e, rule):+d} steps of {e.step:g} from {ref_strike:g})"
        else:
            why = f"strike beyond {ref_strike:g}"
        raise StrategyUnavailable(f"no {option_type} {why} listed on {e.expiry}", strategy=strategy,
                                  symbol=view.symbol, session=view.session, field="strike")
    log_oi_max = np.log1p(oi.max()) if oi.size else 0.0
    log_vol_max = np.log1p(vol.max()) if vol.size else 0.0
    for li, lv in enumerate(levels):
        window = lv.window_steps * e.step
        ok = geometric & priced & (oi >= lv.min_oi) & (vol >= lv.min_volume) & (spread <= lv.max_spread_pct)
        if lv.two_sided:
            ok &= two_sided
        if not rule.exact:
            ok &= dist <= window + tol
        if not ok.any():
            continue
        idx = np.flatnonzero(ok)
        s_dist = 1.0 - np.minimum(dist[idx] / max(window, 1e-12), 1.0)
        s_liq = np.log1p(oi[idx]) / log_oi_max if log_oi_max > 0 else np.zeros(idx.size)
        s_vol = np.log1p(vol[idx]) / log_vol_max if log_vol_max > 0 else np.zeros(idx.size)
        norm = min(lv.max_spread_pct, 1.0)
        s_spread = 1.0 - np.minimum(np.where(np.isfinite(spread[idx]), spread[idx], norm) / norm, 1.0)
        score = (weights.distance * s_dist + weights.liquidity * s_liq + weights.spread * s_spread
                 + weights.volume * s_vol)
        best = int(idx[np.argmax(score)])  # ties: the lower strike (first)
        return Selection(index=sl.start + best, strike=float(k[best]), target=float(target), level=li,
                         level_name=lv.name, score=float(score.max()))
    where = "exactly at" if rule.exact else f"within {levels[-1].window_steps:g} steps of"
    raise StrategyUnavailable(
        f"no priced {option_type} strike {where} target {target:.2f} on {e.expiry} ({rule.describe()}), "
        f"even at the loosest liquidity level", strategy=strategy, symbol=view.symbol, session=view.session,
        field="strike")


def validate(strikes: list[float | None], constraints: tuple[Constraint, ...], *, step: float,
             strategy: str | None = None, symbol: str | None = None, session: dt.date | None = None) -> None:
    """Check a position's strike relationships; :class:`StrategyUnavailable` names the one broken."""
    tol = 1e-6 * max(step, 1e-9)
    for c in constraints:
        ks = [strikes[i] for i in c.legs]
        if any(k is None for k in ks):
            raise StrategyUnavailable(f"constraint {c.describe()} on legs without strikes", strategy=strategy,
                                      symbol=symbol, session=session, field="strike")
        ok = True
        if c.kind == "increasing":
            ok = all(b > a + tol for a, b in zip(ks, ks[1:], strict=False))
        elif c.kind == "same_strike":
            ok = all(abs(k - ks[0]) <= tol for k in ks)
        elif c.kind == "equal_width":
            lo, mid, hi = ks
            ok = mid - lo > tol and abs((hi - mid) - (mid - lo)) <= tol
        elif c.kind == "wider_upper":
            lo, mid, hi = ks
            ok = mid - lo > tol and (hi - mid) > (mid - lo) + tol
        if not ok:
            raise StrategyUnavailable(
                f"strikes {', '.join(f'{k:g}' for k in ks)} of legs {c.legs} break {c.kind}", strategy=strategy,
                symbol=symbol, session=session, field="strike")
