"""The audit trail: an append-only, hash-chained ``audit_log`` of every order request and response,
exit decision, intent, settlement, feed connect / disconnect and mode change.

Rows are numbered ``1, 2, ...``; each row's ``hash`` is sha256 of ``prev_hash`` and the canonical JSON
of (id, at, kind, subject, payload), ``prev_hash`` being the previous row's hash (64 zeros for the
first). ``prev_hash`` is unique, so two writers can never both extend the same row. Appends
(:func:`append_audit`) run in one transaction that first takes ``pg_advisory_xact_lock``
(PostgreSQL) or SQLite's write lock (``BEGIN IMMEDIATE``) and only then reads the last row, so
concurrent writers queue instead of forking the chain. :func:`verify_audit` walks the chain and
names the first row that does not follow (``options-v4 audit verify``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from .migrate import advisory_lock_key
from .schema import audit_log
from .warehouse import Warehouse

__all__ = ["GENESIS", "AuditBreak", "append_audit", "audit_rows", "verify_audit"]

GENESIS = "0" * 64


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- the audit log --------------------------------------------------------------------------------------------

_AUDIT_LOCK = advisory_lock_key("audit_log")


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def _audit_hash(prev_hash: str, id_: int, at: dt.datetime, kind: str, subject: str | None, payload: str | None) -> str:
    body = _canonical({"id": id_, "at": at.astimezone(dt.UTC).isoformat(timespec="microseconds"), "kind": kind,
                       "subject": subject, "payload": payload})
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@contextlib.contextmanager
def _serialized(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction holding the audit lock from its first statement."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK})
        done = False
        try:
            yield conn
            done = True
        finally:  # commit only when the block finished; anything else (error, interrupt) rolls back
            if done:
                conn.commit()
            else:
                conn.rollback()


def append_audit(wh: Warehouse, entries: Iterable[tuple[str, str | None, Mapping | None]],
                 *, at: dt.datetime | None = None) -> list[int]:
    """Append ``(kind, subject, payload)`` rows to the chain in one serialized transaction; their ids."""
    entries = list(entries)
    if not entries:
        return []
    at = (at or _now()).astimezone(dt.UTC)
    t = audit_log
    with _serialized(wh.engine) as conn:
        last = conn.execute(sa.select(t.c.id, t.c.hash).order_by(t.c.id.desc()).limit(1)).first()
        n, prev = (last.id, last.hash) if last else (0, GENESIS)
        rows = []
        for kind, subject, payload in entries:
            n += 1
            body = None if payload is None else _canonical(payload)
            subj = None if subject is None else str(subject)[:192]
            h = _audit_hash(prev, n, at, kind, subj, body)
            rows.append(dict(id=n, at=at, kind=kind, subject=subj, payload=body, prev_hash=prev, hash=h))
            prev = h
        conn.execute(t.insert(), rows)
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class AuditBreak:
    id: int
    reason: str


def verify_audit(wh: Warehouse, *, batch: int = 5000) -> AuditBreak | None:
    """Walk the chain from row 1: the first row whose id, prev_hash or hash does not follow (None:
    the chain is intact)."""
    t = audit_log
    expect_id, prev = 1, GENESIS
    with wh.engine.connect() as conn:
        while True:
            rows = conn.execute(sa.select(t).where(t.c.id >= expect_id).order_by(t.c.id).limit(batch)).all()
            for r in rows:
                if r.id != expect_id:
                    return AuditBreak(expect_id, f"row {expect_id} is missing (next stored row is {r.id})")
                if r.prev_hash != prev:
                    return AuditBreak(r.id, "prev_hash is not the previous row's hash")
                if _audit_hash(r.prev_hash, r.id, r.at, r.kind, r.subject, r.payload) != r.hash:
                    return AuditBreak(r.id, "hash does not match the row's content")
                expect_id, prev = expect_id + 1, r.hash
            if len(rows) < batch:
                return None


def audit_rows(wh: Warehouse, *, kind: str | None = None, subject: str | None = None,
               last: int | None = None) -> pl.DataFrame:
    """Audit rows in chain order; ``last``: only the newest N (read newest first, returned in order)."""
    t = audit_log
    q = sa.select(t)
    if kind is not None:
        q = q.where(t.c.kind == kind)
    if subject is not None:
        q = q.where(t.c.subject == subject)
    if last is not None:
        return wh.read(q.order_by(t.c.id.desc()).limit(last)).reverse()
    return wh.read(q.order_by(t.c.id))
