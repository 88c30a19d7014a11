"""The supabase-py adapter against a local PostgREST stand-in (an httpx.MockTransport).

No PostgREST server can be installed here, so the stand-in implements the part of PostgREST the
adapter uses, with PostgREST's wire behaviour: tables typed from the project's schema; GET/HEAD
with ``select``, ``eq`` filters, ``order``, ``offset``/``limit`` and a server row cap;
``Prefer: count=exact`` answered in ``Content-Range``; POST bulk insert (unknown column, NOT NULL
and primary-key violations rejected with PostgREST's codes); DELETE with ``eq`` filters (a DELETE
without a filter is refused, as Supabase does); API-key check; PostgREST JSON errors.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import httpx
import polars as pl
import pytest
import sqlalchemy as sa
from supabase import ClientOptions, create_client

from options_v4_dagster.errors import ConfigError, ProviderError
from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.schema import metadata
from options_v4_dagster.store.supabase_store import SupabaseWarehouse, to_json_rows

URL = "http://supabase.test"
KEY = "service-role-test-key"
D = dt.date(2025, 7, 17)
D2 = dt.date(2025, 7, 18)
SNAP = dt.datetime(2025, 7, 17, 10, 0, tzinfo=dt.UTC)


def _error(status: int, code: str, message: str, details=None, hint=None) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, "details": details, "hint": hint})


class PostgrestStandIn:
    """In-memory PostgREST: enough of its semantics to check what the adapter sends."""

    def __init__(self, tables=None, max_rows: int = 1000, key: str = KEY) -> None:
        names = tables or list(metadata.tables)
        self.tables: dict[str, list[dict]] = {n: [] for n in names}
        self.max_rows = max_rows
        self.key = key
        self.requests: list[httpx.Request] = []
        self.inject: list[tuple[str, httpx.Response]] = []  # (method, response) served once, in order

    # values as PostgreSQL stores them, rendered as PostgREST renders them
    @staticmethod
    def _parse(col: sa.Column, value):
        if value is None:
            return None
        typ = col.type
        if isinstance(typ, sa.DateTime):
            if not isinstance(value, str) or not re.search(r"(Z|[+-]\d\d:\d\d)$", value):
                raise ValueError(f'invalid input syntax for type timestamp with time zone: "{value}"')
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
        if isinstance(typ, sa.Date):
            return dt.date.fromisoformat(value)
        if isinstance(typ, sa.Float | sa.Integer):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(f'invalid input syntax for type numeric: "{value}"')
            v = float(value)
            if isinstance(typ, sa.Integer):
                if v != int(v):
                    raise ValueError(f'invalid input syntax for type integer: "{value}"')
                return int(v)
            return v
        return str(value)

    @staticmethod
    def _render(value):
        if isinstance(value, dt.datetime):
            return value.isoformat()  # 2025-07-17T10:00:00+00:00, as PostgREST sends timestamptz
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, float) and value.is_integer():
            return int(value)  # float8 25000 arrives as the JSON number 25000
        return value

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for i, (method, resp) in enumerate(self.inject):
            if method == request.method:
                del self.inject[i]
                return resp
        if request.headers.get("apikey") != self.key or request.headers.get("authorization") != f"Bearer {self.key}":
            return _error(401, "PGRST301", "Invalid API key")
        m = re.fullmatch(r"/rest/v1/(\w+)", request.url.path)
        if not m:
            return httpx.Response(404, text="not found")
        name = m.group(1)
        if name not in self.tables:
            return _error(404, "PGRST205", f"Could not find the table 'public.{name}' in the schema cache")
        table = metadata.tables[name]
        params = request.url.params
        prefer = {p.strip() for p in request.headers.get("prefer", "").split(",") if p.strip()}
        try:
            filters = self._filters(table, params)
        except (KeyError, ValueError) as exc:
            return _error(400, "42703" if isinstance(exc, KeyError) else "22P02", str(exc))
        rows = self.tables[name]
        match = [r for r in rows if all(r[c] == v for c, v in filters)]
        if request.method in ("GET", "HEAD"):
            return self._select(table, match, params, prefer, head=request.method == "HEAD")
        if request.method == "DELETE":
            if not filters:
                return _error(400, "21000", "DELETE requires a WHERE clause")
            keep = [r for r in rows if not any(r is x for x in match)]
            self.tables[name] = keep
            headers = {"Content-Range": f"*/{len(match)}"} if "count=exact" in prefer else {}
            if "return=representation" in prefer:
                return httpx.Response(200, json=[self._out(r, None) for r in match], headers=headers)
            return httpx.Response(204, headers=headers)
        if request.method == "POST":
            return self._insert(table, json.loads(request.content), params, prefer)
        return _error(405, "PGRST117", f"Unsupported HTTP method: {request.method}")

    def _filters(self, table: sa.Table, params) -> list[tuple[str, object]]:
        out = []
        for k, v in params.multi_items():
            if k in ("select", "order", "offset", "limit", "columns"):
                continue
            if k not in table.c:
                raise KeyError(f"column {table.name}.{k} does not exist")
            op, _, raw = v.partition(".")
            if op != "eq":
                raise ValueError(f"operator {op} not supported by the stand-in")
            out.append((k, self._parse(table.c[k], raw)))
        return out

    def _out(self, row: dict, cols: list[str] | None) -> dict:
        return {c: self._render(row[c]) for c in (cols or row.keys())}

    def _select(self, table, match, params, prefer, head: bool) -> httpx.Response:
        sel = params.get("select", "*")
        cols = None if sel == "*" else sel.split(",")
        if cols and any(c not in table.c for c in cols):
            return _error(400, "42703", f"column {table.name}.{cols} does not exist")
        for spec in reversed(params.get("order", "").split(",") if params.get("order") else []):
            col, direction = spec.split(".")[:2]
            match = sorted(match, key=lambda r, c=col: (r[c] is None, r[c]), reverse=direction == "desc")
        offset = int(params.get("offset", 0))
        limit = min(int(params.get("limit", self.max_rows)), self.max_rows)
        page = match[offset:offset + limit]
        total = str(len(match)) if "count=exact" in prefer else "*"
        rng = f"{offset}-{offset + len(page) - 1}/{total}" if page else f"*/{total}"
        status = 206 if page and len(page) < len(match) and "count=exact" in prefer else 200
        body = b"" if head else json.dumps([self._out(r, cols) for r in page]).encode()
        return httpx.Response(status, content=body, headers={"Content-Range": rng,
                                                              "Content-Type": "application/json"})

    def _insert(self, table, body, params, prefer) -> httpx.Response:
        body = body if isinstance(body, list) else [body]
        declared = params.get("columns")
        allowed = declared.split(",") if declared else None
        new = []
        for raw in body:
            for k in raw:
                if k not in table.c:
                    return _error(400, "PGRST204", f"Could not find the '{k}' column of '{table.name}' in the "
                                                   "schema cache")
                if allowed is not None and k not in [a.strip('"') for a in allowed]:
                    return _error(400, "PGRST204", f"column {k} not in ?columns")
            try:
                row = {c.name: self._parse(c, raw.get(c.name)) for c in table.c}
            except ValueError as exc:
                return _error(400, "22P02", str(exc))
            for c in table.c:
                if row[c.name] is None and not c.nullable:
                    return _error(400, "23502", f'null value in column "{c.name}" of relation "{table.name}" '
                                                "violates not-null constraint")
            new.append(row)
        pk = [c.name for c in table.primary_key.columns]
        seen = {tuple(r[c] for c in pk) for r in self.tables[table.name]}
        for r in new:
            key = tuple(r[c] for c in pk)
            if key in seen:
                return _error(409, "23505", f'duplicate key value violates unique constraint "{table.name}_pkey"',
                              details=f"Key ({', '.join(pk)})=({', '.join(map(str, key))}) already exists.")
            seen.add(key)
        self.tables[table.name].extend(new)  # one request = one transaction: all rows or none
        if "return=representation" in prefer:
            return httpx.Response(201, json=[self._out(r, None) for r in new])
        return httpx.Response(201)


def make_store(standin: PostgrestStandIn, key: str = KEY, **kw) -> SupabaseWarehouse:
    http = httpx.Client(transport=httpx.MockTransport(standin))
    client = create_client(URL, key, options=ClientOptions(httpx_client=http, postgrest_client_retry=False))
    return SupabaseWarehouse(URL, key, client=client, **kw)


def chain(session: dt.date, n: int = 5, price: float = 10.0) -> pl.DataFrame:
    ts = dt.datetime.combine(session, dt.time(10, 0), tzinfo=dt.UTC)
    return pl.DataFrame({
        "trade_date": [session] * n, "symbol": ["NIFTY"] * n, "expiry": [dt.date(2025, 7, 24)] * n,
        "strike": [25_000.0 + 50 * i for i in range(n)], "option_type": ["CE", "PE"] * (n // 2) + ["CE"] * (n % 2),
        "bid": [price] * n, "ask": [price + 0.25] * n, "ltp": [float("nan")] + [price + 0.1] * (n - 1),
        "exchange_iv": [0.1234] * n,
        "underlying_price": [25_111.45] * n, "lot_size": [75] * n, "snapshot_ts": [ts] * n, "source": ["t"] * n,
    })


@pytest.fixture()
def standin():
    return PostgrestStandIn()


def test_replace_partition_sends_delete_then_insert_and_reads_back(standin):
    store = make_store(standin)
    res = store.replace_partition("option_chain_data", D, chain(D))
    assert (res.table, res.deleted, res.inserted) == ("option_chain_data", 0, 5)
    methods = [(r.method, r.url.path) for r in standin.requests]
    assert methods == [("DELETE", "/rest/v1/option_chain_data"), ("POST", "/rest/v1/option_chain_data")]
    delete, insert = standin.requests
    assert delete.url.params["trade_date"] == "eq.2025-07-17"
    assert "count=exact" in delete.headers["prefer"] and "return=minimal" in delete.headers["prefer"]
    assert "return=minimal" in insert.headers["prefer"]
    assert delete.headers["apikey"] == KEY
    sent = json.loads(insert.content)
    assert sent[0]["trade_date"] == "2025-07-17" and sent[0]["snapshot_ts"] == "2025-07-17T10:00:00.000000+00:00"
    assert sent[0]["ltp"] is None and sent[1]["ltp"] == 10.1  # NaN travels as null
    back = store.read_partition("option_chain_data", D)
    assert back.height == 5
    assert back.schema["trade_date"] == pl.Date and back.schema["snapshot_ts"] == pl.Datetime("us", "UTC")
    assert back.schema["lot_size"] == pl.Int64 and back.schema["strike"] == pl.Float64
    assert back.get_column("strike").to_list() == [25_000.0, 25_050.0, 25_100.0, 25_150.0, 25_200.0]
    assert back.get_column("snapshot_ts")[0] == SNAP and back.get_column("ltp")[0] is None
    assert store.count("option_chain_data", D) == 5
    assert standin.requests[-1].method == "HEAD"


def test_replace_twice_gives_the_same_rows_and_leaves_other_sessions(standin):
    store = make_store(standin)
    store.replace_partition("option_chain_data", D2, chain(D2, 3))
    first = store.replace_partition("option_chain_data", D, chain(D))
    once = store.read_partition("option_chain_data", D)
    second = store.replace_partition("option_chain_data", D, chain(D))
    assert (first.deleted, second.deleted, second.inserted) == (0, 5, 5)
    assert store.read_partition("option_chain_data", D).equals(once)
    assert store.count("option_chain_data", D) == 5 and store.count("option_chain_data", D2) == 3
    assert store.count("option_chain_data") == 8
    # new values replace the old ones; an empty frame clears the session
    store.replace_partition("option_chain_data", D, chain(D, price=11.0))
    assert store.read_partition("option_chain_data", D, ["bid"]).get_column("bid").to_list() == [11.0] * 5
    cleared = store.replace_partition("option_chain_data", D, chain(D).head(0))
    assert (cleared.deleted, cleared.inserted) == (5, 0)
    assert store.count("option_chain_data", D) == 0 and store.count("option_chain_data", D2) == 3


def test_where_narrows_the_replaced_rows(standin):
    store = make_store(standin)

    def failures(asset, n):
        return pl.DataFrame({"trade_date": [D] * n, "asset": [asset] * n, "symbol": [f"S{i}" for i in range(n)],
                             "stage": ["fetch"] * n, "kind": ["error"] * n, "reason": ["boom"] * n})

    store.replace_partition("pipeline_failures", D, failures("option_chains", 3))
    store.replace_partition("pipeline_failures", D, failures("underlying_bars", 2), where={"asset": "underlying_bars"})
    store.replace_partition("pipeline_failures", D, failures("underlying_bars", 1), where={"asset": "underlying_bars"})
    rows = store.read_partition("pipeline_failures", D)
    assert sorted(rows.get_column("asset").to_list()) == ["option_chains"] * 3 + ["underlying_bars"]
    assert rows.get_column("recorded_at").dtype == pl.Datetime("us", "UTC")  # the default was filled in
    last_delete = [r for r in standin.requests if r.method == "DELETE"][-1]
    assert dict(last_delete.url.params) == {"trade_date": "eq.2025-07-17", "asset": "eq.underlying_bars"}


def test_inserts_go_in_chunks_and_reads_page_through_the_server_cap():
    standin = PostgrestStandIn(max_rows=4)  # a server that returns at most 4 rows per request
    store = make_store(standin, chunk_size=7)
    frame = chain(D, 23).sample(fraction=1.0, shuffle=True, seed=3)  # stored out of key order
    store.replace_partition("option_chain_data", D, frame)
    posts = [json.loads(r.content) for r in standin.requests if r.method == "POST"]
    assert [len(p) for p in posts] == [7, 7, 7, 2]
    standin.requests.clear()
    back = store.read_partition("option_chain_data", D)
    assert back.height == 23 and back.get_column("strike").is_sorted()
    assert back.get_column("strike").to_list() == frame.get_column("strike").sort().to_list()
    gets = [r for r in standin.requests if r.method == "GET"]
    assert len(gets) == 6 and gets[0].url.params["order"].startswith("trade_date.asc,symbol.asc")


def test_same_rows_as_the_sql_warehouse(standin, tmp_path):
    store = make_store(standin)
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    frame = chain(D, 9)
    store.replace_partition("option_chain_data", D, frame)
    wh.replace_partition("option_chain_data", D, frame)
    cols = ["trade_date", "symbol", "expiry", "strike", "option_type", "bid", "ask", "ltp", "exchange_iv",
            "underlying_price", "lot_size", "snapshot_ts", "source"]
    a = store.read_partition("option_chain_data", D, cols).sort("strike")
    b = wh.read_partition("option_chain_data", D, cols).sort("strike")
    assert a.equals(b), (a, b)
    wh.dispose()


def test_json_rows_are_strictly_serializable():
    t = metadata.tables["option_chain_data"]
    rows = to_json_rows(t, Warehouse._prepare(t, chain(D, 2)))
    json.dumps(rows, allow_nan=False)  # what postgrest-py does: NaN would raise here
    assert rows[0]["ltp"] is None and rows[0]["expiry"] == "2025-07-24"
    with pytest.raises(ValueError, match="infinite"):
        to_json_rows(t, chain(D, 2).with_columns(pl.lit(math.inf).alias("bid")))
    store = make_store(PostgrestStandIn())
    with pytest.raises(ValueError, match="naive timestamp"):
        store.replace_partition("option_chain_data", D,
                                chain(D).with_columns(pl.col("snapshot_ts").dt.replace_time_zone(None)))
    with pytest.raises(ValueError, match="outside session"):
        store.replace_partition("option_chain_data", D, chain(D2))


def test_postgrest_errors_become_provider_errors_naming_the_table(standin):
    store = make_store(standin)
    store.replace_partition("option_chain_data", D, chain(D))
    # a failing insert after the delete: the message says the partition needs the call repeated
    standin.inject.append(("POST", _error(500, "XX000", "disk full")))
    with pytest.raises(ProviderError, match="option_chain_data") as err:
        store.replace_partition("option_chain_data", D, chain(D))
    assert "disk full" in str(err.value) and "repeated" in str(err.value) and err.value.code == "XX000"
    assert err.value.provider == "supabase"
    assert store.count("option_chain_data", D) == 0  # not atomic: PostgREST has no multi-request transaction
    store.replace_partition("option_chain_data", D, chain(D))  # repeating repairs it
    assert store.count("option_chain_data", D) == 5
    # a proxy's HTML error page
    standin.inject.append(("GET", httpx.Response(502, text="<html>Bad gateway</html>")))
    with pytest.raises(ProviderError, match="table option_chain_data: select") as err:
        store.read_partition("option_chain_data", D)
    assert err.value.status == 502 and err.value.retryable
    # constraint violations from the database: a frame with a duplicated key
    with pytest.raises(ProviderError, match="duplicate key value") as err:
        store.replace_partition("option_chain_data", D, pl.concat([chain(D), chain(D).head(1)]))
    assert err.value.code == "23505"


def test_wrong_key_missing_table_and_network_failure():
    standin = PostgrestStandIn(tables=["option_chain_data"])
    with pytest.raises(ProviderError, match="table option_chain_data: count failed: Invalid API key"):
        make_store(standin, key="wrong").count("option_chain_data", D)
    with pytest.raises(ProviderError, match="table iv_percentiles: .*Could not find the table") as err:
        make_store(standin).read_partition("iv_percentiles", D)
    assert err.value.code == "PGRST205"

    def down(request):
        raise httpx.ConnectError("connection refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(down))
    client = create_client(URL, KEY, options=ClientOptions(httpx_client=http, postgrest_client_retry=False))
    with pytest.raises(ProviderError, match="table option_chain_data: delete.*ConnectError") as err:
        SupabaseWarehouse(URL, KEY, client=client).replace_partition("option_chain_data", D, chain(D))
    assert err.value.retryable
    with pytest.raises(ValueError, match="unknown warehouse table"):
        make_store(standin).count("no_such_table")


def test_from_env(monkeypatch):
    for var in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_ANON_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="SUPABASE_URL"):
        SupabaseWarehouse.from_env()
    monkeypatch.setenv("SUPABASE_URL", URL)
    monkeypatch.setenv("SUPABASE_ANON_KEY", "anon-key-value")
    store = SupabaseWarehouse.from_env()
    assert store.client.supabase_key == "anon-key-value"
    assert "anon-key-value" not in store.describe() and URL in store.describe()
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "service-key-value")
    assert SupabaseWarehouse.from_env().client.supabase_key == "service-key-value"
