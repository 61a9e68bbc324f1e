#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and
# integration tests against real services, the quickstart twice, and the
# PyIceberg interop check. Installs what is missing; safe to re-run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { printf '\n==> %s\n' "$*"; }

step "build tools (the bundled librdkafka and OpenSSL build with make and perl)"
if ! command -v make >/dev/null || ! perl -MFindBin -MIPC::Cmd -e1 2>/dev/null; then
  SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq make perl >/dev/null
fi
echo "make and perl present"

step "clients the integration tests drive (psql and pgbench: the Postgres protocol; openssl: test certificates)"
# pgbench ships with the server package (postgresql-NN), psql with the client.
if ! command -v psql >/dev/null || ! pgbench --version >/dev/null 2>&1 || ! command -v openssl >/dev/null; then
  SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client postgresql openssl >/dev/null
fi
psql --version && pgbench --version && openssl version

step "python readers (pinned, .dev/venv)"
bash dev/python-env.sh

step "postgresql"
TRIBUTARY_TEST_PG_URL="$(bash dev/postgres.sh)"
export TRIBUTARY_TEST_PG_URL
echo "using $TRIBUTARY_TEST_PG_URL"

step "kafka broker (noida-db, pinned)"
TRIBUTARY_TEST_KAFKA="$(bash dev/kafka.sh fresh)"
export TRIBUTARY_TEST_KAFKA
trap 'bash dev/kafka.sh stop' EXIT
echo "using $TRIBUTARY_TEST_KAFKA"

step "S3 server (SeaweedFS weed mini, pinned; SigV4 keys tributary / tributary-secret, bucket tributary)"
TRIBUTARY_TEST_S3="$(bash dev/s3.sh)"
export TRIBUTARY_TEST_S3
trap 'bash dev/kafka.sh stop; bash dev/s3.sh stop' EXIT
echo "using $TRIBUTARY_TEST_S3"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Always build the whole workspace with all targets: building one package
# alone unifies features differently and recompiles the dependencies.
step "cargo build (all targets)"
cargo build --workspace --all-targets --locked

step "cargo test (unit + integration)"
cargo test --workspace --locked

step "tributary check: a good config passes, a typo is named"
target/debug/tributary check --config examples/ecommerce.toml
BAD="$(mktemp)"
sed 's/^max_latency/max_latenzy/' examples/ecommerce.toml > "$BAD"
if target/debug/tributary check --config "$BAD" 2> "$BAD.err"; then
  echo "check accepted an unknown key" >&2; exit 1
fi
grep -q "max_latenzy" "$BAD.err" && grep -q "line" "$BAD.err" && cat "$BAD.err"
rm -f "$BAD" "$BAD.err"

step "quickstart twice on one lake, counts must reconcile"
LAKE="$(mktemp -d)"
trap 'rm -rf "$LAKE"; bash dev/kafka.sh stop; bash dev/s3.sh stop' EXIT
for run in 1 2; do
  target/debug/tributary quickstart --data-dir "$LAKE" --events 20000 --http 127.0.0.1:0 --exit | tee "$LAKE/report-$run.txt"
  grep -q "reconciled: .* OK" "$LAKE/report-$run.txt"
done

step "chaos (short): kills, rebalances, a zombie pause, a broker restart, 1 % malformed, no dedup key, keyed HTTP retries; every record exactly once"
.dev/venv/bin/python dev/chaos.py target/debug/tributary --events 20000 --kills 5 --broker-restarts 1

step "chaos (short) with a dedup key whose 1 MiB index spills to disk and is resumed after each kill"
.dev/venv/bin/python dev/chaos.py target/debug/tributary --events 20000 --kills 4 --broker-restarts 0 --dedup-memory 1MiB

step "maintenance compacts the quickstart lake and expires nothing young; PyIceberg reads the compacted table"
printf '[maintenance]\ncompact_min_files = 2\n' > "$LAKE/maintain.toml"
target/debug/tributary maintain --config "$LAKE/maintain.toml" --data-dir "$LAKE" --dry-run
target/debug/tributary maintain --config "$LAKE/maintain.toml" --data-dir "$LAKE"
.dev/venv/bin/python dev/interop_pyiceberg.py "$LAKE" target/debug/tributary --compacted

step "PyIceberg reads a table whose warehouse is on the S3 server"
.dev/venv/bin/python dev/interop_s3.py target/debug/tributary "$TRIBUTARY_TEST_S3"

step "the Iceberg REST catalog: PyIceberg scans and appends beside ingestion, DuckDB attaches and counts (local disk, then S3)"
.dev/venv/bin/python dev/interop_rest.py target/debug/tributary
.dev/venv/bin/python dev/interop_rest.py target/debug/tributary "$TRIBUTARY_TEST_S3"

echo
echo "all checks passed"
