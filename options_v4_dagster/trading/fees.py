"""Charges and taxes on option fills (NSE F&O through Dhan), rates as data in ``config/charges.yaml``.

Per fill, with turnover = price x quantity (premium, INR):

* brokerage: a flat amount per *executed order* (Dhan: INR 20), charged once on the order's
  first fill however many partial fills follow;
* STT: ``stt_sell`` x turnover on SELL fills (0.1% of premium since 1 Oct 2024);
* exchange transaction charge: ``exchange_txn`` x turnover, both sides (NSE options 0.03503%);
* SEBI turnover fee: ``sebi_per_crore`` INR per crore (1e7) of turnover, both sides;
* stamp duty: ``stamp_buy`` x turnover on BUY fills (0.003%);
* GST: ``gst`` x (brokerage + exchange charge + SEBI fee), each taken after rounding.

Each component is rounded to ``round_to`` (paise) per fill, half away from zero. One function
(:func:`charges_frame`) computes everything on a polars frame of fills; :func:`fill_charges` is
the same arithmetic for a single fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import Field

from ..yaml_config import PackagedYaml, StrictModel, read_yaml_mapping, validate_model
from .broker import Fill
from .orders import Side

__all__ = ["CHARGE_COLUMNS", "TRADES_COLUMNS", "ChargeRates", "Charges", "charges_frame", "default_charges_path",
           "fill_charges", "load_charges", "order_charges"]

DEFAULT_FILE = "config/charges.yaml"
CRORE = 1e7
CHARGE_COLUMNS = ("turnover", "brokerage", "stt", "exchange_txn", "sebi_fee", "stamp_duty", "gst", "total_charges")
#: the charges under the trades table's column names (``fees``: their total)
TRADES_COLUMNS = {"brokerage": "brokerage", "stt": "stt", "exchange_txn": "exchange_charges", "sebi_fee": "sebi_fees",
                  "stamp_duty": "stamp_duty", "gst": "gst", "total_charges": "fees"}


class ChargeRates(StrictModel):
    brokerage_per_order: float = Field(20.0, ge=0)
    stt_sell: float = Field(0.001, ge=0, le=0.01)
    exchange_txn: float = Field(0.0003503, ge=0, le=0.01)
    sebi_per_crore: float = Field(10.0, ge=0)
    stamp_buy: float = Field(0.00003, ge=0, le=0.01)
    gst: float = Field(0.18, ge=0, le=1)
    round_to: float = Field(0.01, gt=0)


@dataclass(frozen=True)
class Charges:
    turnover: float
    brokerage: float
    stt: float
    exchange_txn: float
    sebi_fee: float
    stamp_duty: float
    gst: float
    total_charges: float


def _round(x: np.ndarray, step: float) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) / step + 0.5 + 1e-9) * step


def _compute(is_buy: np.ndarray, quantity: np.ndarray, price: np.ndarray, first_fill: np.ndarray,
             r: ChargeRates) -> dict[str, np.ndarray]:
    turnover = quantity * price
    step = r.round_to
    out = {
        "turnover": turnover,
        "brokerage": _round(np.where(first_fill, r.brokerage_per_order, 0.0), step),
        "stt": _round(np.where(is_buy, 0.0, r.stt_sell * turnover), step),
        "exchange_txn": _round(r.exchange_txn * turnover, step),
        "sebi_fee": _round(r.sebi_per_crore * turnover / CRORE, step),
        "stamp_duty": _round(np.where(is_buy, r.stamp_buy * turnover, 0.0), step),
    }
    out["gst"] = _round(r.gst * (out["brokerage"] + out["exchange_txn"] + out["sebi_fee"]), step)
    total = sum(out[k] for k in CHARGE_COLUMNS[1:-1])
    out["total_charges"] = np.round(total, 6)
    for k in CHARGE_COLUMNS[1:-1]:
        out[k] = np.round(out[k], 6)
    return out


def charges_frame(fills: pl.DataFrame, rates: ChargeRates | None = None) -> pl.DataFrame:
    """``fills`` (columns ``side`` BUY/SELL, ``quantity`` shares, ``price`` INR, optional
    ``order_id``) with :data:`CHARGE_COLUMNS` added. Brokerage falls on the first row of each
    ``order_id`` in frame order (every row is its own order without that column)."""
    r = rates or load_charges()
    side = fills.get_column("side").cast(pl.Utf8).str.to_uppercase()
    bad = side.filter(~side.is_in(["BUY", "SELL"]))
    if bad.len():
        raise ValueError(f"side must be BUY or SELL, got {bad[0]!r}")
    first = (fills.get_column("order_id").is_first_distinct().to_numpy() if "order_id" in fills.columns
             else np.ones(fills.height, dtype=bool))
    cols = _compute((side == "BUY").to_numpy(), fills.get_column("quantity").cast(pl.Float64).to_numpy(),
                    fills.get_column("price").cast(pl.Float64).to_numpy(), first, r)
    return fills.with_columns(*[pl.Series(k, v, dtype=pl.Float64) for k, v in cols.items()])


def fill_charges(side: Side | str, quantity: int, price: float, rates: ChargeRates | None = None, *,
                 first_fill_of_order: bool = True) -> Charges:
    """Charges of one fill (brokerage only on the order's first fill)."""
    r = rates or load_charges()
    cols = _compute(np.array([Side(side) is Side.BUY]), np.array([float(quantity)]), np.array([float(price)]),
                    np.array([first_fill_of_order]), r)
    return Charges(**{k: float(v[0]) for k, v in cols.items()})


def _parse(p: Path) -> ChargeRates:
    return validate_model(ChargeRates, read_yaml_mapping(p, "the charges", "rates"), p.name)


_FILE = PackagedYaml(DEFAULT_FILE, _parse)


def order_charges(fills: Sequence[Fill], order: object = None, rates: ChargeRates | None = None
                  ) -> list[dict[str, float]]:
    """The charges of one order's fills, keyed as the ``trades`` table (:data:`TRADES_COLUMNS`:
    brokerage, stt, exchange_charges, sebi_fees, stamp_duty, gst and their total ``fees``).
    ``fills`` are all of the order's fills so far, earliest first: brokerage falls on the first.
    The execution's default ``fees_fn`` (``order`` is the stored order, unused)."""
    if not fills:
        return []
    r = rates or load_charges()
    first = np.zeros(len(fills), dtype=bool)
    first[0] = True
    cols = _compute(np.array([Side(f.side) is Side.BUY for f in fills]),
                    np.array([float(f.quantity) for f in fills]), np.array([float(f.price) for f in fills]), first, r)
    return [{name: float(cols[c][i]) for c, name in TRADES_COLUMNS.items()} for i in range(len(fills))]


def default_charges_path() -> Path:
    return _FILE.default_path


def load_charges(path: str | Path | None = None) -> ChargeRates:
    """Read and validate a charges YAML (default: the packaged one); ConfigError naming the key."""
    return _FILE.load(path)
