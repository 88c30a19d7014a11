"""Write sql/schema.sql: the PostgreSQL DDL of the warehouse schema (options_v4_dagster.store.schema).

    python scripts/generate_ddl.py          # rewrite sql/schema.sql
    python scripts/generate_ddl.py --check  # exit 1 if sql/schema.sql is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from options_v4_dagster.store.ddl import postgres_ddl

OUT = Path(__file__).resolve().parents[1] / "sql" / "schema.sql"

if __name__ == "__main__":
    text = postgres_ddl()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.exists() and OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT}")
