"""Interop proof for the Iceberg REST catalog that `tributary serve` serves
under /iceberg: PyIceberg and DuckDB, which know nothing of Tributary,
read and write the lake through it.

Usage: interop_rest.py TRIBUTARY_BIN [S3_ENDPOINT]

Starts `tributary serve` on a fresh lake (local disk, or with S3_ENDPOINT
a warehouse on the test S3 server), ingests events over HTTP, then with
PyIceberg's RestCatalog: lists namespaces and tables, loads the table,
scans with a filter and compares with Tributary's SQL, appends a PyArrow
table, appends again while Tributary's own ingestion commits to the same
table (retrying on CommitFailedException, as the protocol prescribes),
creates a namespace and a table and writes it; then DuckDB attaches the
catalog and counts. Every count is asserted against what was sent. Exits
non-zero, naming the mismatch, on any disagreement.
"""

import json
import os
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

KEY, SECRET = "tributary", "tributary-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def sql(base, query):
    return http("POST", f"{base}/v1/sql", json.dumps({"sql": query}).encode(),
                {"Content-Type": "application/json"})["rows"]


def post_events(base, first, n, currency="EUR"):
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = "\n".join(json.dumps({
        "event_id": f"ev-{i}", "user_id": i, "order_id": f"o-{i}", "amount": "2.50",
        "currency": currency, "event_type": "purchase", "event_time": now,
    }) for i in range(first, first + n))
    receipt = http("POST", f"{base}/v1/tables/raw.transactions/events", lines.encode(),
                   {"Content-Type": "application/x-ndjson"})
    assert receipt["accepted"] == n, receipt


def rows_for(table, first, n):
    """n rows in the table's Arrow schema (lineage columns NULL)."""
    schema = table.schema().as_arrow()
    now = datetime.now(timezone.utc)
    values = {
        "event_id": [f"py-{i}" for i in range(first, first + n)],
        "user_id": list(range(first, first + n)),
        "order_id": [f"po-{i}" for i in range(first, first + n)],
        "amount": [Decimal("1.25")] * n,
        "currency": ["USD"] * n,
        "event_type": ["purchase"] * n,
        "event_time": [now] * n,
    }
    return pa.table({f.name: pa.array(values.get(f.name, [None] * n), type=f.type) for f in schema}, schema=schema)


def append_with_retry(catalog, name, data):
    for attempt in range(50):
        table = catalog.load_table(name)
        try:
            table.append(data)
            return attempt
        except CommitFailedException:
            time.sleep(0.05)
    raise AssertionError("50 appends in a row lost to concurrent commits")


