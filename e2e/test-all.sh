#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run`): unit tests, integration tests on a real etcd, the real
# local Docker engine, real sshd and moto, and the end-to-end scenarios and fault suite on multi-host rigs.
# Installs what it needs, starts what it needs, and stops and removes what it started.
#
# Two rigs (slots 0 and 1) run side by side: the suites in SIDE (the longest, on rig B) run in a second
# nextest run next to the main one (everything else, rig A). Each rig runs one scenario at a time.
# RIG_SLOTS="A B" picks other slots (default "0 1"), e.g. when other rigs are up on this machine.
#
#   bash e2e/test-all.sh [extra nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "test-all.sh: run as root (it installs packages, runs dockerd, makes network namespaces)" >&2; exit 1; }
echo "== installing what is missing"
bash e2e/install.sh

work=$(mktemp -d /tmp/ballast-ci.XXXXXX)
cleanup() {
  set +e
  for r in rig rig-b; do
    if [ -f "$work/$r/.ballast-rig" ]; then bash e2e/rig/down.sh "$work/$r"; fi
  done
  bash e2e/local-docker.sh stop "$work"
  rm -rf "$work"
}
trap cleanup EXIT

echo "== the local Docker engine"
bash e2e/local-docker.sh start "$work"

echo "== building (one build of the workspace)"
cargo build --workspace --all-targets

read -r slot_a slot_b <<<"${RIG_SLOTS:-0 1}"
echo "== bringing up two e2e rigs (slots $slot_a and $slot_b): 2 hosts each, registry behind auth (ECR tokens from moto)"
RIG_SLOT=$slot_a RIG_REGISTRY_AUTH=${RIG_REGISTRY_AUTH:-1} bash e2e/rig/up.sh 2 "$work/rig" &
up_a=$!
RIG_SLOT=$slot_b RIG_REGISTRY_AUTH=${RIG_REGISTRY_AUTH:-1} bash e2e/rig/up.sh 2 "$work/rig-b" &
up_b=$!
wait "$up_a"
wait "$up_b"

# The end-to-end suites of the side run (rig B); all the rest runs on rig A.
side='package(ballast-e2e) & (binary(faults))'
cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
echo "== running the tests (side run on rig B: $side, its output at the end)"
RIG_DIR=$work/rig-b cargo nextest run --workspace --profile ci -E "$side" "$@" >"$work/side.log" 2>&1 &
side_pid=$!
status=0
RIG_DIR=$work/rig cargo nextest run --workspace --profile ci -E "not ($side)" "$@" || status=$?
side_status=0
wait "$side_pid" || side_status=$?
echo "== the side run on rig B ($side)"
cat "$work/side.log"
if [ "$status" != 0 ] || [ "$side_status" != 0 ]; then
  echo "test-all.sh: tests failed (main run: exit $status, side run: exit $side_status)" >&2
  exit 1
fi
