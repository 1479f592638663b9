#!/usr/bin/env bash
# Tears down the e2e rig in DIR: stops its processes by PID, unmounts what the dockerds left, deletes the
# namespaces, links and iptables rule, removes DIR. Safe to run twice and on a half-built rig.
#
#   e2e/rig/down.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -eq 1 ] || rig_die "usage: down.sh DIR"
dir=${1%/}
rig_check_dir "$dir"
rig_load_slot "$dir"
[ "$(id -u)" = 0 ] || rig_die "run as root"
if [ -e "$dir" ] && [ ! -f "$dir/$RIG_MARKER" ]; then
  rig_die "$dir is not a rig folder (no $RIG_MARKER): not touching it"
fi
bridge=$(rig_bridge "$dir")
errors=0
warn() { echo "down.sh: $*" >&2; errors=1; }
hosts=()
for h in "$dir"/h[0-9]*; do [ -d "$h" ] && hosts+=("$h"); done

# 1. dockerds, all at once: each stops its containers (--shutdown-timeout 5) and its containerd.
pids=()
for h in "${hosts[@]}"; do pids+=("$(rig_pid "$h/dockerd.pid")"); done
rig_stop "$dir" 30 "${pids[@]}" || warn "a dockerd survived KILL"

# 2. sshds and the registry.
pids=("$(rig_pid "$dir/registry.pid")")
for h in "${hosts[@]}"; do pids+=("$(rig_pid "$h/sshd.pid")"); done
rig_stop "$dir" 10 "${pids[@]}" || warn "an sshd or the registry survived KILL"

# 3. Whatever is left in the hosts' namespaces (ssh sessions, containerd and shims of a dockerd that was killed,
#    docker-proxy), and container processes whose root is inside DIR.
pids=()
for h in "${hosts[@]}"; do
  if [ ! -f "$h/netns" ] || [ ! -e "/var/run/netns/$(cat "$h/netns")" ]; then continue; fi
  mapfile -t -O ${#pids[@]} pids < <(ip netns pids "$(cat "$h/netns")")
done
if [ -d "$dir" ]; then
  for p in /proc/[0-9]*; do
    case $(readlink "$p/root" 2>/dev/null) in "$dir"/*) pids+=("${p#/proc/}") ;; esac
  done
fi
rig_stop "$dir" 10 "${pids[@]}" || warn "a process of the rig survived KILL"

# 4. Mounts under DIR (overlays, container network namespaces), deepest first.
mounts_under() { awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r; }
for m in $(mounts_under); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
for m in $(mounts_under); do umount -l "$m" 2>/dev/null || true; done

# 5. Network: namespaces, veths (also any left without a host folder), the iptables rule, the bridge.
for h in "${hosts[@]}"; do
  [ -f "$h/netns" ] || continue
  ns=$(cat "$h/netns")
  if [ -e "/var/run/netns/$ns" ]; then ip netns del "$ns" || warn "could not delete namespace $ns"; fi
done
for veth in $(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep "^vb$(rig_hash "$dir")-" || true); do
  ip link del "$veth" 2>/dev/null || ! ip link show "$veth" >/dev/null 2>&1 || warn "could not delete link $veth"
done
while iptables -D FORWARD -i "$bridge" -o "$bridge" -j ACCEPT -m comment --comment "ballast-rig $dir" 2>/dev/null; do :; done
if ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge" || warn "could not delete bridge $bridge"; fi

# 6. The folder, unless something is still mounted in it.
if [ -d "$dir" ]; then
  left=$(mounts_under)
  [ -z "$left" ] || rig_die "still mounted under $dir, not removing it: $left"
  rm -rf --one-file-system "$dir"
fi
[ "$errors" = 0 ] || rig_die "rig in $dir is down, with the errors above"
echo "down.sh: rig in $dir is down"