def main():
    binary = sys.argv[1]
    endpoint = sys.argv[2] if len(sys.argv) > 2 else None
    work = tempfile.mkdtemp()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = os.path.join(work, "lake.toml")
    warehouse = ""
    if endpoint:
        warehouse = (f'[warehouse]\npath = "s3://tributary/rest-{os.getpid()}"\n'
                     f's3 = {{ endpoint = "{endpoint}", access_key_id = "{KEY}", secret_access_key = "{SECRET}" }}\n')
    example = open(os.path.join(os.path.dirname(__file__), "..", "examples", "ecommerce.toml")).read()
    example = example.split("[[jobs]]")[0].replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
    example = example.replace('pg_listen = "127.0.0.1:5433"', 'pg_listen = "127.0.0.1:0"')
    with open(config, "w") as f:
        f.write(warehouse + example)
    server = subprocess.Popen([binary, "serve", "--config", config, "--data-dir", work],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "serve.log"), "w"))
    failures = []
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        post_events(base, 0, 300)
        post_events(base, 300, 200, currency="GBP")

        catalog = RestCatalog("tributary", uri=f"{base}/iceberg", token="interop")
        namespaces = {ns[0] for ns in catalog.list_namespaces()}
        if not {"raw", "quarantine"} <= namespaces:
            failures.append(f"namespaces: {namespaces}")
        tables = {".".join(t) for t in catalog.list_tables("raw")}
        if "raw.transactions" not in tables:
            failures.append(f"tables of raw: {tables}")
        table = catalog.load_table("raw.transactions")
        gbp = table.scan(row_filter="currency == 'GBP'").to_arrow().num_rows
        [[sql_gbp]] = sql(base, "SELECT count(*) FROM raw.transactions WHERE currency = 'GBP'")
        print(f"scan with a filter: pyiceberg={gbp} tributary={sql_gbp}")
        if gbp != 200 or sql_gbp != 200:
            failures.append(f"GBP rows: pyiceberg {gbp}, tributary {sql_gbp}, sent 200")

        append_with_retry(catalog, "raw.transactions", rows_for(table, 0, 100))
        [[total]] = sql(base, "SELECT count(*) FROM raw.transactions")
        print(f"after a PyIceberg append: {total} rows (500 ingested + 100 appended)")
        if total != 600:
            failures.append(f"after the append: {total} rows, expected 600")

        # Tributary ingests while PyIceberg appends to the same table.
        stop = threading.Event()
        ingested = [0]

        def ingest():
            first = 1000
            while not stop.is_set():
                post_events(base, first, 50)
                ingested[0] += 50
                first += 50
                time.sleep(0.1)

        thread = threading.Thread(target=ingest)
        thread.start()
        retries, appended = 0, 0
        try:
            # At least ten appends, and until ingestion committed ten times.
            while appended < 100 or ingested[0] < 500:
                retries += append_with_retry(catalog, "raw.transactions", rows_for(table, 200 + appended, 10))
                appended += 10
        finally:
            stop.set()
            thread.join()
        [[total]] = sql(base, "SELECT count(*) FROM raw.transactions")
        expected = 600 + ingested[0] + appended
        print(f"concurrent: {ingested[0]} ingested + {appended} appended "
              f"({retries} appends refused by a concurrent commit and retried): {total} rows")
        if total != expected:
            failures.append(f"concurrent appends: {total} rows, expected {expected}")
        [[py_total]] = [[catalog.load_table("raw.transactions").scan().to_arrow().num_rows]]
        if py_total != expected:
            failures.append(f"PyIceberg reads {py_total} rows, expected {expected}")

        # A namespace and a table of the client's own.
        catalog.create_namespace("analytics")
        schema = Schema(NestedField(1, "name", StringType(), required=False),
                        NestedField(2, "visits", LongType(), required=False))
        created = catalog.create_table("analytics.visits", schema=schema)
        created.append(pa.table({"name": ["a", "b", "c"], "visits": [1, 2, 3]}, schema=created.schema().as_arrow()))
        [[visits]] = sql(base, "SELECT sum(visits) FROM analytics.visits")
        print(f"a table PyIceberg created and wrote: sum(visits) = {visits}")
        if visits != 6:
            failures.append(f"analytics.visits: sum {visits}, expected 6")

        duckdb_count(base, expected, failures, endpoint)
    finally:
        server.terminate()
        server.wait(timeout=60)
    if failures:
        print("REST catalog interop FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        print(open(os.path.join(work, "serve.log")).read()[-4000:], file=sys.stderr)
        sys.exit(1)
    print("REST catalog interop OK" + (" (S3 warehouse)" if endpoint else ""))


def duckdb_count(base, expected, failures, endpoint):
    """DuckDB 1.4.4 with the offline iceberg extension attaches the catalog."""
    import duckdb

    ext_dir = next(os.path.join(p, "duckdb_ext", "extensions") for p in site.getsitepackages()
                   if os.path.isdir(os.path.join(p, "duckdb_ext", "extensions")))
    con = duckdb.connect(config={"extension_directory": ext_dir, "autoinstall_known_extensions": "false"})
    con.execute("LOAD httpfs; LOAD avro; LOAD iceberg;")
    if endpoint:
        con.execute(f"CREATE SECRET s3 (TYPE s3, KEY_ID '{KEY}', SECRET '{SECRET}', ENDPOINT '{endpoint.split('://')[1]}', "
                    "URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')")
    con.execute(f"ATTACH 'tributary' AS lake (TYPE iceberg, ENDPOINT '{base}/iceberg', AUTHORIZATION_TYPE 'none')")
    [(count,)] = con.execute("SELECT count(*) FROM lake.raw.transactions").fetchall()
    print(f"DuckDB through the REST catalog: {count} rows")
    if count != expected:
        failures.append(f"DuckDB counts {count}, expected {expected}")


if __name__ == "__main__":
    main()
