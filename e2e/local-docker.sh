#!/usr/bin/env bash
# Makes sure the local Docker engine answers on /var/run/docker.sock; starts dockerd if it does not.
#
#   e2e/local-docker.sh start STATE_DIR   # starts dockerd only if none answers; remembers its PID in STATE_DIR
#   e2e/local-docker.sh stop STATE_DIR    # stops the dockerd this script started (by PID), if any
set -euo pipefail
cmd=$1 state=$2
pidfile=$state/local-dockerd.pid
docker=/usr/bin/docker
answers() { "$docker" -H unix:///var/run/docker.sock version >/dev/null 2>&1; }

case $cmd in
  start)
    mkdir -p "$state"
    if answers; then exit 0; fi
    dockerd >"$state/local-dockerd.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 300); do
      answers && exit 0
      kill -0 "$(cat "$pidfile")" 2>/dev/null || break
      sleep 0.1
    done
    echo "local-docker.sh: dockerd did not come up; its log:" >&2
    tail -n 20 "$state/local-dockerd.log" >&2
    exit 1
    ;;
  stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
    ;;
  *) echo "usage: $0 start|stop STATE_DIR" >&2; exit 2 ;;
esac
