"""Strategy creation, the pure domain core (numpy/polars, no Dagster).

* :mod:`.catalogue` -- declarative strategy definitions (:data:`CATALOGUE`);
* :mod:`.strikes` -- chain views, strike selection with liquidity fallbacks, strike validation;
* :mod:`.build` -- candidates (legs at executable prices) for every buildable strategy;
* :mod:`.analytics` -- payoff, max profit/loss, breakevens, POP, expected value, greeks, margin
  (:mod:`.leg_arrays` holds the padded leg arrays and P&L functions, :mod:`.margin` the SPAN-like margin);
* :mod:`.scoring` -- scores, conviction, risk filters and ranking (:mod:`.scoring_config` the YAML,
  :mod:`.market_view` the view per underlying);
* :mod:`.payoff_curves` -- the payoff curves a chart draws (the drawing is in :mod:`options_v4_dagster.reports`).

Typical use on one session::

    iv = surface.chain_iv(chains)                 # any number of symbols
    candidates, failures = build_candidates(iv)   # failures: (symbol, strategy, reason)
    analyze(candidates)                           # fills candidate.analytics
"""

from .analytics import Analytics, Greeks, MarginDetail, MarginParams, PopInputs, analyze, pnl_at_front_expiry
from .build import BuildConfig, BuildFailure, Candidate, Leg, build_candidates, build_strategy, build_symbol
from .catalogue import CATALOGUE, StrategyDef, by_name
from .strikes import LEVELS, ChainView, StrategyUnavailable, chain_views, select_strike

__all__ = [
    "CATALOGUE", "LEVELS", "Analytics", "BuildConfig", "BuildFailure", "Candidate", "ChainView", "Greeks", "Leg",
    "MarginDetail", "MarginParams", "PopInputs", "StrategyDef", "StrategyUnavailable", "analyze", "build_candidates",
    "build_strategy", "build_symbol", "by_name", "chain_views", "pnl_at_front_expiry", "select_strike",
]
