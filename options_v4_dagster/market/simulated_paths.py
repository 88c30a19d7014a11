"""The simulated market's paths: one continuous daily path per symbol over a fixed session grid
(NSE sessions from :data:`GRID_START` to :data:`GRID_END`), generated once per process and cached.
Everything is seeded from ``(seed, zlib.crc32(name))`` — never Python's ``hash()`` — so the output is
the same in every process.

The model:

- a market volatility state (NIFTY's instantaneous vol): log-vol Ornstein-Uhlenbeck plus slow
  calm / normal / stressed regimes plus decaying spikes that come with crash jumps; NIFTY's
  return shocks are negatively correlated with the vol shocks (leverage);
- every other underlying loads on that market shock (correlation ``rho_m``), on an industry
  factor (``rho_s``) and on its own noise; its vol follows the market state to a power
  ``gamma`` times its own log-vol OU, with idiosyncratic jumps;
- the path is anchored so its close on :data:`ANCHOR_DATE` (2025-09-11) is the universe's
  ``reference_price`` (NIFTY 25005.5); symbols without one get a price in 200..5000 from the seed;
- ATM implied vol (:func:`atm_iv`): the expected average variance of the mean-reverting vol state
  times a variance risk premium;
- ``INDIAVIX`` is NIFTY's 30-day ATM implied vol x 100 (times a small smile premium and noise).
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import calendar, universe
from ..errors import DataUnavailable

GRID_START = dt.date(2015, 1, 1)
GRID_END = dt.date(2030, 12, 31)
ANCHOR_DATE = dt.date(2025, 9, 11)
NIFTY_ANCHOR = 25005.5
VIX = universe.VIX_SYMBOL
MARKET = "NIFTY"
DAYS = 252.0

_MARKET_VOL = 0.13  # NIFTY's typical vol
_VOL_KAPPA = 6.0  # mean reversion (1/yr) of the vol state, for the implied-vol term structure

# base vol, corr with NIFTY, corr with the industry factor, industry factor, drift
_INDEX_PARAMS: dict[str, tuple[float, float, float, str | None, float]] = {
    "NIFTY": (0.13, 1.0, 0.0, None, 0.11),
    "BANKNIFTY": (0.155, 0.82, 0.45, "Financial Services", 0.12),
    "FINNIFTY": (0.15, 0.85, 0.42, "Financial Services", 0.12),
    "MIDCPNIFTY": (0.175, 0.80, 0.0, None, 0.15),
    "NIFTYNXT50": (0.165, 0.88, 0.0, None, 0.13),
}
_INDEX_OI = {"NIFTY": 150_000.0, "BANKNIFTY": 40_000.0, "FINNIFTY": 6_000.0, "MIDCPNIFTY": 8_000.0,
             "NIFTYNXT50": 1_500.0}
_INDEX_VOLUME = {"NIFTY": 2.5e8, "BANKNIFTY": 1.5e8, "FINNIFTY": 6e7, "MIDCPNIFTY": 5e7, "NIFTYNXT50": 4e7}
_INDUSTRY_VOL = {
    "Fast Moving Consumer Goods": 0.22, "Information Technology": 0.26, "Healthcare": 0.27,
    "Telecommunication": 0.26, "Financial Services": 0.30, "Automobile and Auto Components": 0.29,
    "Oil Gas & Consumable Fuels": 0.28, "Construction Materials": 0.27, "Consumer Durables": 0.30,
    "Chemicals": 0.31, "Capital Goods": 0.33, "Services": 0.31, "Consumer Services": 0.33,
    "Construction": 0.33, "Power": 0.35, "Metals & Mining": 0.36, "Realty": 0.39, "Textiles": 0.33,
}


# --- seeding and the session grid -------------------------------------------------------------

def name_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def seeded_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *keys]))


@lru_cache(maxsize=1)
def session_grid() -> np.ndarray:
    """The fixed session grid as datetime64[D] (read-only)."""
    arr = np.array(calendar.sessions_between(GRID_START, GRID_END), dtype="datetime64[D]")
    arr.flags.writeable = False
    return arr


@lru_cache(maxsize=1)
def anchor_index() -> int:
    grid = session_grid()
    i = int(np.searchsorted(grid, np.datetime64(ANCHOR_DATE, "D")))
    assert grid[i] == np.datetime64(ANCHOR_DATE, "D"), "anchor date must be a session"
    return i


def session_index(session: dt.date, symbol: str) -> int:
    grid = session_grid()
    d = np.datetime64(session, "D")
    i = int(np.searchsorted(grid, d))
    if i >= grid.size or grid[i] != d:
        if session < GRID_START or session > GRID_END:
            raise DataUnavailable(f"the simulated market covers sessions {GRID_START}..{GRID_END} only",
                                  symbol=symbol, session=session)
        raise DataUnavailable("not an NSE trading session", symbol=symbol, session=session)
    return i


def _ar_filter(u: np.ndarray, phi: float, y0: float = 0.0) -> np.ndarray:
    """``y[t] = phi * y[t-1] + u[t]`` with ``y[-1] = y0``, vectorized in chunks short enough that
    ``phi ** -len`` stays finite (scipy.signal.lfilter would do, but importing it costs ~1.5 s)."""
    u = np.asarray(u, dtype=float)
    out = np.empty_like(u)
    chunk = max(1, min(u.size, int(300.0 / -math.log(phi)))) if 0.0 < phi < 1.0 else 1
    powers = phi ** np.arange(chunk, dtype=float)
    prev = y0
    for s in range(0, u.size, chunk):
        seg = u[s:s + chunk]
        pw = powers[:seg.size]
        out[s:s + seg.size] = pw * (phi * prev + np.cumsum(seg / pw))
        prev = out[s + seg.size - 1]
    return out


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float, burn: int = 300) -> np.ndarray:
    """A stationary AR(1) with persistence ``phi`` and stationary std ``sd`` (vectorized)."""
    eps = rng.standard_normal(n + burn) * (sd * math.sqrt(1.0 - phi * phi))
    return _ar_filter(eps, phi)[burn:]


def _decay(impulses: np.ndarray, phi: float) -> np.ndarray:
    return _ar_filter(impulses, phi)


def _ro(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# --- the market state (NIFTY's vol and shocks) -----------------------------------------------

@dataclass(frozen=True)
class MarketState:
    sigma: np.ndarray  # NIFTY's instantaneous annual vol at each session's close
    sigma_long: np.ndarray  # the level it reverts to (slow regimes)
    z: np.ndarray  # standard normal return shocks
    jump: np.ndarray  # log-return jumps (crash days)


def _regimes(rng: np.random.Generator, n: int) -> np.ndarray:
    levels = (-0.22, 0.0, 0.40)  # calm, normal, stressed (log-vol offsets)
    mean_days = (170, 150, 55)
    nxt = ((1, 2), (0, 2), (1, 0))
    nxt_p = ((0.85, 0.15), (0.6, 0.4), (0.8, 0.2))
    out = np.empty(n)
    i, state = 0, 1
    while i < n:
        dur = int(rng.geometric(1.0 / mean_days[state]))
        out[i:i + dur] = levels[state]
        i += dur
        state = nxt[state][0] if rng.random() < nxt_p[state][0] else nxt[state][1]
    a = 1.0 / 12.0  # regime shifts take a few weeks to show
    return _ar_filter(a * out, 1.0 - a, y0=out[0])


@lru_cache(maxsize=8)
def market_state(seed: int) -> MarketState:
    n = session_grid().size
    k = name_key("market")
    regime = _regimes(seeded_rng(seed, k, 1), n)
    rng_x = seeded_rng(seed, k, 2)
    burn = 300
    eps = rng_x.standard_normal(n + burn)
    phi = math.exp(-1.0 / 30.0)
    x = _ar_filter(0.26 * math.sqrt(1 - phi * phi) * eps, phi)[burn:]
    w = seeded_rng(seed, k, 3).standard_normal(n)
    z = -0.55 * eps[burn:] + math.sqrt(1 - 0.55 ** 2) * w  # leverage: vol up <-> returns down
    rng_j = seeded_rng(seed, k, 4)
    events = rng_j.random(n) < 0.012
    size = rng_j.exponential(0.40, n) * events
    spike = _decay(size, math.exp(-1.0 / 12.0))
    jump = -size * (0.02 + 0.04 * rng_j.random(n))  # a vol spike comes with a 1-4% gap down
    log_long = math.log(_MARKET_VOL) - 0.03 + regime
    sigma = np.clip(np.exp(log_long + x + spike), 0.075, 0.90)
    return MarketState(sigma=_ro(sigma), sigma_long=_ro(np.exp(log_long)), z=_ro(z), jump=_ro(jump))


@lru_cache(maxsize=64)
def sector_factor(seed: int, industry: str) -> np.ndarray:
    return _ro(seeded_rng(seed, name_key("industry:" + industry)).standard_normal(session_grid().size))


# --- per-symbol parameters and paths ---------------------------------------------------------

@dataclass(frozen=True)
class SymbolParams:
    symbol: str
    is_index: bool
    ref_price: float
    strike_step: float
    lot_size: int
    base_vol: float
    rho_m: float
    rho_s: float
    sector: str | None
    gamma: float
    drift: float
    idio_sd: float
    jump_p: float
    vrp: float
    skew: float
    curv: float
    liquidity: float  # 0 (illiquid) .. 1
    base_oi: float  # contracts at the money on a near expiry
    bar_volume: float  # shares a day


def default_step(price: float) -> float:
    for limit, step in ((100, 1.0), (250, 2.5), (500, 5.0), (1000, 10.0), (2500, 20.0), (5000, 50.0)):
        if price < limit:
            return step
    return 100.0


@lru_cache(maxsize=1024)
def symbol_params(seed: int, symbol: str) -> SymbolParams:
    u = universe.get(symbol)  # DataError for an unknown symbol
    rng = seeded_rng(seed, name_key(u.symbol), name_key("params"))
    r = rng.random(12)
    if u.symbol == MARKET:
        ref = NIFTY_ANCHOR
    elif u.reference_price and u.reference_price > 0:
        ref = float(u.reference_price)
    else:
        ref = round(200.0 * 25.0 ** r[0], 2)
    step = float(u.strike_step) if u.strike_step and u.strike_step > 0 else default_step(ref)
    if u.is_index:
        vol, rho_m, rho_s, sector, drift = _INDEX_PARAMS.get(u.symbol, (0.16, 0.85, 0.0, None, 0.12))
        return SymbolParams(
            symbol=u.symbol, is_index=True, ref_price=ref, strike_step=step, lot_size=u.lot_size,
            base_vol=vol, rho_m=rho_m, rho_s=rho_s, sector=sector, gamma=1.0, drift=drift,
            idio_sd=0.0 if u.symbol == MARKET else 0.08, jump_p=0.0, vrp=1.08,
            skew=0.085, curv=0.025, liquidity=1.0, base_oi=_INDEX_OI.get(u.symbol, 5_000.0),
            bar_volume=_INDEX_VOLUME.get(u.symbol, 5e7),
        )
    base = _INDUSTRY_VOL.get(u.industry, 0.31) + 0.05 * (r[1] - 0.5) * 2
    liq = float(r[7])
    return SymbolParams(
        symbol=u.symbol, is_index=False, ref_price=ref, strike_step=step, lot_size=u.lot_size,
        base_vol=float(np.clip(base, 0.20, 0.45)), rho_m=0.40 + 0.30 * r[2], rho_s=0.15 + 0.20 * r[3],
        sector=u.industry, gamma=0.5 + 0.4 * r[4], drift=0.02 + 0.14 * r[5], idio_sd=0.18,
        jump_p=0.004 + 0.006 * r[6], vrp=1.04, skew=0.03 + 0.03 * r[8], curv=0.03 + 0.02 * r[9],
        liquidity=liq, base_oi=300.0 + 6_000.0 * liq * liq,
        bar_volume=10.0 ** (8.7 + 1.6 * r[10]) * (0.5 + liq) / ref,
    )


@dataclass(frozen=True)
class SymbolPath:
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    sigma: np.ndarray  # instantaneous annual vol at the close
    sigma_long: np.ndarray  # the level it mean-reverts to
    iv_noise: np.ndarray  # log-noise of implied vol over the model's
    vrp: float


def atm_iv(sigma, sigma_long, T, vrp, noise):
    """ATM implied vol for maturity ``T`` (years): the expected average variance of the
    mean-reverting vol state, times a variance risk premium and a noise factor."""
    T = np.maximum(np.asarray(T, dtype=float), 1e-6)
    kt = _VOL_KAPPA * T
    w = -np.expm1(-kt) / kt
    var = sigma_long ** 2 + (sigma ** 2 - sigma_long ** 2) * w
    return vrp * np.sqrt(var) * np.exp(noise)


def _ohlcv(rng: np.random.Generator, close: np.ndarray, r: np.ndarray, sd: np.ndarray, p: SymbolParams,
           sigma: np.ndarray, sigma_long: np.ndarray) -> tuple[np.ndarray, ...]:
    n = close.size
    z = rng.standard_normal((4, n))
    gap = 0.3 * r + 0.25 * sd * z[0]
    prev = np.concatenate([[close[0] * math.exp(-r[0])], close[:-1]])
    opn = np.round(prev * np.exp(gap), 2)
    hi_base, lo_base = np.maximum(opn, close), np.minimum(opn, close)
    high = np.maximum(np.round(hi_base * np.exp(0.5 * sd * np.abs(z[1])), 2), hi_base)
    low = np.minimum(np.round(lo_base * np.exp(-0.5 * sd * np.abs(z[2])), 2), lo_base)
    activity = np.exp(0.35 * z[3]) * (1.0 + 0.6 * np.abs(r) / np.maximum(sd, 1e-9)) * np.sqrt(sigma / sigma_long)
    volume = np.round(p.bar_volume * activity / 1.6)
    return opn, high, low, volume


@lru_cache(maxsize=1024)
def symbol_path(seed: int, symbol: str) -> SymbolPath:
    p = symbol_params(seed, symbol)
    m = market_state(seed)
    n = session_grid().size
    k = name_key(p.symbol)
    if p.symbol == MARKET:
        sigma, sigma_long = m.sigma, m.sigma_long
        shock, jumps = m.z, m.jump
    else:
        rel = (m.sigma / _MARKET_VOL) ** p.gamma
        rel_long = (m.sigma_long / _MARKET_VOL) ** p.gamma
        y = _ar1(seeded_rng(seed, k, 1), n, math.exp(-1.0 / 40.0), p.idio_sd) if p.idio_sd else 0.0
        rng_j = seeded_rng(seed, k, 2)
        events = rng_j.random(n) < p.jump_p
        jsize = rng_j.exponential(0.35, n) * events
        sigma = np.clip(p.base_vol * rel * np.exp(y + _decay(jsize, math.exp(-1.0 / 10.0))), 0.06, 1.5)
        sigma_long = p.base_vol * rel_long
        e = seeded_rng(seed, k, 3).standard_normal(n)
        sec = sector_factor(seed, p.sector) if p.sector and p.rho_s else 0.0
        resid = math.sqrt(max(1.0 - p.rho_m ** 2 - p.rho_s ** 2, 0.0))
        shock = p.rho_m * m.z + p.rho_s * sec + resid * e
        beta = p.rho_m * p.base_vol / _MARKET_VOL
        sign = np.where(rng_j.random(n) < 0.55, -1.0, 1.0)
        jumps = beta * m.jump + sign * jsize * p.base_vol / 4.0
    sd_prev = np.concatenate([[sigma[0]], sigma[:-1]]) / math.sqrt(DAYS)  # vol known at the previous close
    r = sd_prev * shock + jumps + (p.drift / DAYS - 0.5 * sd_prev ** 2)
    r[0] = 0.0
    log_s = np.cumsum(r)
    a = anchor_index()
    close = np.round(p.ref_price * np.exp(log_s - log_s[a]), 2)
    close[a] = round(p.ref_price, 2)
    opn, high, low, volume = _ohlcv(seeded_rng(seed, k, 4), close, r, sd_prev, p, sigma, sigma_long)
    noise = _ar1(seeded_rng(seed, k, 5), n, 0.8, 0.03 if p.is_index else 0.04)
    return SymbolPath(open=_ro(opn), high=_ro(high), low=_ro(low), close=_ro(close), volume=_ro(volume),
                 sigma=_ro(np.asarray(sigma, dtype=float)), sigma_long=_ro(np.asarray(sigma_long, dtype=float)),
                 iv_noise=_ro(noise), vrp=p.vrp)


@lru_cache(maxsize=8)
def vix_path(seed: int) -> SymbolPath:
    """India VIX: NIFTY's 30-day ATM implied vol x 100, with a small smile premium and noise."""
    nifty = symbol_path(seed, MARKET)
    n = session_grid().size
    rng = seeded_rng(seed, name_key(VIX), 1)
    z = rng.standard_normal((4, n))
    iv30 = atm_iv(nifty.sigma, nifty.sigma_long, 30.0 / 365.0, nifty.vrp, nifty.iv_noise)
    close = np.round(100.0 * iv30 * 1.03 * np.exp(0.015 * z[0]), 2)
    prev = np.concatenate([[close[0]], close[:-1]])
    opn = np.round(prev * np.exp(0.03 * z[1]), 2)
    high = np.maximum(np.round(np.maximum(opn, close) * np.exp(0.04 * np.abs(z[2])), 2), np.maximum(opn, close))
    low = np.minimum(np.round(np.minimum(opn, close) * np.exp(-0.04 * np.abs(z[3])), 2), np.minimum(opn, close))
    return SymbolPath(open=_ro(opn), high=_ro(high), low=_ro(low), close=_ro(close), volume=_ro(np.zeros(n)),
                 sigma=nifty.sigma, sigma_long=nifty.sigma_long, iv_noise=nifty.iv_noise, vrp=nifty.vrp)
