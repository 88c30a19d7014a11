"""PostgreSQL DDL generated from the SQLAlchemy schema (the content of sql/schema.sql)."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from .schema import metadata

HEADER = """-- Generated from options_v4_dagster/store/schema.py by scripts/generate_ddl.py. Do not edit:
-- change the schema in code and regenerate (a test keeps this file equal to the schema).
-- Postgres-only extras (views, row-level security for Supabase) are in sql/postgres_extras.sql.
"""


def postgres_ddl() -> str:
    dialect = postgresql.dialect()
    parts = [HEADER]
    for table in metadata.sorted_tables:
        parts.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip() + ";\n")
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            parts.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)).strip() + ";\n")
        comments = [f"COMMENT ON TABLE {table.name} IS {_literal(table.comment)};"] if table.comment else []
        comments += [f"COMMENT ON COLUMN {table.name}.{col.name} IS {_literal(col.comment)};"
                     for col in table.columns if col.comment]
        if comments:
            parts.append("\n".join(comments) + "\n")
    return "\n".join(parts)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
