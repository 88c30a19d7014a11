"""The warehouse tables no asset materializes, as external asset specs, so the catalog shows every table
of the schema with its columns and where its rows come from.

- ``pipeline_failures`` and ``session_provenance``: one shared table each, written by every pipeline
  asset in its own transaction (its rows keyed by ``asset``). A table has one asset key, and one key
  cannot be an output of several ops, so each is an external spec downstream of every asset that writes
  it: the lineage graph shows who feeds it, and the writing assets stay one step each.
- The industry tables: current configuration (``options-v4 industries import|reset``; seeded with the
  packaged defaults by portfolio_allocation's first run) that portfolio_allocation reads. Not declared
  as its upstream: an external asset is never materialized, and automation conditions that wait for
  missing dependencies (``AutomationCondition.eager()``) would then never run portfolio_allocation.
- The trading and monitoring tables: append-only rows written by the execute_allocation,
  monitor_positions and exit_positions jobs (and the same entry points of the CLI), never by an asset.
"""

from __future__ import annotations

import dagster as dg

from options_v4_dagster.defs.lineage import (
    ALLOCATION,
    MONITORING,
    PIPELINE,
    TRADING,
    table_comment,
    table_spec,
)
from options_v4_dagster.defs.partitions import nse_sessions

#: the assets (their step's key) that write pipeline_failures rows; session_provenance also portfolio_allocation
FAILURE_WRITERS = ("universe", "option_chains", "instruments", "underlying_bars", "market_conditions", "option_greeks",
                   "iv_history", "iv_percentiles", "technical_signals", "strategy_candidates")
PROVENANCE_WRITERS = (*FAILURE_WRITERS, "portfolio_allocation")

_EXECUTION = "execute_allocation job (op place_approved_orders) and `options-v4 execute`"
_MONITOR = "monitor_positions and exit_positions jobs (op monitor_open_positions) and `options-v4 monitor`"


def _external(key: str, domain, grain: str, deps=(), written_by: str = "", write: str = "append_only",
              partitioned: bool = False) -> dg.AssetSpec:
    text = f"{table_comment(key)}. Table {key}" + (f"; written by the {written_by}" if written_by else "") + \
        " (an external asset: no Dagster step materializes it)."
    return table_spec(key, key, domain, grain=grain, write=write, deps=deps, description=text, external=True,
                      partitions_def=nse_sessions if partitioned else None)


def external_table_specs() -> list[dg.AssetSpec]:
    return [
        _external("pipeline_failures", PIPELINE, "symbol_failure", FAILURE_WRITERS, partitioned=True,
                  write="partition_replace",
                  written_by="pipeline assets upstream, each replacing its own rows (asset column) of the session in "
                  "the transaction of its data, and by execution_failure_sensor for failed execute_allocation runs"),
        _external("session_provenance", PIPELINE, "asset_session", PROVENANCE_WRITERS, partitioned=True,
                  write="partition_replace",
                  written_by="pipeline assets upstream, each its own row (asset column) in the transaction of its data"),
        _external("industry_allocations_current", ALLOCATION, "industry", write="current_state",
                  written_by="`options-v4 industries import|reset`, seeded by portfolio_allocation's first run; "
                  "read by portfolio_allocation"),
        _external("sector_allocations_current", ALLOCATION, "sector", write="current_state",
                  written_by="`options-v4 industries import|reset`, seeded by portfolio_allocation's first run"),
        _external("stock_industry_mapping", ALLOCATION, "underlying", write="current_state",
                  written_by="`options-v4 industries import|reset`, seeded by portfolio_allocation's first run; "
                  "read by portfolio_allocation"),
        _external("allocation_approvals", TRADING, "approval", ["portfolio_allocation_summary", "portfolio_allocation"],
                  written_by="`options-v4 approve`; read by approved_allocations_sensor"),
        # entries come from approvals; exits from exit_intents, which are downstream of positions (fills of
        # orders): that edge would close a cycle, so the exits' origin is in the description only
        _external("orders", TRADING, "order", ["allocation_approvals", "instruments"],
                  written_by=f"{_EXECUTION}, and the exits of the {_MONITOR} (one per exit_intents row)"),
        _external("order_events", TRADING, "order_event", ["orders"], written_by=f"{_EXECUTION} and the {_MONITOR}"),
        _external("trades", TRADING, "fill", ["orders"], written_by=f"{_EXECUTION} and the {_MONITOR}"),
        _external("positions", TRADING, "leg", ["trades"], written_by=f"{_EXECUTION} and the {_MONITOR}"),
        _external("strategy_execution_status", TRADING, "position", ["orders", "positions"],
                  written_by=f"{_EXECUTION} and the {_MONITOR}"),
        _external("strategy_monitoring", MONITORING, "snapshot", ["positions", "strategy_exit_levels", "option_chains"],
                  written_by=_MONITOR),
        _external("monitor_state", MONITORING, "position", ["strategy_monitoring"], write="current_state",
                  written_by=_MONITOR),
        _external("exit_intents", MONITORING, "intent", ["strategy_monitoring", "positions"],
                  written_by=f"{_MONITOR} and the real-time monitor"),
        _external("audit_log", MONITORING, "event", ["orders", "exit_intents"],
                  written_by=f"{_EXECUTION}, the {_MONITOR} and the real-time monitor"),
        _external("archived_sessions", PIPELINE, "table_session", ["option_chains", "option_greeks"],
                  write="manifest", written_by="archive_contract_rows job and `options-v4 archive` (one row per table "
                  "and session moved to Parquet, in the transaction that deletes its rows)"),
    ]


@dg.definitions
def warehouse_tables() -> dg.Definitions:
    return dg.Definitions(assets=external_table_specs())
