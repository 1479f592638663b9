#!/usr/bin/env bash
# The benchmark of issues 3 and 6: ballast against its floor (the Docker API by hand), Docker Swarm and Ansible
# on the e2e rig. Builds ballast in release mode, installs Ansible in a venv, brings up its own rig, runs the
# bench binary (e2e/src/bin/bench), writes BENCHMARKS.md, and tears down what it started.
#
#   bash e2e/bench/run.sh [--quick] [--n N] [--only SECTIONS] [--out PATH]
#   bash e2e/bench/run.sh --render [--out PATH]
#
#   --quick       n = 3 per figure (development); the default is n = 10 (~15 min on 2 cores)
#   --only LIST   comma separated, of floor,ballast,ansible,swarm,downtime,fleet (default: all)
#   --out PATH    where the report goes (default: BENCHMARKS.md at the repository root); the measurements go
#                 to e2e/bench/results.json beside it (PATH.json for another PATH)
#   --render      measure nothing: write the report again from the saved measurements (after editing
#                 e2e/bench/analysis.md, the hand-written part of the report)
#
# Env: BENCH_RIG_DIR (default /tmp/ballast-bench-rig), BENCH_VENV (default /var/tmp/ballast-bench-venv),
#      BENCH_HOSTS (rig hosts, default 8), RIG_SLOT (the rig's slot, default 0; see e2e/README.md).
# One rig runs in a slot at a time: while another is up in it, this waits and retries every 30 s, up to 20 min.
# It never tears down a rig it did not bring up. Run as root (the rig needs it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
die() { echo "run.sh: $*" >&2; exit 1; }

n=10 only=floor,ballast,ansible,swarm,downtime,fleet out=$root/BENCHMARKS.md render=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) n=3 ;;
    --render) render=1 ;;
    --n) [ $# -ge 2 ] || die "--n needs a number"; n=$2; shift ;;
    --only) [ $# -ge 2 ] || die "--only needs a list"; only=$2; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a path"; out=$2; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
[[ $n =~ ^[1-9][0-9]*$ ]] || die "--n must be a positive number: $n"
rig=${BENCH_RIG_DIR:-/tmp/ballast-bench-rig}
venv=${BENCH_VENV:-/var/tmp/ballast-bench-venv}
hosts=${BENCH_HOSTS:-8}
case $out in /*) ;; *) out=$PWD/$out ;; esac
if [ "$out" = "$root/BENCHMARKS.md" ]; then results=$root/e2e/bench/results.json; else results=${out%.md}.json; fi
t0=$(date +%s)
cd "$root"

if [ "$render" = 1 ]; then
  cargo build --release --quiet -p ballast-e2e --bin bench
  target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  exec "$target/release/bench" --render "$results" --out "$out"
fi
[ "$(id -u)" = 0 ] || die "run as root (the rig needs network namespaces)"

# Release binaries: ballastd, ballast, and the bench itself.
echo "run.sh: building ballastd, ballast and bench (release)" >&2
cargo build --release --quiet -p ballast-operator --bin ballastd -p ballast-cli --bin ballast -p ballast-e2e --bin bench
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bench=$target/release/bench
[ -x "$bench" ] || die "no bench binary at $bench after the build"

# Ansible (the bundle brings community.docker) and the docker package the module needs on the target; the
# rig hosts share this machine's filesystem, so the venv's python serves as their interpreter.
if ! "$venv/bin/ansible-playbook" --version >/dev/null 2>&1 || ! "$venv/bin/python3" -c 'import docker' 2>/dev/null; then
  echo "run.sh: installing ansible and docker (pip) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check ansible docker
fi

bash e2e/rig/deps.sh

up=0 pid=
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ "$up" = 1 ]; then bash e2e/rig/down.sh "$rig" >&2 || status=1; fi
  echo "run.sh: done in $(($(date +%s) - t0)) s" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The rig: wait while another one is up (names and addresses are fixed), never touch it.
deadline=$(($(date +%s) + 1200))
while :; do
  if err=$(bash e2e/rig/up.sh "$hosts" "$rig" 2>&1 >/dev/null); then
    up=1
    break
  fi
  case $err in
    *"another rig is up"* | *"is not empty"* | *"something listens on"*) ;;
    *) die "bringing up the rig failed: $err" ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || die "another rig stayed up for 20 minutes: $err"
  echo "run.sh: another rig is up ($(echo "$err" | head -n1)); retrying in 30 s" >&2
  sleep 30
done
echo "run.sh: rig of $hosts hosts up in $rig" >&2

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- operator cli specs e2e 2>/dev/null || commit="$commit+changes"
"$bench" --rig "$rig" --n "$n" --out "$out" --results "$results" --venv "$venv" --only "$only" \
  --provenance "ballast at $commit, \`bash e2e/bench/run.sh --n $n\`" &
pid=$!
status=0
wait "$pid" || status=$?
pid=
[ "$status" = 0 ] || echo "run.sh: the bench exited with $status" >&2
exit "$status"
