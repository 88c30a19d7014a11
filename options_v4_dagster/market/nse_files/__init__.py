"""``nse_files``: replay real NSE files from a folder (option chains, F&O bhavcopies, index and equity history).

Files are found (:mod:`.discovery`) by walking ``data_dir`` recursively and recognised by their name and
header, never by a fixed path (one module per kind of file):

* ``oc_json`` (:mod:`.oc_json`) — NSE option-chain API snapshots (``{"records": {"data": [...], "timestamp", ...}}``);
  one underlying (the legs' ``underlying``) at one moment (``records.timestamp``, IST);
* ``fo_bhav`` (:mod:`.bhavcopy`) — legacy F&O bhavcopy ``foDDMONYYYYbhav.csv`` (``INSTRUMENT,SYMBOL,EXPIRY_DT,...``);
* ``fo_udiff`` (:mod:`.bhavcopy`) — UDiFF F&O bhavcopy ``BhavCopy_NSE_FO_*.csv`` (plain or inside a ``.zip``);
* ``eq_bhav`` (:mod:`.bars`) — equity bhavcopies and histories assembled from them (``SYMBOL,SERIES,...,TOTTRDQTY``);
* ``index_history`` (:mod:`.bars`) — NSE index exports (``Date ,Open ,High ,Low ,Close ...``; the file name says
  which index: ``nifty50`` -> NIFTY, ``indiavix`` -> INDIAVIX);
* ``fo_mktlots`` (:mod:`.lots`) — NSE ``fo_mktlots.csv`` lot tables (one column per contract month).

Anything else (README, Dhan scrip masters, index constituent lists) is logged and ignored. A file
that should be one of the above but cannot be read raises :class:`DataError` naming the file and
field, for the symbol/session it concerns; a broken file whose name carries the session's date turns
a "nothing for this session" answer into that error instead of :class:`DataUnavailable`.

Units and choices (see :data:`CHAIN_SCHEMA`):

* ``volume``/``oi``/``oi_change`` in contracts. The option-chain JSON already has contracts (OI may be
  fractional in NSE's 2025 files). Bhavcopies hold OI in **shares** (legacy ``OPEN_INT``/``CHG_IN_OI``,
  UDiFF ``OpnIntrst``/``ChngInOpnIntrst``: multiples of ``NewBrdLotQty``), divided here by the lot
  size; their volume (``CONTRACTS``, ``TtlTradgVol``) is already in contracts (UDiFF ``TtlTrfVal`` =
  ``TtlTradgVol`` x lot x (strike + premium)).
* ``bid_qty``/``ask_qty`` as NSE shows them: shares (always whole lots).
* NSE writes 0 for a missing bid, ask or last price: those become null (and their quantity too).
  Legacy bhavcopy rows with ``CONTRACTS`` = 0 carry a stale ``CLOSE``: ``close`` keeps it, ``ltp``
  is null. UDiFF ``LastPric`` 0 (no trade) -> null.
* ``lot_size`` per contract (lots change between contract months, e.g. BANKNIFTY 25 -> 15 for the
  Jul-2023 series), resolved in this order and recorded (:meth:`NseFilesProvider.lot_size_sources`):
  1. ``udiff``: a same-day UDiFF bhavcopy's ``NewBrdLotQty``;
  2. ``oc_json``: a same-day option-chain snapshot — NSE quotes bid/ask/total quantities in shares,
     so their greatest common divisor per expiry is the lot (HDFCBANK 550 on 2025-07-17, before
     its bonus; BANKNIFTY 25, and 15 for the Jul-2023 expiry, on 2023-05-03);
  3. for a legacy bhavcopy day: the lot table nearest in time (``udiff``/``oc_json``/``fo_mktlots``,
     the contract month's column) when it agrees within 2.5% with the lot implied by the file's own
     turnover (``VAL_INLAKH`` x 1e5 / (``CONTRACTS`` x (strike + average price))); otherwise that
     implied lot snapped to a divisor of the contracts' share OI (``fo_bhav_turnover``);
  4. otherwise the nearest lot table, then the universe table (``universe``).
* ``underlying_price``: JSON ``underlyingValue``; UDiFF ``UndrlygPric``. The legacy bhavcopy has
  none: a same-day snapshot's ``underlyingValue``, else that day's close from an index export or an
  equity bhavcopy in the folder, else the near-month future's close discounted at
  :attr:`NseFilesProvider.carry_rate` (7%/yr simple; on the two UDiFF days its median error against
  NSE's ``UndrlygPric`` is 0.11-0.16% vs 0.36-0.37% undiscounted). Recorded per symbol.
* ``futures_price``: the close of the future with the same expiry (null for weekly expiries).
* ``close``: the bhavcopy closing price (also joined onto snapshot rows when a same-day bhavcopy exists);
  ``security_id``: UDiFF ``FinInstrmId`` (NSE's token) when a same-day UDiFF exists.
* A session served by a snapshot and a bhavcopy: the snapshot wins for its symbol (it has quotes).
"""

from .common import (
    CLOSE_TIME,
    IST,
    SRC_EQUITY,
    SRC_FO_BHAV,
    SRC_INDEX,
    SRC_OC_JSON,
    SRC_UDIFF,
    NseFile,
)
from .provider import NseFilesProvider

__all__ = ["CLOSE_TIME", "IST", "SRC_EQUITY", "SRC_FO_BHAV", "SRC_INDEX", "SRC_OC_JSON", "SRC_UDIFF", "NseFile",
           "NseFilesProvider"]
