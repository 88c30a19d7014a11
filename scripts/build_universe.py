"""Regenerate options_v4_dagster/reference/fno_universe.csv from NSE and Dhan reference files.

Facts taken (not the files): the F&O underlyings and lot sizes (NSE fo_mktlots, Aug-2026),
industries (NIFTY 500 list), Dhan security ids (Dhan compact scrip master), and from the NSE
UDiFF F&O bhavcopy of 2025-09-11 the strike step near the money and the underlying price that
day (the simulated market starts its paths there).

    python scripts/build_universe.py [--nse-dir ../shared/data/nse]
"""

from __future__ import annotations

import argparse
import csv
import io
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "options_v4_dagster" / "reference" / "fno_universe.csv"
INDEX_NAMES = {
    "NIFTY": "NIFTY 50", "BANKNIFTY": "NIFTY BANK", "FINNIFTY": "NIFTY FINANCIAL SERVICES",
    "MIDCPNIFTY": "NIFTY MIDCAP SELECT", "NIFTYNXT50": "NIFTY NEXT 50",
}
# NSE's published strike intervals for the index options (near-the-money grid).
INDEX_STRIKE_STEP = {"NIFTY": 50, "BANKNIFTY": 100, "FINNIFTY": 50, "MIDCPNIFTY": 25, "NIFTYNXT50": 100}
# Index futures/options are industry "Index"; the Nifty 500 list gives stocks' industries.
FIELDS = ["symbol", "name", "instrument", "lot_size", "strike_step", "industry", "dhan_security_id",
          "dhan_segment", "reference_price", "reference_date", "weekly_expiry"]


def read_mktlots(path: Path) -> list[dict]:
    rows, block = [], "INDEX"
    with path.open(newline="") as fh:
        for i, rec in enumerate(csv.reader(fh)):
            rec = [c.strip() for c in rec]
            if i == 0 or len(rec) < 3:
                continue
            if rec[0].lower().startswith("derivatives on individual securities"):
                block = "STOCK"
                continue
            if not rec[1] or rec[1].lower() == "symbol":
                continue
            lot = next((int(c) for c in rec[2:] if c.isdigit()), None)
            rows.append({"symbol": rec[1], "name": rec[0], "instrument": block, "lot_size": lot})
    return rows


def read_industries(path: Path) -> dict[str, tuple[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return {r["Symbol"].strip(): (r["Industry"].strip(), r["Company Name"].strip()) for r in csv.DictReader(fh)}


def read_dhan_ids(path: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            if r["SEM_EXM_EXCH_ID"] != "NSE":
                continue
            if r["SEM_SEGMENT"] == "I":
                out.setdefault(r["SEM_TRADING_SYMBOL"], (r["SEM_SMST_SECURITY_ID"], "IDX_I"))
            elif r["SEM_SEGMENT"] == "E" and r["SEM_SERIES"] == "EQ":
                out.setdefault(r["SEM_TRADING_SYMBOL"], (r["SEM_SMST_SECURITY_ID"], "NSE_EQ"))
    return out


def read_udiff(path: Path) -> tuple[str, dict[str, float], dict[str, float]]:
    """(date, underlying price by symbol, near-the-money strike step by symbol)."""
    z = zipfile.ZipFile(path)
    rows = list(csv.DictReader(io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8")))
    day = rows[0]["TradDt"]
    spot: dict[str, float] = {}
    strikes: dict[tuple[str, str], set[float]] = defaultdict(set)
    for r in rows:
        if r["FinInstrmTp"] in ("STO", "IDO"):
            spot[r["TckrSymb"]] = float(r["UndrlygPric"])
            strikes[(r["TckrSymb"], r["XpryDt"])].add(float(r["StrkPric"]))
    step: dict[str, float] = {}
    for sym, s0 in spot.items():
        best = None
        for (s, _exp), ks in strikes.items():
            if s != sym or len(ks) < 5:
                continue
            k = np.array(sorted(ks))
            near = k[np.argsort(np.abs(k - s0))[:8]]
            d = np.diff(np.sort(near))
            d = d[d > 0]
            if d.size:
                cand = float(np.min(d))
                best = cand if best is None else min(best, cand)
        if best is not None:
            step[sym] = best
    return day, spot, step


def read_equity_bhav(path: Path) -> dict[str, float]:
    """Closing prices of EQ-series stocks from an NSE equity bhavcopy."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return {r["SYMBOL"].strip(): float(r["CLOSE"]) for r in csv.DictReader(fh) if r["SERIES"].strip() == "EQ"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nse-dir", default=str(ROOT.parent / "shared" / "data" / "nse"))
    args = ap.parse_args()
    ref = Path(args.nse_dir) / "reference"
    lots = read_mktlots(ref / "fo_mktlots_AUG-26.csv")
    industries = read_industries(ref / "ind_nifty500list_2026-03.csv")
    dhan = read_dhan_ids(ref / "dhan_api-scrip-master_compact_2026-06_EQ-INDEX-only.csv")
    day, spot, step = read_udiff(Path(args.nse_dir) / "bhavcopy" / "BhavCopy_NSE_FO_0_0_0_20250911_F_0000.csv.zip")
    equity = read_equity_bhav(Path(args.nse_dir) / "bhavcopy" / "nse_cm_bhav_2025-09-11_via_nser.csv")
    for sym, px in equity.items():
        spot.setdefault(sym, px)
    out = []
    for r in lots:
        sym = r["symbol"]
        is_index = r["instrument"] == "INDEX"
        industry, company = industries.get(sym, ("Index" if is_index else "Unclassified", r["name"]))
        sid, seg = dhan.get(sym, ("", ""))
        price = spot.get(sym)
        stp = INDEX_STRIKE_STEP.get(sym) if is_index else step.get(sym)
        if stp is None and price is not None:  # listed after 2025-09-11: NSE's interval by price band
            stp = 2.5 if price < 250 else 5 if price < 500 else 10 if price < 1000 else 20 if price < 2500 else 50
        out.append({
            "symbol": sym,
            "name": INDEX_NAMES.get(sym, company.title() if company.isupper() else company),
            "instrument": r["instrument"],
            "lot_size": r["lot_size"],
            "strike_step": stp if stp is not None else "",
            "industry": industry,
            "dhan_security_id": sid,
            "dhan_segment": seg,
            "reference_price": f"{price:.2f}" if price is not None else "",
            "reference_date": day if price is not None else "",
            "weekly_expiry": "true" if sym == "NIFTY" else "false",
        })
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(out)
    missing = [r["symbol"] for r in out if not r["reference_price"]]
    print(f"wrote {len(out)} underlyings to {OUT.relative_to(ROOT)}; without a 2025-09-11 price: {missing}")


if __name__ == "__main__":
    main()
