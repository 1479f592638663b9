#!/usr/bin/env bash
# A moto server (AWS API mock for Secrets Manager and ECR) on loopback, for tests and scenarios.
#
#   e2e/moto.sh start STATE_DIR [PORT]   # installs moto[server] with pip if missing, starts moto_server on
#                                        # 127.0.0.1:PORT (default 5055), waits until it answers, prints its URL;
#                                        # remembers its PID in STATE_DIR/moto.pid
#   e2e/moto.sh stop STATE_DIR           # stops the moto_server this script started (by PID), if any
#
# Point the AWS SDK at it with AWS_ENDPOINT_URL=<printed URL>, AWS_REGION=us-east-1,
# AWS_ACCESS_KEY_ID=testing, AWS_SECRET_ACCESS_KEY=testing.
set -euo pipefail
cmd=${1:-} state=${2:-}
[ -n "$cmd" ] && [ -n "$state" ] || { echo "usage: $0 start STATE_DIR [PORT] | stop STATE_DIR" >&2; exit 2; }
pidfile=$state/moto.pid
answers() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/moto-api/" 2>/dev/null; }

case $cmd in
  start)
    port=${3:-5055}
    mkdir -p "$state"
    if ! command -v moto_server >/dev/null 2>&1; then
      echo "moto.sh: installing moto[server] with pip" >&2
      python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' >&2
      hash -r
      command -v moto_server >/dev/null 2>&1 || { echo "moto.sh: moto_server is still not on PATH after pip install" >&2; exit 1; }
    fi
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "moto.sh: moto_server already runs (PID $(cat "$pidfile")) for $state" >&2
      exit 1
    fi
    moto_server -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
    echo $! >"$pidfile"
    echo "$port" >"$state/moto.port"
    for _ in $(seq 1 600); do
      if answers "$port"; then echo "http://127.0.0.1:$port"; exit 0; fi
      kill -0 "$(cat "$pidfile")" 2>/dev/null || break
      sleep 0.1
    done
    echo "moto.sh: moto_server did not answer on 127.0.0.1:$port; its log:" >&2
    tail -n 20 "$state/moto.log" >&2
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    exit 1
    ;;
  stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile" "$state/moto.port"
    ;;
  *) echo "usage: $0 start STATE_DIR [PORT] | stop STATE_DIR" >&2; exit 2 ;;
esac
