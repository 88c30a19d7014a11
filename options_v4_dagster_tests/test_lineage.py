"""Lineage per table: every warehouse table of the SQLAlchemy schema is one asset of the code location,
with its table name, its columns, owners, tags and a code version; multi-table steps are multi-assets;
metadata values are formatted for people."""

import shutil

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.definitions import build_defs
from options_v4_dagster.defs import formatting as fmt
from options_v4_dagster.defs import lineage
from options_v4_dagster.defs.common import frame_markdown
from options_v4_dagster.store import metadata


@pytest.fixture(scope="module")
def specs() -> dict[str, dg.AssetSpec]:
    return {s.key.to_user_string(): s for s in build_defs().resolve_all_asset_specs()}


def _table(spec: dg.AssetSpec) -> str | None:
    v = spec.metadata.get(lineage.TABLE_NAME)
    return getattr(v, "value", v)


def test_every_warehouse_table_is_one_asset_with_its_columns(specs):
    by_table: dict[str, list[str]] = {}
    reports = {key for key, spec in specs.items() if spec.tags.get("write") == "report"}
    assert reports == {"track_record"}  # the one asset that writes no warehouse table (a report)
    for key in reports:
        assert _table(specs[key]) is None and specs[key].owners and specs[key].code_version, key
    for key, spec in specs.items():
        if key in reports:
            continue
        assert _table(spec) is not None, f"asset {key} names no table"
        by_table.setdefault(_table(spec), []).append(key)
    assert set(by_table) == set(metadata.tables), set(metadata.tables) ^ set(by_table)
    assert {t: keys for t, keys in by_table.items() if len(keys) > 1} == {}
    for table_name, (key,) in by_table.items():
        spec, table = specs[key], metadata.tables[table_name]
        schema = spec.metadata[lineage.COLUMN_SCHEMA].value
        assert [c.name for c in schema.columns] == [c.name for c in table.columns], key
        assert all(c.type != "string" for c in schema.columns), key  # every type read from the schema
        assert [c.constraints.nullable for c in schema.columns] == [
            bool(c.nullable) and not c.primary_key for c in table.columns], key
        assert spec.owners and spec.code_version and spec.group_name, key
        assert {"domain", "grain", "write"} <= set(spec.tags), key
        assert spec.description, key


def test_the_keys_other_code_refers_to_are_kept_and_the_new_tables_are_named(specs):
    tables = {k: _table(s) for k, s in specs.items()}
    # existing keys (jobs, CLI, provenance) name the table their asset writes
    assert {k: tables[k] for k in ("universe", "option_chains", "iv_history", "strategy_candidates",
                                   "portfolio_allocation")} == {
        "universe": "fno_universe", "option_chains": "option_chain_data", "iv_history": "historical_iv_summary",
        "strategy_candidates": "strategies", "portfolio_allocation": "portfolio_allocation"}
    # the other tables of a multi-table step: asset key = table name
    for key in ("nifty_historical_data", "india_vix_data", "strategy_details", "strategy_parameters",
                "strategy_exit_levels", "portfolio_allocation_summary", "portfolio_allocation_runs",
                "pipeline_failures", "session_provenance", "orders", "exit_intents", "audit_log"):
        assert tables[key] == key


