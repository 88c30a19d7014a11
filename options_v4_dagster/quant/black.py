"""Black-76 and Black-Scholes-Merton pricing, vectorized with numpy broadcasting."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr


def black76_price(F, K, T, sigma, is_call, df=1.0):
    """Black-76 price of a European option on a forward ``F``; ``df`` is the discount factor.

    All arguments broadcast. ``is_call`` is a bool array (True = call).
    """
    F, K, T, sigma, df = (np.asarray(x, dtype=float) for x in (F, K, T, sigma, df))
    is_call = np.asarray(is_call, dtype=bool)
    sq = sigma * np.sqrt(np.maximum(T, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(F / K) + 0.5 * sq * sq) / sq
    d2 = d1 - sq
    call = F * ndtr(d1) - K * ndtr(d2)
    put = K * ndtr(-d2) - F * ndtr(-d1)
    intrinsic = np.where(is_call, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
    price = np.where(sq > 0, np.where(is_call, call, put), intrinsic)
    return df * price


def bsm_price(S, K, T, r, sigma, is_call, q=0.0):
    """Black-Scholes-Merton price on spot ``S`` with rate ``r`` and dividend yield ``q`` (continuous)."""
    S, K, T, r, q = (np.asarray(x, dtype=float) for x in (S, K, T, r, q))
    F = S * np.exp((r - q) * T)
    return black76_price(F, K, T, sigma, is_call, df=np.exp(-r * T))
