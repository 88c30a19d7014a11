"""Layering: the thin Dagster layer and the CLI hold no SQL (issue 10: every read and write is a
typed query function in ``store/``); the pure domain packages import neither Dagster nor reports/."""

import ast
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


#: pure domain code: no Dagster, and no reports/ (the domain returns chart data, callers draw it)
DOMAIN_PACKAGES = ("strategies", "quant", "allocation", "market")
FORBIDDEN = ("dagster", "options_v4_dagster.reports")


def _imported_modules(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Absolute names of every module ``path`` (under ``root``, the folder holding the package) imports,
    lazy (in-function) imports included; for ``from X import a`` both ``X`` and ``X.a`` (``a`` may be a
    submodule)."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)
    return out


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def test_domain_packages_import_neither_dagster_nor_reports():
    files = sorted(p for pkg in DOMAIN_PACKAGES for p in (PACKAGE / pkg).rglob("*.py"))
    assert len(files) > 20 and PACKAGE / "strategies" / "pipeline.py" in files
    hits = [f"{p.relative_to(PACKAGE)}: {m}" for p in files for m in sorted(_imported_modules(p)) if _forbidden(m)]
    assert hits == [], "the domain imports Dagster or reports/:\n" + "\n".join(hits)


def test_import_scan_resolves_relative_and_lazy_imports(tmp_path):
    pkg = tmp_path / "options_v4_dagster" / "strategies"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("from .. import reports\nfrom ..reports.payoff_chart import a\n\ndef g():\n"
                 "    import dagster as dg\n    from .build import b\n")
    mods = _imported_modules(f, tmp_path)
    assert {"options_v4_dagster.reports", "options_v4_dagster.reports.payoff_chart", "dagster",
            "options_v4_dagster.strategies.build"} <= mods
    assert [m for m in sorted(mods) if _forbidden(m)] == [
        "dagster", "options_v4_dagster.reports", "options_v4_dagster.reports.payoff_chart",
        "options_v4_dagster.reports.payoff_chart.a"]
