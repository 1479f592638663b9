#!/usr/bin/env bash
# ballast's main job on the embedded default, start to finish, on this machine:
# ballastd with its own local etcd and the local Docker engine as a host; the example specs of
# specs/examples/local/ (the seed's three roles) applied; status shown converging; then two drifts made
# behind ballast's back (a container removed, a memory limit changed) and corrected by it.
# Installs what it needs; stops and removes everything it started.
#
#   bash e2e/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it installs packages and runs dockerd)" >&2; exit 1; }
say "installing what is missing (Debian packages)"
bash e2e/install.sh

work=$(mktemp -d /tmp/ballast-demo.XXXXXX)
ballastd_pid=
cleanup() {
  set +e
  if [ -n "$ballastd_pid" ] && kill -0 "$ballastd_pid" 2>/dev/null; then
    say "cleaning up: deleting the roles (ballast removes their containers), stopping ballastd"
    for role in web web_replica job; do "$ballast" delete role "$role" >/dev/null 2>&1; done
    for _ in $(seq 1 100); do
      [ -z "$(docker ps -aq --filter label=ballast.host=local)" ] && break
      sleep 0.2
    done
    kill -TERM "$ballastd_pid"
    wait "$ballastd_pid" 2>/dev/null
  fi
  docker image rm ballast-demo/app:v1 >/dev/null 2>&1
  bash e2e/local-docker.sh stop "$work"
  rm -rf "$work"
}
trap cleanup EXIT

say "starting the local Docker engine if it is not running"
bash e2e/local-docker.sh start "$work"
docker() { /usr/bin/docker -H unix:///var/run/docker.sock "$@"; }

say "building ballast (cargo build)"
cargo build -q -p ballast-operator --bin ballastd -p ballast-cli --bin ballast
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ballast=$target/debug/ballast
ballastd=$target/debug/ballastd

say "building the demo image locally from busybox (no network): ballast-demo/app:v1"
bash e2e/images/build.sh unix:///var/run/docker.sock ballast-demo/app:v1 v1

say "starting ballastd: embedded etcd under $work/data, API on a free loopback port"
"$ballastd" --data-dir "$work/data" --listen 127.0.0.1:0 --ready-file "$work/ready" --resync 10s \
  >"$work/ballastd.log" 2>&1 &
ballastd_pid=$!
for _ in $(seq 1 300); do [ -s "$work/ready" ] && break; kill -0 "$ballastd_pid" || break; sleep 0.1; done
[ -s "$work/ready" ] || { echo "ballastd did not start; its log:" >&2; tail -n 20 "$work/ballastd.log" >&2; exit 1; }
export BALLAST_SERVER
BALLAST_SERVER=$(cat "$work/ready")
echo "ballastd is at $BALLAST_SERVER (log: $work/ballastd.log)"

say "ballast apply -f specs/examples/local/"
"$ballast" apply -f specs/examples/local/
say "ballast get roles"
"$ballast" get roles
say "ballast status --wait (converging)"
"$ballast" status --wait --timeout 120s
"$ballast" status
echo; echo "web answers: $(curl -sS --max-time 5 http://127.0.0.1:3000/up)"

say "drift 1: 'docker rm -f' of the job container, behind ballast's back"
job=$(docker ps -q --filter label=ballast.host=local --filter label=ballast.role=job)
docker rm -f "$job" >/dev/null
echo "removed $job; waiting for ballast to replace it (no command given)"
for _ in $(seq 1 300); do
  new=$(docker ps -q --filter label=ballast.host=local --filter label=ballast.role=job)
  [ -n "$new" ] && [ "$new" != "$job" ] && break
  sleep 0.1
done
"$ballast" status --wait --timeout 60s
"$ballast" status job

say "drift 2: 'docker update --memory 1g' of web (the spec says 1.75g)"
web=$(docker ps -q --filter label=ballast.host=local --filter label=ballast.role=web)
docker update --memory 1g --memory-swap 2g "$web" >/dev/null
for _ in $(seq 1 300); do
  [ "$(docker inspect --format '{{.HostConfig.Memory}}' "$web")" = 1879048192 ] && break
  sleep 0.1
done
echo "web memory is $(docker inspect --format '{{.HostConfig.Memory}}' "$web") bytes again, same container $web"
"$ballast" status --wait --timeout 60s

say "ballast events"
"$ballast" events
say "done: every unit converged, both drifts corrected"
