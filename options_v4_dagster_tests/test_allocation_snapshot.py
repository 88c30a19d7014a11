"""Allocation snapshots: the content hash (allocation_id) and the append-only store."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from options_v4_dagster.allocation.config import load_market_conditions
from options_v4_dagster.allocation.industries import IndustryAllocations, default_industry_allocations
from options_v4_dagster.allocation.snapshot import allocation_id, canonical_json, snapshot_inputs

D = dt.date(2025, 7, 17)


def _positions(**over) -> pl.DataFrame:
    rows = [{"position_id": "AL-S1", "strategy_id": "S1", "symbol": "INFY", "lots": 2, "capital_used": 120000.0,
             "weight": 0.08, "pop": 0.61, "max_loss": None},
            {"position_id": "AL-S2", "strategy_id": "S2", "symbol": "TCS", "lots": 1, "capital_used": 90000.0,
             "weight": 0.06, "pop": 0.55, "max_loss": -4000.0}]
    for k, v in over.items():
        rows[0][k] = v
    return pl.DataFrame(rows)


def _id(capital=1_500_000.0, industries=None, positions=None, risk="moderate", rules=None) -> str:
    rules = rules or load_market_conditions().resolve(None, None, None)
    return allocation_id(snapshot_inputs(D, capital, rules, industries or default_industry_allocations(), risk,
                                         _positions() if positions is None else positions))


def test_canonical_json_ignores_key_and_row_order():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    assert canonical_json({"x": {"q": 1.0, "p": None}}) == '{"x":{"p":null,"q":1.0}}'
    assert _id(positions=_positions()) == _id(positions=_positions().reverse())
    assert _id(positions=_positions()) == _id(positions=_positions().select(list(reversed(_positions().columns))))


def test_float_rounding_is_stable():
    assert canonical_json(0.1 + 0.2) == canonical_json(0.3)
    assert canonical_json(-0.0) == canonical_json(0.0)
    assert canonical_json(1_500_000) == canonical_json(1_500_000.0)
    assert canonical_json(float("nan")) == "null"
    assert _id(capital=1_500_000) == _id(capital=1_500_000.0 + 1e-9)
    assert _id(positions=_positions(weight=0.08)) == _id(positions=_positions(weight=0.02 * 4))


def test_the_id_is_deterministic_and_changes_with_every_input():
    base = _id()
    assert base == _id() and len(base) == 64 and int(base, 16) >= 0
    assert _id(capital=3_000_000.0) != base
    assert _id(risk="aggressive") != base
    assert _id(positions=_positions(lots=3)) != base
    ind = default_industry_allocations()
    first = ind.industries[0]
    other = IndustryAllocations.from_weights(
        {k: (0.0 if k == first else v) for k, v in ind.weights.items()}, ind.position_types,
        symbol_industry=ind.symbol_industry, source=ind.source)
    assert _id(industries=other) != base
    views = {k: ("SHORT" if k == first and v != "SHORT" else ("LONG" if k == first else v))
             for k, v in ind.position_types.items()}
    flipped = IndustryAllocations.from_weights(ind.weights, views, symbol_industry=ind.symbol_industry,
                                               source=ind.source)
    assert _id(industries=flipped) != base
    rules = load_market_conditions().resolve(None, None, None)
    assert _id(rules=rules.with_limits(max_positions=rules.position_limits.max_positions - 1)) != base


def test_the_inputs_are_plain_json():
    rules = load_market_conditions().resolve(None, None, None)
    inputs = snapshot_inputs(D, 1_500_000.0, rules, default_industry_allocations(), "moderate", _positions())
    assert inputs["trade_date"] == "2025-07-17" and inputs["rules"]["state"] == rules.state
    assert inputs["industries"]["weights"] and inputs["positions"][0]["position_id"] == "AL-S1"
    with pytest.raises(TypeError):
        canonical_json({"x": object()})


# -- the append-only store ------------------------------------------------------------------------------


def _frames(aid: str, capital: float, n: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    now = dt.datetime.now(dt.UTC)
    summary = pl.DataFrame([{"allocation_id": aid, "trade_date": D, "capital": capital, "capital_used": 1000.0 * n,
                             "deployment": 0.5, "positions": n, "rules": "{}", "industry_views": "{}",
                             "created_at": now}], schema_overrides={"created_at": pl.Datetime("us", "UTC")})
    pos = pl.DataFrame([{"allocation_id": aid, "position_id": f"AL-S{i}", "trade_date": D, "strategy_id": f"S{i}",
                         "symbol": f"SYM{i}", "strategy_name": "Bull Put Spread", "tier": "tier1", "lots": 1,
                         "capital_used": 1000.0, "capital": capital, "created_at": now} for i in range(n)],
                       schema_overrides={"created_at": pl.Datetime("us", "UTC")})
    return summary, pos


def _store(wh, run_id: str, aid: str, capital: float) -> bool:
    from options_v4_dagster.store.allocations import snapshot_appends

    summary, pos = _frames(aid, capital)
    return wh.replace_together(snapshot_appends(run_id, D, aid, summary, pos))[0].inserted > 0


def test_snapshots_are_inserted_once_and_the_latest_run_names_the_latest(tmp_path):
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.allocations import latest_snapshot, session_snapshots

    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    assert latest_snapshot(wh, D) is None
    assert _store(wh, "r1", "a" * 64, 1e6) is True
    first = wh.read("select * from portfolio_allocation where allocation_id = :a order by position_id",
                    {"a": "a" * 64}).rows()
    assert _store(wh, "r2", "b" * 64, 2e6) is True
    assert latest_snapshot(wh, D).allocation_id == "b" * 64
    assert _store(wh, "r3", "a" * 64, 1e6) is False  # the same snapshot again: nothing inserted
    snap = latest_snapshot(wh, D)
    assert snap.allocation_id == "a" * 64 and snap.summary["capital"] == 1e6 and snap.positions.height == 3
    assert wh.count("portfolio_allocation") == 6 and wh.count("portfolio_allocation_summary") == 2
    assert wh.count("portfolio_allocation_runs") == 3
    assert wh.read("select * from portfolio_allocation where allocation_id = :a order by position_id",
                   {"a": "a" * 64}).rows() == first
    assert session_snapshots(wh, D).get_column("allocation_id").to_list() == ["a" * 64, "b" * 64]
    wh.dispose()


@pytest.mark.postgres
def test_two_writers_of_one_snapshot_insert_it_once_on_postgres(pg_url):
    import threading

    from options_v4_dagster.store import Warehouse

    wh = Warehouse(pg_url)
    barrier = threading.Barrier(2)
    errors, created = [], []

    def write(run_id):
        w = Warehouse(pg_url, create=False)
        try:
            for i in range(20):
                barrier.wait()
                created.append(_store(w, f"{run_id}-{i}", f"{i:064x}", 1e6 + i))
        except Exception as exc:  # noqa: BLE001 - the test reports what a writer raised
            errors.append(exc)
            barrier.abort()
        finally:
            w.dispose()

    threads = [threading.Thread(target=write, args=(f"run{k}",)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(created).count(True) == 20  # each snapshot created by exactly one writer
    assert wh.count("portfolio_allocation_summary") == 20 and wh.count("portfolio_allocation") == 60
    assert wh.count("portfolio_allocation_runs") == 40
    wh.dispose()
