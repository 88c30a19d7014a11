"""The instruments asset: the session's tradable contracts (the original system's import_scrip_master.py)."""

import time

import dagster as dg
import polars as pl

from options_v4_dagster.defs.common import failures_metadata, frame_markdown, record_failures
from options_v4_dagster.defs.lineage import MARKET_DATA, asset_attrs
from options_v4_dagster.defs.market_data.assets import GROUP
from options_v4_dagster.defs.partitions import nse_sessions, session_of, session_ranges
from options_v4_dagster.defs.ranges import per_session
from options_v4_dagster.defs.resources import MarketDataResource, WarehouseResource
from options_v4_dagster.errors import DataError, DataUnavailable, ProviderError
from options_v4_dagster.market.instruments import INSTRUMENTS_SCHEMA
from options_v4_dagster.store import Replace
from options_v4_dagster.store.instruments import instruments_count, session_instruments
from options_v4_dagster.store.provenance import sources_of
from options_v4_dagster.types import Failure

ASSET = "instruments"


@dg.asset(
    partitions_def=nse_sessions,
    group_name=GROUP,
    deps=["universe"],
    **asset_attrs("instruments", MARKET_DATA, grain="contract"),
    backfill_policy=session_ranges,
    description="Every tradable contract of the session's underlyings with its security id, exchange segment, "
    "lot size, tick size (INR) and freeze quantity: from Dhan's scrip master on the dhan source (options and "
    "futures within the horizon, plus the underlyings' index / equity ids), derived from the session's option "
    "chains on the others. Table instruments; the execution plan and the paper broker read lots, ticks, freeze "
    "limits and security ids from it. A scrip master that cannot be read fails the step and keeps the stored rows.",
)
@per_session
def instruments(context: dg.AssetExecutionContext, market_data: MarketDataResource,
                warehouse: WarehouseResource) -> dg.MaterializeResult:
    session = session_of(context)
    provider, wh = market_data.get(), warehouse.get()
    symbols = wh.read_partition("fno_universe", session, ["symbol"]).get_column("symbol").to_list()
    t0 = time.perf_counter()
    try:
        frame, failures = provider.instruments(symbols, session, horizon_days=market_data.horizon_days)
    except (DataError, ProviderError) as exc:
        # nothing usable for the session: record why, keep the stored rows (a broken file fails the step)
        record_failures(wh, session, ASSET, [Failure.from_exception("*", ASSET, exc)])
        kept = instruments_count(wh, session)
        if isinstance(exc, DataUnavailable):
            context.log.warning(f"instruments {session}: {exc}; recorded as missing, {kept} stored rows kept")
            return dg.MaterializeResult(metadata={"dagster/row_count": kept, "source": provider.name,
                                                  "missing_session": True, "cause": str(exc)})
        context.log.error(f"instruments {session}: {exc}; the {kept} stored rows are kept")
        raise dg.Failure(description=f"instruments {session}: {provider.name} gave no usable instruments: {exc}",
                         metadata={"file": str(getattr(exc, "source", None)), "field": str(getattr(exc, "field", None)),
                                   "cause": str(exc), "kept_rows": kept}) from exc
    fetch_s = time.perf_counter() - t0
    # a symbol that failed with an error keeps its stored rows of the same source; the rest is replaced
    broken = sorted({f.symbol for f in failures if f.kind == "error"})
    stored_source = sources_of(wh, session, [ASSET]).get(ASSET)
    kept = session_instruments(wh, session, broken).select(list(INSTRUMENTS_SCHEMA)).cast(INSTRUMENTS_SCHEMA) \
        if broken and stored_source == provider.name else frame.clear()
    frame = pl.concat([frame.filter(~pl.col("symbol").is_in(broken)), kept])
    if frame.height == 0:
        failures = [*failures, Failure("*", ASSET, f"{provider.name} lists no instrument for {session}", "missing")]
        record_failures(wh, session, ASSET, failures)
        context.log.warning(f"instruments {session}: none from {provider.name}; the stored rows are kept")
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "source": provider.name,
                                              "missing_session": True, **failures_metadata(failures)})
    res = record_failures(wh, session, ASSET, failures, Replace.partition(ASSET, session, frame),
                          source=provider.name)[0]
    kinds = dict(frame.group_by("instrument_type").len().iter_rows())
    options = kinds.get("OPTIDX", 0) + kinds.get("OPTSTK", 0)
    per_symbol = (frame.filter(pl.col("option_type").is_not_null())
                  .group_by("symbol").agg(pl.len().alias("contracts"), pl.col("expiry").n_unique().alias("expiries"),
                                          pl.col("lot_size").unique().sort().cast(pl.Utf8).str.join("/").alias("lots"),
                                          pl.col("freeze_quantity").max().alias("freeze"))
                  .sort("contracts", descending=True))
    for f in failures:
        context.log.warning(f"instruments {session} {f.symbol}: {f.kind}: {f.reason}")
    context.log.info(f"instruments {session}: {frame.height} rows ({options} options) of "
                     f"{frame.get_column('symbol').n_unique()} underlyings from {provider.name} "
                     f"(fetch {fetch_s:.2f}s, write {res.seconds:.2f}s)")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "symbols": frame.get_column("symbol").n_unique(),
        "contracts": options,
        "futures": kinds.get("FUTIDX", 0) + kinds.get("FUTSTK", 0),
        "underlyings": kinds.get("INDEX", 0) + kinds.get("EQUITY", 0),
        "source": provider.name,
        "fetch_seconds": round(fetch_s, 3),
        "write_seconds": round(res.seconds, 3),
        "kept_stored_rows": kept.height,
        "top_symbols": dg.MetadataValue.md(frame_markdown(per_symbol, 15)),
        **failures_metadata(failures),
    })
