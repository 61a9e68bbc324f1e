#!/usr/bin/env bash
# Starts the test Kafka broker (noida-db, pinned, from PyPI) on 127.0.0.1 and
# prints its bootstrap address; `kafka.sh stop` stops it. Idempotent.
# `kafka.sh fresh` stops it, empties its data and starts it: noida keeps its
# whole log in one JSON file that it rewrites about once a second, so topics
# left by earlier runs (benchmarks fill gigabytes) slow every save and
# restart, until a restart comes back without the newest topics.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${TRIBUTARY_KAFKA_PORT:-19092}"
DIR="$ROOT/.dev/noida"
PIDFILE="$DIR/pid"
noida_bin() {
  "$ROOT/.dev/venv/bin/python" -c 'from importlib.resources import files;print(files("noida_db")/"noida-db")'
}
if [[ "${1:-start}" == "stop" ]]; then
  if [[ -f "$PIDFILE" ]]; then
    PID="$(cat "$PIDFILE")"
    # noida keeps the log in memory and saves it about once a second; on a
    # bare SIGTERM it keeps acknowledging produce requests after its final
    # save, so records acknowledged in that window are lost and their
    # offsets reused. `stop kafka` closes the listener and saves first.
    "$(noida_bin)" stop kafka --data-dir "$DIR/data" >/dev/null 2>&1 || true
    kill "$PID" 2>/dev/null || true
    # The broker holds a lock on its data dir until it has exited.
    for _ in $(seq 1 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
    rm -f "$PIDFILE"
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break; sleep 0.1; done
  fi
  exit 0
fi
if [[ "${1:-start}" == "fresh" ]]; then
  bash "$0" stop
  rm -rf "$DIR/data"
fi
bash "$ROOT/dev/python-env.sh"
BIN="$(noida_bin)"
mkdir -p "$DIR"
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "127.0.0.1:$PORT"; exit 0
fi
# Run the binary itself, not the Python wrapper: killing the wrapper would
# leave the broker running.
nohup "$BIN" start --only kafka --host 127.0.0.1 --kafka-port "$PORT" --data-dir "$DIR/data" > "$DIR/broker.log" 2>&1 &
echo $! > "$PIDFILE"
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then echo "127.0.0.1:$PORT"; exit 0; fi
  sleep 0.1
done
echo "kafka broker did not start; see $DIR/broker.log" >&2
exit 1
