#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run`): unit tests, integration tests on a real etcd, the real
# local Docker engine, real sshd and moto, and the end-to-end scenarios and fault suite on a multi-host rig.
# Installs what it needs, starts what it needs, and stops and removes what it started.
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
  [ -f "$work/rig/rig.env" ] || [ -f "$work/rig/.ballast-rig" ] && bash e2e/rig/down.sh "$work/rig"
  bash e2e/local-docker.sh stop "$work"
  rm -rf "$work"
}
trap cleanup EXIT

echo "== the local Docker engine"
bash e2e/local-docker.sh start "$work"

echo "== building (one build of the workspace)"
cargo build --workspace --all-targets

echo "== bringing up the e2e rig: 2 hosts, registry behind auth (ECR tokens from moto)"
RIG_REGISTRY_AUTH=${RIG_REGISTRY_AUTH:-1} bash e2e/rig/up.sh 2 "$work/rig"
export RIG_DIR=$work/rig

echo "== running the tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --profile ci "$@"
else
  cargo test --workspace "$@"
fi
