"""The archive manifest: which sessions of the contract-level tables live in Parquet files instead of
the warehouse (:mod:`.archive`). Defined on :data:`options_v4_dagster.store.schema.metadata` and
re-exported by ``schema``."""

from __future__ import annotations

import sqlalchemy as sa

from .schema import UTCDateTime, _now, metadata

archived_sessions = sa.Table(
    "archived_sessions", metadata,
    sa.Column("table_name", sa.String(64), primary_key=True, comment="option_chain_data or option_greeks"),
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("path", sa.String(512), nullable=False,
              comment="the Parquet file, relative to the archive root: TABLE/session=YYYY-MM-DD/part-HASH.parquet"),
    sa.Column("row_count", sa.Integer, nullable=False, comment="rows in the file (those deleted from the table)"),
    sa.Column("checksum", sa.String(64), nullable=False,
              comment="sha256 of the rows in canonical form (typed, sorted by the primary key)"),
    sa.Column("file_bytes", sa.BigInteger, nullable=False),
    sa.Column("archived_at", UTCDateTime, nullable=False, default=_now),
    comment="Sessions of contract-level tables moved to Parquet (options-v4 archive); written in the transaction "
    "that deletes their rows, removed by any later write of the session",
)
