#!/usr/bin/env bash
# Prints a PostgreSQL URL for the tests. Uses a server already listening on
# 127.0.0.1:5432; otherwise starts a throwaway cluster on 127.0.0.1:55432
# (installing PostgreSQL with apt if needed). Idempotent.
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "postgres://postgres@127.0.0.1:5432/postgres"
  exit 0
fi
PORT=55432
if pg_isready -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then
  echo "postgres://postgres@127.0.0.1:$PORT/postgres"
  exit 0
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [[ -z "$BIN" ]]; then
  echo "installing PostgreSQL with apt" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
fi
DATA="${TRIBUTARY_PG_DIR:-/tmp/tributary-pg}"
RUN_AS=()
if [[ "$(id -u)" == 0 ]]; then
  # initdb refuses to run as root.
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  RUN_AS=(runuser -u postgres --)
fi
if [[ ! -f "$DATA/PG_VERSION" ]]; then
  mkdir -p "$DATA"
  [[ "$(id -u)" == 0 ]] && chown postgres "$DATA"
  "${RUN_AS[@]}" "$BIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
fi
"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
  -o "-h 127.0.0.1 -p $PORT -k /tmp" start >/dev/null
echo "postgres://postgres@127.0.0.1:$PORT/postgres"
