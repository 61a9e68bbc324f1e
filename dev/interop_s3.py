"""Interop proof on S3: PyIceberg reads a table whose warehouse is on the
test S3 server (SeaweedFS, `dev/s3.sh`), written by `tributary load`.

Usage: interop_s3.py TRIBUTARY_BIN ENDPOINT

Writes a CSV file, loads it with `tributary load` into a lake whose
warehouse is s3://tributary/interop-<pid>, then opens the catalog with
PyIceberg's SqlCatalog (its S3 FileIO, with the same endpoint and keys) and
checks the row count, an amount sum and the lineage columns. Exits
non-zero, naming the mismatch, if they disagree.
"""

import os
import subprocess
import sys
import tempfile
from decimal import Decimal

import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog

KEY, SECRET = "tributary", "tributary-secret"


def main():
    binary, endpoint = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp()
    prefix = f"interop-{os.getpid()}"
    config = os.path.join(work, "lake.toml")
    with open(config, "w") as f:
        f.write(f"""
[warehouse]
path = "s3://tributary/{prefix}"
s3 = {{ endpoint = "{endpoint}", access_key_id = "{KEY}", secret_access_key = "{SECRET}" }}

[[tables]]
name = "raw.sales"
fields = [
  {{ name = "id",     type = "string",        required = true }},
  {{ name = "amount", type = "decimal(10,2)", required = true }},
]
""")
    rows = 1000
    csv = os.path.join(work, "sales.csv")
    with open(csv, "w") as f:
        f.write("id,amount\n")
        for i in range(rows):
            f.write(f"s{i},{i}.25\n")
    subprocess.run([binary, "load", "--config", config, "--data-dir", work, "--table", "raw.sales", csv],
                   check=True, capture_output=True)

    catalog = SqlCatalog(
        "tributary",
        uri=f"sqlite:///{work}/catalog.db",
        warehouse=f"s3://tributary/{prefix}",
        **{"s3.endpoint": endpoint, "s3.access-key-id": KEY, "s3.secret-access-key": SECRET,
           "s3.path-style-access": "true", "s3.region": "us-east-1"},
    )
    table = catalog.load_table("raw.sales")
    assert table.metadata.location.startswith("s3://tributary/"), table.metadata.location
    data = table.scan().to_arrow()
    failures = []
    if data.num_rows != rows:
        failures.append(f"rows: PyIceberg {data.num_rows}, loaded {rows}")
    total = pc.sum(data["amount"]).as_py()
    expected = sum(Decimal(f"{i}.25") for i in range(rows))
    if total != expected:
        failures.append(f"sum(amount): PyIceberg {total}, expected {expected}")
    if set(data["_source"].to_pylist()) != {"file"}:
        failures.append(f"_source: {set(data['_source'].to_pylist())}")
    if failures:
        print("S3 interop FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"S3 interop OK: PyIceberg read {data.num_rows} rows from {table.metadata.location}")


if __name__ == "__main__":
    main()
