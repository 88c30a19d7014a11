"""Golden comparison of ``evaluate_exits``: record every call's inputs and full output on one
version of the code, replay the inputs on another and require identical output (every decision
row and column -- strategy, action, rule, urgency, level, intent key, value, threshold, lots,
reason, precedence, primary, actionable --, every per-leg exit quantity, the high-water marks
and the portfolio decision).

    .venv/bin/python scripts/exit_golden.py record DIR [TEST_FILE ...]
    .venv/bin/python scripts/exit_golden.py check DIR

``record`` evaluates variants of the benchmark scenario (``benchmarks/bench_exit_rules.py``:
several configurations, executed intents, day-start P&L, missing levels, sorted legs, repeated
calls on the same prepared levels) and runs pytest on the test files (by default the monitoring
tests) with every ``evaluate_exits`` call recorded. ``check`` replays the calls in order -- the
calls that shared one ``PreparedLevels`` share one again, so cached state is exercised -- and
evaluates each a second time on the warmed levels. A tool for refactoring the evaluation
internals; the recordings are pickles of this checkout's objects, not kept in the repository.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import pickle
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TESTS = ["options_v4_dagster_tests/test_trading_monitoring.py",
                 "options_v4_dagster_tests/test_monitoring_cycle.py",
                 "options_v4_dagster_tests/test_realtime_monitor.py",
                 "options_v4_dagster_tests/test_cli_monitor.py",
                 "options_v4_dagster_tests/test_trading_e2e.py"]
_ENV_DIR = "EXIT_GOLDEN_DIR"


def _result(ev) -> dict:
    return {"decisions": ev.decisions, "leg_quantities": ev.leg_quantities, "high_water": ev.high_water,
            "portfolio": dataclasses.asdict(ev.portfolio)}


class Recorder:
    """Wraps ``evaluate_exits`` (and ``prepare_levels``, to keep the raw levels of a prepared object)."""

    def __init__(self, out: Path) -> None:
        from options_v4_dagster.trading import exit_rules
        self.out, self.n = out, len(list(out.glob("call-*.pkl")))
        self.groups: dict[int, tuple[str, object]] = {}  # keeps the objects: an id is not reused
        self.er = exit_rules
        self.evaluate, self.prepare = exit_rules.evaluate_exits, exit_rules.prepare_levels

    def install(self) -> None:
        import importlib
        self.er.prepare_levels = self.prepare_levels
        self.er.evaluate_exits = self.evaluate_exits
        for mod in ("options_v4_dagster.trading.monitor", "options_v4_dagster.trading.dashboard"):
            m = importlib.import_module(mod)
            if hasattr(m, "evaluate_exits"):
                m.evaluate_exits = self.evaluate_exits

    def prepare_levels(self, levels):
        p = self.prepare(levels)
        p.cache["_golden_raw"] = levels
        return p

    def evaluate_exits(self, valuation, levels=None, **kw):
        if isinstance(levels, self.er.PreparedLevels):
            group = self.groups.setdefault(id(levels), (f"{self.out.name}-{len(self.groups)}", levels))[0]
            lv = ("prepared", group, levels.cache.get("_golden_raw"))
            if lv[2] is None:
                raise RuntimeError("a PreparedLevels not made by prepare_levels")
        else:
            lv = ("raw", None, levels)
        kw = {k: (dict(v) if isinstance(v, dict) else list(v) if k == "executed_intents" else v)
              for k, v in kw.items()}
        ev = self.evaluate(valuation, levels, **kw)
        test = __import__("os").environ.get("PYTEST_CURRENT_TEST", "bench")
        with (self.out / f"call-{self.n:05d}.pkl").open("wb") as f:
            pickle.dump({"test": test, "valuation": valuation, "levels": lv, "kwargs": kw, "result": _result(ev)}, f)
        self.n += 1
        return ev


def pytest_configure(config) -> None:  # pytest plugin: ``-p exit_golden`` with EXIT_GOLDEN_DIR set
    import os
    if os.environ.get(_ENV_DIR):
        Recorder(Path(os.environ[_ENV_DIR])).install()


def _bench_calls(rec: Recorder) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_exit_rules as b

    from options_v4_dagster.trading.exit_config import load_exit_rules
    from options_v4_dagster.trading.valuation import value_positions

    base = load_exit_rules()

    def cfg(**over):
        d = base.model_dump()
        for path, v in over.items():
            sec, key = path.split(".")
            d[sec][key] = v
        return type(base).model_validate(d)

    for n_legs, sort in ((10_000, False), (2_000, True), (37, False)):
        legs, facts, lv, q, hw = b.scenario(n_legs, seed=n_legs)
        if sort:
            legs = legs.sort("strategy_id", "leg")
        sids = facts["strategy_id"].to_list()
        spot = {"NIFTY": 25000.0}
        v = b.value_positions(legs, facts, q, spot, b.AS_OF)
        v_late = value_positions(legs, facts, q, spot, b.AS_OF + dt.timedelta(days=5))
        executed = {f"{s}:scale_out:25" for s in sids[::5]}
        executed2 = executed | {f"{s}:stop_loss:stop" for s in sids[::7]} | {f"{s}:scale_out:50" for s in sids[::3]} \
            | {f"{s}:profit_target:primary" for s in sids[1::11]} | {"junk", "a:b:", "x:nope:1", "gone:scale_out:25"}
        prepared = rec.prepare_levels(lv)
        day = {s: 2000.0 * (k % 7) for k, s in enumerate(sids)}
        for c, kw in [
            (base, {"executed_intents": executed, "high_water": hw}),
            (base, {"executed_intents": executed, "high_water": hw}),  # steady state: cached alignment
            (base, {"executed_intents": executed2, "high_water": pl.DataFrame(
                {"strategy_id": list(hw), "hwm_prev": list(hw.values())})}),
            (base, {}),
            (cfg(**{"adjustments.alert_only": False, "adjustments.offensive_min_profit_share": 0.1,
                    "adjustments.offensive_max_short_delta": 0.6}), {"executed_intents": executed}),
            (cfg(**{"daily_loss_limit.exit_all": True}), {"day_start_pnl": day, "portfolio_capital": 1e6,
                                                         "closed_today_pnl": -5000.0, "executed_intents": executed2}),
            (base, {"day_start_pnl": day, "portfolio_capital": 1e9}),
            (cfg(**{"scale_out.enabled": False, "trailing.enabled": False}), {"high_water": hw}),
            (cfg(**{"profit_target.enabled": False, "stop_loss.enabled": False, "scale_out.min_lots": 2,
                    "scale_out.basis": "mid"}), {"high_water": hw, "executed_intents": executed}),
            (cfg(**{"time_exit.enabled": False, "adjustments.enabled": False}), {"high_water": hw}),
            (cfg(**{"time_exit.max_holding_days": 2, "time_exit.high_urgency_dte": 5}), {}),
        ]:
            rec.evaluate_exits(v, prepared, config=c, **kw)
        rec.evaluate_exits(v_late, prepared, config=base, executed_intents=executed, high_water=hw)
        rec.evaluate_exits(v, prepared, config=base, executed_intents=executed, high_water=hw)
        # strategies without stored levels (the YAML's defaults and steps), and a subset of strategies
        part = lv.filter(pl.col("strategy_id").is_in(sids[::2])).with_columns(
            pl.when(pl.col("strategy_id").is_in(sids[::4])).then(None).otherwise(pl.col("scale_out")).alias("scale_out"),
            pl.when(pl.col("strategy_id").is_in(sids[::6])).then(None).otherwise(pl.col("profit_target"))
            .alias("profit_target"))
        rec.evaluate_exits(v, part, config=base, executed_intents=executed, high_water=hw)
        p2 = rec.prepare_levels(part)
        sub = b.value_positions(legs.filter(pl.col("strategy_id").is_in(sids[1::3])), facts, q, spot, b.AS_OF)
        for vv in (v, sub, v, sub):
            rec.evaluate_exits(vv, p2, config=base, executed_intents=executed2, high_water=hw)
        rec.evaluate_exits(v, None, config=base)


def _same(a, b) -> bool:
    if isinstance(a, pl.DataFrame):
        return isinstance(b, pl.DataFrame) and a.schema == b.schema and a.equals(b, null_equal=True)
    return a == b


def _diff(want: dict, got: dict) -> list[str]:
    bad = []
    for k in want:
        if not _same(want[k], got[k]):
            if isinstance(want[k], pl.DataFrame):
                w, g = want[k], got[k]
                msg = f"{k}: shape {w.shape} vs {g.shape}, schema {'same' if w.schema == g.schema else 'differs'}"
                if w.shape == g.shape and w.schema == g.schema:
                    cols = [c for c in w.columns if not w.get_column(c).equals(g.get_column(c), null_equal=True)]
                    msg += f"; columns differ: {cols}"
                    if cols:
                        r = int((w.get_column(cols[0]).ne_missing(g.get_column(cols[0]))).arg_max() or 0)
                        msg += f"; first at row {r}: {w.row(r)} vs {g.row(r)}"
                bad.append(msg)
            else:
                bad.append(f"{k}: {want[k]} vs {got[k]}")
    return bad


def check(src: Path) -> int:
    from options_v4_dagster.trading.exit_rules import evaluate_exits, prepare_levels
    groups: dict[str, object] = {}
    n = fails = 0
    for f in sorted(src.glob("call-*.pkl")):
        with f.open("rb") as fh:
            c = pickle.load(fh)
        kind, group, raw = c["levels"]
        levels = raw
        if kind == "prepared":
            if group not in groups:
                groups[group] = prepare_levels(raw)
            levels = groups[group]
        for attempt in ("", " (again)"):
            got = _result(evaluate_exits(c["valuation"], levels, **c["kwargs"]))
            bad = _diff(c["result"], got)
            if bad:
                fails += 1
                print(f"DIFFERS {f.name}{attempt} [{c['test']}]: " + " | ".join(bad))
        n += 1
    print(f"{n} recorded calls replayed twice each: {'identical' if not fails else f'{fails} differ'}")
    return 1 if fails or not n else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["record", "check"])
    ap.add_argument("dir", type=Path)
    ap.add_argument("tests", nargs="*")
    a = ap.parse_args()
    if a.mode == "check":
        return check(a.dir)
    a.dir.mkdir(parents=True, exist_ok=True)
    if any(a.dir.glob("call-*.pkl")):
        sys.exit(f"{a.dir} already holds a recording")
    bench = a.dir / "bench"
    bench.mkdir()
    _bench_calls(Recorder(bench))
    tests = a.dir / "tests"
    tests.mkdir()
    import os
    env = {**os.environ, _ENV_DIR: str(tests), "PYTHONPATH": f"{ROOT / 'scripts'}:{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "exit_golden", *(a.tests or DEFAULT_TESTS)],
                       cwd=ROOT, env=env, check=False)
    for i, f in enumerate(sorted(bench.glob("call-*.pkl")) + sorted(tests.glob("call-*.pkl"))):
        f.rename(a.dir / f"call-{i:05d}.pkl")
    print(f"recorded {len(list(a.dir.glob('call-*.pkl')))} calls in {a.dir} (pytest exit code {r.returncode})")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
