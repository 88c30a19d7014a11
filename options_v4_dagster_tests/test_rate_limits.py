"""Dhan's limits across processes (issue 13, item 5): one ledger (rate_limiter.SharedRateLimiter) shared by
every process, checked by the order of its recorded timestamps and by the arrivals at the Dhan stand-in,
never by how fast anything ran; and the Dagster pool of the steps that call Dhan."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import random
import time
from pathlib import Path

import pytest

from options_v4_dagster.errors import RateLimited
from options_v4_dagster.market.dhan_limits import DAGSTER_POOL, DhanRateLimits, buckets_for
from options_v4_dagster.rate_limiter import SharedRateLimiter, window_violations
from options_v4_dagster_tests.dhan_order_standin import max_in_window
from options_v4_dagster_tests.dhan_standin import DhanStandIn

SESSION = dt.date(2025, 7, 17)
RATES = ((3, 400), (5, 1_000))


def _hammer(path: str, name: str, n: int, barrier) -> None:
    """A worker process: ``n`` requests through the shared bucket, each 'in flight' 0-30 ms."""
    lim = SharedRateLimiter(path, retain_seconds=3_600, max_wait=60)
    rng = random.Random(name)
    barrier.wait(timeout=60)
    for i in range(n):
        with lim.slot(f"{name}-{i}", [("acct:data-api", RATES)]):
            time.sleep(rng.uniform(0.0, 0.03))
    lim.close()


def _spawn(target, args_list) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(args_list))
    procs = [ctx.Process(target=target, args=(*args, barrier)) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_two_processes_hammering_one_bucket_keep_every_window(tmp_path):
    path = str(tmp_path / "ledger.sqlite")
    _spawn(_hammer, [(path, "a", 12), (path, "b", 12)])
    lim = SharedRateLimiter(path, retain_seconds=3_600)
    rows = lim.ledger("acct:data-api")
    lim.close()
    labels = [label for _, label, _, _ in rows]
    assert len(rows) == 24 and {x[0] for x in labels} == {"a", "b"}
    assert all(done is not None and done >= sent for _, _, sent, done in rows)
    # both processes drew from the bucket while the other did (their requests interleave in the ledger)
    assert any(labels[i][0] != labels[i + 1][0] for i in range(len(labels) - 1))
    assert window_violations([(sent, done) for _, _, sent, done in rows], RATES) == []
    sent = [s for _, _, s, _ in rows]
    assert max_in_window(sent, 0.4) <= 3 and max_in_window(sent, 1.0) <= 5


def test_window_violations_sees_a_per_process_limit():
    """The checker fails a ledger written by two processes that each kept the limit alone."""
    one = [(t, t + 0.01) for t in (0.0, 0.1, 0.2)]
    other = [(t + 0.05, t + 0.06) for t in (0.0, 0.1, 0.2)]
    assert window_violations(one, ((3, 400),)) == [] and window_violations(other, ((3, 400),)) == []
    assert window_violations(one + other, ((3, 400),))
    # a request still in flight (no answer yet) counts until it comes back
    assert window_violations([(0.0, None), (5.0, 5.1)], ((1, 1_000),))


def test_a_call_holds_a_slot_in_every_bucket_of_its_throttle_keys(tmp_path):
    key = ("optionchain", "13", "IDX_I", dt.date(2025, 7, 24))
    buckets = buckets_for("dhan_1", [("data-api", 0.2), (key, 3.05)])
    assert buckets == [("dhan_1:data-api", ((5, 1_000),)),
                       ("dhan_1:optionchain:13:IDX_I:2025-07-24", ((1, 3_050),))]
    limits = DhanRateLimits.open(tmp_path / "l.sqlite", "1", max_wait=0, retain_seconds=60)
    with limits.slot("chain", [("data-api", 0.2), (key, 3.05)]):
        pass
    assert limits.limiter.count("dhan_1:data-api") == 1
    assert limits.limiter.count("dhan_1:optionchain:13:IDX_I:2025-07-24") == 1
    # the chain's own bucket is full for 3.05 s: another process's request is refused at once (max_wait 0),
    # typed, and takes no slot in the data-api bucket either
    other = DhanRateLimits.open(tmp_path / "l.sqlite", "1", max_wait=0, retain_seconds=60)
    with pytest.raises(RateLimited, match="nothing sent") as err:
        with other.slot("chain again", [("data-api", 0.2), (key, 3.05)]):
            pass
    assert err.value.code == "LOCAL-RATE-LIMIT" and not err.value.retryable
    assert limits.limiter.count("dhan_1:data-api") == 1
    limits.close()
    other.close()


def _dhan_worker(env: dict, bars: int, quotes: int, barrier) -> None:
    """A worker process calling the stand-in through DhanProvider.from_env (as a Dagster step would)."""
    os.environ.update(env)
    from options_v4_dagster.market.dhan import DhanProvider

    p = DhanProvider.from_env()
    barrier.wait(timeout=120)
    for i in range(max(bars, quotes)):
        if i < bars:
            p.daily_bars("NIFTY", SESSION - dt.timedelta(days=10 + i), SESSION)
        if i < quotes:
            p.quotes([str(40_000 + i)])
    p.close()


def test_two_dhan_processes_keep_dhans_limits_together(tmp_path):
    """Two processes (two Dagster steps, or a run and the CLI) each call the data APIs and the quote API:
    the arrivals at the stand-in keep Dhan's 5/s and 1/s together, not each. With ``DHAN_RATE_LIMITER=off``
    (each process throttled alone, as before) the same test sees up to twice the limit."""
    with DhanStandIn(today=SESSION) as standin:
        env = {**standin.env(), "OPTIONS_V4_HOME": str(tmp_path / "home"),
               "DHAN_RATE_LIMITER": os.environ.get("OPTIONS_V4_TEST_RATE_LIMITER", "on")}
        _spawn(_dhan_worker, [(env, 8, 2), (env, 8, 2)])
        bars = [r.at for r in standin.calls("/v2/charts/historical")]
        quotes = [r.at for r in standin.calls("/v2/marketfeed/quote")]
    assert len(bars) == 16 and len(quotes) == 4
    assert max_in_window(bars, 1.0) <= 5, "data APIs: more than 5 requests arrived within one second"
    assert max_in_window(quotes, 1.0) <= 1, "quote API: more than 1 request arrived within one second"
    assert Path(tmp_path / "home" / "dhan_rate_limiter.sqlite").exists()


def test_the_assets_that_call_dhans_data_apis_share_one_dagster_pool():
    from options_v4_dagster.definitions import defs

    graph = defs().resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()}
    assert pools["option_chains"] == {DAGSTER_POOL} and pools["underlying_bars"] == {DAGSTER_POOL}
    assert not pools["iv_history"]  # warehouse-only steps stay out of it
