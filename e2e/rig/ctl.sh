#!/usr/bin/env bash
# Operator helpers for scenarios on a running e2e rig.
#
#   e2e/rig/ctl.sh DIR docker <i> ARGS...     docker CLI against host i's dockerd
#   e2e/rig/ctl.sh DIR ssh <i> [CMD...]       ssh as root to host i (key and known_hosts of the rig, strict)
#   e2e/rig/ctl.sh DIR curl <i> PORT PATH     GET http://<host i>:PORT/PATH from the root namespace
#   e2e/rig/ctl.sh DIR link <i> down|up       cut or restore host i's link (its veth on the bridge)
#   e2e/rig/ctl.sh DIR rekey <i>              new host key for host i, sshd restarted: known_hosts no longer matches
#   e2e/rig/ctl.sh DIR trust <i>              write host i's current key into known_hosts again
#   e2e/rig/ctl.sh DIR dockerd <i> stop|start stop (by PID) or start host i's dockerd
#   e2e/rig/ctl.sh DIR sshd <i> stop|start    stop (by PID) or start host i's sshd
#   e2e/rig/ctl.sh DIR sshconns <i>           host i's established connections to its sshd, as `ss` in its namespace shows them
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -ge 3 ] || rig_die "usage: ctl.sh DIR docker|ssh|curl|link|rekey|trust|dockerd|sshd|sshconns <i> ..."
dir=${1%/} cmd=$2 i=$3
shift 3
rig_check_dir "$dir"
rig_load_slot "$dir"
[ -f "$dir/rig.env" ] || rig_die "no rig up in $dir (no rig.env)"
rig_check_host "$dir" "$i"
h=$dir/h$i

case $cmd in
  docker)
    exec "$RIG_DOCKER" -H "unix://$h/docker.sock" "$@"
    ;;
  ssh)
    rig_ssh "$dir" "$i" "$@"
    ;;
  sshconns)
    # One line a connection: local address:port (the host's sshd), then the peer's.
    nsenter --net="/var/run/netns/$(rig_netns "$i")" ss -Htn state established '( sport = :22 )' |
      awk '{print $3, $4}'
    ;;
  curl)
    [ $# -eq 2 ] || rig_die "usage: ctl.sh DIR curl <i> PORT PATH"
    exec curl -sS --max-time 5 "http://$(rig_addr "$i"):$1/${2#/}"
    ;;
  link)
    case ${1:-} in down | up) ;; *) rig_die "usage: ctl.sh DIR link <i> down|up" ;; esac
    ip link set "$(rig_veth "$dir" "$i")" "$1"
    if [ "$1" = up ]; then
      # The bridge port forwards at once (no STP); wait until the host answers again.
      rig_wait 10 "host $i to answer on its link" \
        busybox ping -c1 -W1 -q "$(rig_addr "$i")" >/dev/null
    fi
    ;;
  rekey)
    rm -f "$h/ssh_host_ed25519_key" "$h/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "h$i" -f "$h/ssh_host_ed25519_key"
    rig_stop "$dir" 10 "$(rig_pid "$h/sshd.pid")"
    rig_start_sshd "$dir" "$i"
    rig_wait 10 "sshd of host $i" rig_sshd_ready "$dir" "$i"
    ;;
  trust)
    rig_known_hosts "$dir" >"$dir/known_hosts.tmp"
    mv "$dir/known_hosts.tmp" "$dir/known_hosts"
    ;;
  dockerd | sshd)
    case ${1:-} in stop | start) ;; *) rig_die "usage: ctl.sh DIR $cmd <i> stop|start" ;; esac
    if [ "$1" = stop ]; then
      rig_stop "$dir" 30 "$(rig_pid "$h/$cmd.pid")"
    elif [ "$cmd" = dockerd ]; then
      rig_docker_ready "$dir" "$i" && rig_die "dockerd of host $i is running"
      rig_start_dockerd "$dir" "$i"
      rig_wait 30 "dockerd of host $i" rig_docker_ready "$dir" "$i"
    else
      rig_owns "$dir" "$(rig_pid "$h/sshd.pid")" && rig_die "sshd of host $i is running"
      rig_start_sshd "$dir" "$i"
      rig_wait 10 "sshd of host $i" rig_sshd_ready "$dir" "$i"
    fi
    ;;
  *)
    rig_die "unknown command: $cmd (docker|ssh|curl|link|rekey|trust|dockerd|sshd)"
    ;;
esac
