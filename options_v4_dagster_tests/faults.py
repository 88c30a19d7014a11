"""Fault injection on a private copy of the real NSE files.

``nse_copy(src, dst)`` copies the folder (or only the files a test needs) into a temp folder; the
``damage_*`` functions break one file of the copy in one named way. The originals are never touched
and never copied into the repository.

    root = nse_copy(nse_data_dir, tmp_path / "nse")
    damage_garbage(root / UDIFF_2025_09_11)                 # bytes that are not a zip
    damage_drop_column(root / UDIFF_2025_09_11, "ClsPric")  # a UDiFF file missing one column
    damage_oc_quote(root / OC_2025_07_17 / "reliance_option_chain.json", strike=1500,
                    expiry="31-Jul-2025", option_type="CE", bid=242.0)
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

UDIFF_2025_09_11 = Path("bhavcopy/BhavCopy_NSE_FO_0_0_0_20250911_F_0000.csv.zip")
UDIFF_2025_02_03 = Path("bhavcopy/BhavCopy_NSE_FO_0_0_0_20250203_F_0000.csv.zip")
LEGACY_2023_05_03 = Path("bhavcopy/fo03MAY2023bhav.csv")
EQ_2025_09_11 = Path("bhavcopy/nse_cm_bhav_2025-09-11_via_nser.csv")
OC_2025_07_17 = Path("option_chain/nse_2025-07-17_1530")
NIFTY_HISTORY = Path("index_history/nifty50_daily_2024-12-16_to_2025-12-16_nse.csv")
VIX_HISTORY = Path("index_history/indiavix_daily_2024-12-16_to_2025-12-16_nse.csv")
STOCK_HISTORY = Path("stock_history/fo_stocks_daily_eq_2025-08-28_to_2026-07_from_nse_cm_bhavcopy.csv")


def nse_copy(src: Path, dst: Path, only: Iterable[str | Path] | None = None) -> Path:
    """Copy the NSE data folder ``src`` (or only the relative paths in ``only``) to ``dst``."""
    src, dst = Path(src), Path(dst)
    if only is None:
        shutil.copytree(src, dst)
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    for rel in only:
        s, d = src / rel, dst / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d)
        else:
            shutil.copy2(s, d)
    return dst


# --- whole-file damage ---------------------------------------------------------------------

def damage_garbage(path: Path, data: bytes = b"this is not the file you are looking for\x00\xff" * 64) -> None:
    """Replace the file by bytes that are neither a zip, nor CSV, nor JSON of the expected shape."""
    Path(path).write_bytes(data)


def damage_truncate(path: Path, fraction: float = 0.5) -> None:
    """Cut the file (for a zip: its CSV member) to ``fraction`` of its bytes."""
    path = Path(path)
    if path.suffix == ".zip":
        _rewrite_zip_member(path, lambda b: b[: int(len(b) * fraction)])
    else:
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * fraction)])


def damage_empty(path: Path) -> None:
    Path(path).write_bytes(b"")


# --- CSV damage (plain or zipped) ----------------------------------------------------------

def damage_drop_column(path: Path, column: str) -> None:
    """Remove one column (matched after stripping spaces and a BOM) from a CSV or a zipped CSV."""
    def drop(rows: list[list[str]]) -> list[list[str]]:
        names = [h.replace("\ufeff", "").strip() for h in rows[0]]
        if column not in names:
            raise KeyError(f"{path}: no column {column!r} in {names}")
        i = names.index(column)
        return [r[:i] + r[i + 1:] for r in rows]
    _edit_csv(path, drop)


def damage_csv_rows(path: Path, where: Callable[[dict[str, str]], bool], **changes: str | float) -> int:
    """Set ``changes`` (column -> value) on every row for which ``where(row)`` is true; return the count."""
    count = 0

    def edit(rows: list[list[str]]) -> list[list[str]]:
        nonlocal count
        names = [h.replace("\ufeff", "").strip() for h in rows[0]]
        for r in rows[1:]:
            rec = {n: (r[i].strip() if i < len(r) else "") for i, n in enumerate(names)}
            if r and where(rec):
                count += 1
                for col, val in changes.items():
                    r[names.index(col)] = _fmt(val)
        return rows
    _edit_csv(path, edit)
    return count


def _edit_csv(path: Path, fn: Callable[[list[list[str]]], list[list[str]]]) -> None:
    path = Path(path)

    def apply(raw: bytes) -> bytes:
        text = raw.decode("utf-8")
        rows = fn(list(csv.reader(io.StringIO(text))))
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        return out.getvalue().encode("utf-8")
    if path.suffix == ".zip":
        _rewrite_zip_member(path, apply)
    else:
        path.write_bytes(apply(path.read_bytes()))


def _rewrite_zip_member(path: Path, fn: Callable[[bytes], bytes]) -> None:
    with zipfile.ZipFile(path) as zf:
        members = [(i, zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info.filename, fn(data) if info.filename.lower().endswith(".csv") else data)


def _fmt(v: str | float) -> str:
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else repr(v)
    return str(v)


# --- option-chain JSON damage ----------------------------------------------------------------

def damage_json(path: Path, fn: Callable[[dict], None]) -> None:
    """Load the snapshot, let ``fn`` change it in place, write it back (NaN written as NaN)."""
    path = Path(path)
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def damage_oc_quote(path: Path, *, strike: float, expiry: str, option_type: str, **fields: float) -> None:
    """Set leg fields (``bid``/``ask``/``ltp`` or NSE's own names) of one contract in a snapshot."""
    names = {"bid": "bidprice", "ask": "askPrice", "ltp": "lastPrice", "spot": "underlyingValue"}
    hit = []

    def fn(doc: dict) -> None:
        for block in ("records", "filtered"):
            for row in doc.get(block, {}).get("data", []):
                leg = row.get(option_type)
                if leg and float(row["strikePrice"]) == float(strike) and row["expiryDate"] == expiry:
                    for k, v in fields.items():
                        leg[names.get(k, k)] = v
                    hit.append(block)
    damage_json(path, fn)
    if not hit:
        raise KeyError(f"{path}: no {expiry} {strike} {option_type} leg")


def damage_oc_spot(path: Path, value: float) -> None:
    """Set the snapshot's spot (records.underlyingValue and every leg's underlyingValue)."""
    def fn(doc: dict) -> None:
        for block in ("records", "filtered"):
            b = doc.get(block)
            if not b:
                continue
            if "underlyingValue" in b:
                b["underlyingValue"] = value
            for row in b.get("data", []):
                for side in ("CE", "PE"):
                    if side in row:
                        row[side]["underlyingValue"] = value
    damage_json(path, fn)


def damage_oc_timestamp(path: Path, timestamp: str) -> None:
    """Make the snapshot claim another moment, e.g. ``"16-Jul-2025 15:30:00"``."""
    def fn(doc: dict) -> None:
        doc["records"]["timestamp"] = timestamp
    damage_json(path, fn)


def damage_oc_underlying(path: Path, symbol: str) -> None:
    """Make every leg name another underlying (a file holding another symbol's content)."""
    def fn(doc: dict) -> None:
        for block in ("records", "filtered"):
            for row in doc.get(block, {}).get("data", []):
                for side in ("CE", "PE"):
                    if side in row:
                        row[side]["underlying"] = symbol
    damage_json(path, fn)


def damage_oc_all_prices(path: Path, factor: float | None = None, value: float | None = None) -> None:
    """Multiply (``factor``) or set (``value``) every bid, ask and last price of the snapshot."""
    def fn(doc: dict) -> None:
        for block in ("records", "filtered"):
            for row in doc.get(block, {}).get("data", []):
                for side in ("CE", "PE"):
                    leg = row.get(side)
                    if not leg:
                        continue
                    for k in ("bidprice", "askPrice", "lastPrice"):
                        leg[k] = value if value is not None else leg[k] * factor
    damage_json(path, fn)
