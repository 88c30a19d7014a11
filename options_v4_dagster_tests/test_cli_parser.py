"""The ``options-v4`` parser: the closed vocabularies of ``types`` as its choices, and a light import path
(``options-v4 --help`` loads neither Dagster nor polars nor pandas)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from options_v4_dagster.cli import build_parser
from options_v4_dagster.types import MARKET_SOURCES, RISK_TOLERANCES


def _options(parser: argparse.ArgumentParser, dest: str, path: str = "") -> dict[str, argparse.Action]:
    """Every option ``dest`` of the parser and its subcommands, by command path."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_options(sub, dest, f"{path} {name}".strip()))
        elif action.dest == dest:
            found[path] = action
    return found


def test_every_source_option_offers_every_market_source():
    sources = _options(build_parser(), "source")
    replay = sources.pop("track-record")  # the sources whose past sessions can be replayed
    assert tuple(replay.choices) == ("simulated", "nse_files") and set(replay.choices) < set(MARKET_SOURCES)
    assert set(sources) == {"run", "iv collect", "backfill", "analyze"}
    assert "yfinance" in MARKET_SOURCES
    for command, action in sources.items():
        assert tuple(action.choices) == MARKET_SOURCES, command


def test_risk_choices_are_the_risk_tolerances():
    risks = _options(build_parser(), "risk")
    assert set(risks) == {"analyze", "allocate", "track-record"}
    for command, action in risks.items():
        assert tuple(action.choices) == RISK_TOLERANCES, command
    args = build_parser().parse_args(["analyze", "--risk", "aggressive"])
    assert args.risk == "aggressive"


def test_help_does_not_import_dagster_polars_or_pandas():
    code = ("import sys\n"
            "from options_v4_dagster.cli import main\n"
            "assert main(['--help']) == 0\n"
            "print(sorted(m for m in ('dagster', 'polars', 'pandas', 'sqlalchemy') if m in sys.modules))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"
