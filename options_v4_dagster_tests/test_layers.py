"""Layering: the thin Dagster layer and the CLI hold no SQL (issue 10: every read and write is a
typed query function in ``store/``)."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "options_v4_dagster"
#: the issue's check: grep -rniE "select |insert into|delete from|update .* set" options_v4_dagster/defs options_v4_dagster/cli
SQL = re.compile(r"select |insert into|delete from|update .* set", re.IGNORECASE)


def _thin_layer_files() -> list[Path]:
    return sorted(p for folder in ("defs", "cli") for p in (PACKAGE / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def test_no_sql_in_defs_or_cli():
    files = _thin_layer_files()
    assert len(files) > 5 and (PACKAGE / "defs" / "volatility" / "assets.py") in files
    assert {PACKAGE / "cli" / "__init__.py", PACKAGE / "cli" / "allocate.py", PACKAGE / "cli" / "db.py"} <= set(files)
    hits = [f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}"
            for p in files for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
            if SQL.search(line)]
    assert hits == [], "SQL in the thin layer (move it into store/):\n" + "\n".join(hits)