def test_multi_table_steps_are_multi_assets_and_deps_point_at_the_tables_read():
    defs = build_defs()
    graph = defs.resolve_asset_graph()
    by_op = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable:
            by_op.setdefault(node.assets_def.node_def.name, set()).add(key.to_user_string())
    assert by_op["underlying_bars"] == {"underlying_bars", "nifty_historical_data", "india_vix_data"}
    assert by_op["strategy_candidates"] == {"strategy_candidates", "strategy_details", "strategy_parameters",
                                            "strategy_exit_levels"}
    assert by_op["portfolio_allocation"] == {"portfolio_allocation", "portfolio_allocation_summary",
                                             "portfolio_allocation_runs"}

    def parents(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert {"nifty_historical_data", "india_vix_data"} <= parents("market_conditions")
    assert {"underlying_bars", "india_vix_data", "option_greeks"} <= parents("iv_history")
    assert "strategy_parameters" in parents("portfolio_allocation")
    # the shared failure table is fed by every pipeline step, and no step writes it as an asset
    assert {"universe", "option_chains", "strategy_candidates"} <= parents("pipeline_failures")
    assert not graph.get(dg.AssetKey("pipeline_failures")).is_materializable
    assert not graph.get(dg.AssetKey("orders")).is_materializable
    # the daily job runs the same steps as before (the external tables are not steps)
    job = defs.resolve_job_def("daily_pipeline")
    assert {n.name for n in job.graph.node_defs} >= {
        "universe", "option_chains", "instruments", "underlying_bars", "market_conditions", "option_greeks",
        "iv_history", "iv_percentiles", "technical_signals", "strategy_candidates", "portfolio_allocation"}
    assert "pipeline_failures" not in {n.name for n in job.graph.node_defs}


def test_table_schema_reads_types_comments_and_constraints():
    md = sa.MetaData()
    sa.Table("parent", md, sa.Column("id", sa.String(8), primary_key=True))
    t = sa.Table("child", md,
                 sa.Column("day", sa.Date, primary_key=True),
                 sa.Column("pid", sa.String(8), sa.ForeignKey("parent.id"), primary_key=True, comment="the parent"),
                 sa.Column("code", sa.String(4), nullable=False, unique=True),
                 sa.Column("x", sa.Float, comment="INR"),
                 sa.CheckConstraint("x >= 0", name="ck_child_x"),
                 sa.Index("ix_child_x", "x"))
    schema = lineage.table_schema(t)
    cols = {c.name: c for c in schema.columns}
    assert (cols["day"].type, cols["pid"].type, cols["x"].type) == ("date", "varchar(8)", "float")
    assert cols["pid"].description == "the parent" and cols["x"].description == "INR"
    assert "foreign key -> parent.id" in cols["pid"].constraints.other
    assert not cols["day"].constraints.nullable and not cols["day"].constraints.unique
    assert cols["code"].constraints.unique and not cols["code"].constraints.nullable
    assert cols["x"].constraints.nullable
    assert {"primary key (day, pid)", "check (x >= 0)", "index ix_child_x (x)"} <= set(schema.constraints.other)


def test_code_version_follows_the_code(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    shutil.copytree(lineage.PACKAGE / "defs" / "volatility", pkg / "vol", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(lineage, "PACKAGE", pkg)
    lineage.code_version.cache_clear()
    try:
        before = lineage.code_version(("vol",))
        assert lineage.code_version(("vol",)) == before and len(before) == 12
        lineage.code_version.cache_clear()
        (pkg / "vol" / "assets.py").write_text((pkg / "vol" / "assets.py").read_text() + "\n# changed\n")
        assert lineage.code_version(("vol",)) != before
    finally:
        lineage.code_version.cache_clear()


def test_warehouse_kind_follows_the_configuration(monkeypatch):
    assert lineage.warehouse_kind() == "sqlite"
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert lineage.warehouse_kind() == "postgres"
    monkeypatch.setenv("OPTIONS_V4_WAREHOUSE", "supabase")
    assert lineage.warehouse_kind() == "supabase"
    monkeypatch.setenv("OPTIONS_V4_WAREHOUSE", "nonsense")
    assert lineage.warehouse_kind() == "sql"


def test_numbers_for_people():
    assert fmt.indian_digits(1_500_000) == "15,00,000" and fmt.indian_digits(-12_345_678) == "-1,23,45,678"
    assert fmt.indian_digits(999) == "999" and fmt.indian_digits(1000) == "1,000"
    assert fmt.inr_text(1_500_000.0) == "₹15,00,000" and fmt.inr_text(1234.5, 2) == "₹1,234.50"
    assert fmt.inr_text(-2500.4) == "-₹2,500" and fmt.inr_text(None) == "n/a"
    assert fmt.pct_text(0.1234) == "12.3%" and fmt.pct_text(0.02634, 2) == "2.63%" and fmt.pct_text(None) == "n/a"
    assert fmt.count(41_938_461.0) == dg.MetadataValue.int(41_938_461)
    assert fmt.pct_json({"T2": 0.3, "T1": 0.6}).value == {"T1": "60.0%", "T2": "30.0%"}


def test_markdown_tables_show_whole_numbers_without_decimals():
    frame = pl.DataFrame({"symbol": ["NIFTY", "TCS"], "oi_contracts": [41_938_461.0, 12.0],
                          "spot": [24_813.45, 3_200.0], "lots": [3, 1_250], "capital": [1_500_000.0, None]})
    md = frame_markdown(frame, formats={"capital": fmt.inr_text})
    assert "41,938,461 |" in md and "41,938,461.00" not in md
    assert "24,813.45" in md and "3,200.00" in md  # a column with fractions keeps two decimals
    assert "| 1,250 |" in md and "₹15,00,000" in md
