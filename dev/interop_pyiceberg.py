"""Interop proof: PyIceberg, which Tributary did not write, reads the lake.

Usage: interop_pyiceberg.py DATA_DIR TRIBUTARY_BIN [--compacted]

Opens DATA_DIR's catalog with PyIceberg's SqlCatalog and checks that row
counts, sums and the snapshot-summary positions agree with what Tributary's
own SQL answers. With --compacted, raw.transactions must have been compacted
(its current snapshot a `replace`) and is read through the rewritten files.
Exits non-zero, naming the mismatch, if they do not.
"""

import json
import subprocess
import sys
from decimal import Decimal

import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog


def tributary_sql(binary, data_dir, sql):
    out = subprocess.run(
        [binary, "sql", "--data-dir", data_dir, "--format", "json", sql],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["rows"]


def main():
    data_dir, binary = sys.argv[1], sys.argv[2]
    compacted = "--compacted" in sys.argv[3:]
    catalog = SqlCatalog(
        "tributary",
        uri=f"sqlite:///{data_dir}/catalog.db",
        warehouse=f"file://{data_dir}/warehouse",
    )
    namespaces = {ns[0] for ns in catalog.list_namespaces()}
    assert {"raw", "quarantine"} <= namespaces, f"namespaces: {namespaces}"

    failures = []
    for name in ["raw.transactions", "quarantine.transactions"]:
        table = catalog.load_table(name)
        py_rows = table.scan().to_arrow().num_rows
        [[trib_rows]] = tributary_sql(binary, data_dir, f"SELECT count(*) FROM {name}")
        print(f"{name:<26} pyiceberg={py_rows:>8}  tributary={trib_rows:>8}")
        if py_rows != trib_rows:
            failures.append(f"{name}: pyiceberg counts {py_rows}, tributary {trib_rows}")

        # Maintenance snapshots (compaction, expiry) carry no positions: the
        # pipeline's state is in the newest snapshot that does.
        stamped = [s for s in table.snapshots() if "tributary.positions" in s.summary.additional_properties]
        summary = max(stamped, key=lambda s: s.sequence_number).summary
        positions = json.loads(summary["tributary.positions"])
        [[trib_positions]] = tributary_sql(
            binary, data_dir,
            f'SELECT positions FROM {name.split(".")[0]}."{name.split(".")[1]}$snapshots" '
            "WHERE positions IS NOT NULL LIMIT 1",
        )
        print(f"{'':<26} positions pyiceberg={positions} tributary={trib_positions}")
        if positions != json.loads(trib_positions):
            failures.append(f"{name}: positions differ")
        if positions.get("http") != py_rows:
            failures.append(f"{name}: http position {positions.get('http')} != {py_rows} rows")
        if summary["tributary.pipeline"] != "http:raw.transactions":
            failures.append(f"{name}: pipeline is {summary['tributary.pipeline']}")

    raw = catalog.load_table("raw.transactions")
    operation = raw.current_snapshot().summary.operation.value
    print(f"raw.transactions           current snapshot: {operation}, "
          f"{raw.current_snapshot().summary['total-data-files']} data files")
    if compacted and operation != "replace":
        failures.append(f"raw.transactions: expected a compaction, the current snapshot is a {operation}")
    arrow = raw.scan(selected_fields=("amount",)).to_arrow()
    py_sum = pc.sum(arrow["amount"]).as_py() or Decimal(0)
    [[trib_sum]] = tributary_sql(binary, data_dir, "SELECT CAST(sum(amount) AS VARCHAR) FROM raw.transactions")
    print(f"sum(amount)                pyiceberg={py_sum}  tributary={trib_sum}")
    if Decimal(str(py_sum)) != Decimal(trib_sum):
        failures.append(f"sum(amount): pyiceberg {py_sum}, tributary {trib_sum}")

    if failures:
        print("INTEROP FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("interop ok: PyIceberg and Tributary agree")


if __name__ == "__main__":
    main()
