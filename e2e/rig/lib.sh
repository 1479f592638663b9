# shellcheck shell=bash disable=SC2034
# Shared names and helpers of the e2e rig, sourced by up.sh, down.sh, ctl.sh and selftest.sh.
#
# Layout of a rig in DIR (see e2e/README.md), for slot S (RIG_SLOT, 0..9, default 0; rigs in different slots
# run side by side):
#   bridge blst<hash of DIR> 10.(211+S).0.1/24 in the root namespace, iptables FORWARD accept between its ports
#   host i: netns blst-h<i> (slot 0) or blst<S>-h<i>, veth vb<hash>-<i> (root side) / eth0 (inside) 10.(211+S).0.(10+i),
#           DIR/h<i>/{docker.sock,dockerd.pid,dockerd.log,data,run,sshd_config,sshd.pid,sshd.log,ssh_host_ed25519_key}
#   registry: docker-registry on 10.(211+S).0.1:5000, DIR/registry.{yml,pid,log}, storage DIR/registry

RIG_MAX_HOSTS=8
RIG_MARKER=.ballast-rig
RIG_DOCKER=/usr/bin/docker
RIG_APP_TAGS="v1 v2 v3 bad v2-slow" # pushed as $RIG_REGISTRY_ADDR/ballast/app:<tag>; "bad" never answers /up,
                                     # "v2-slow" answers /up 5 s after its start
RIG_PROXY_TAG=ballast/caddy:2        # the proxy's image (e2e/images/caddy.sh), pushed as $RIG_REGISTRY_ADDR/<tag>
RIG_REGISTRY_USER=AWS
RIG_REGISTRY_PASSWORD=123456789012-auth-token

rig_die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# rig_slot S: the addresses and names of slot S (0..9). up.sh takes S from RIG_SLOT; the other scripts from the
# rig's rig.env (rig_load_slot), so a command never reaches another slot's rig.
rig_slot() {
  [[ $1 =~ ^[0-9]$ ]] || rig_die "RIG_SLOT must be 0..9: $1"
  RIG_SLOT=$1
  RIG_NET=10.$((211 + $1)).0
  RIG_BRIDGE_ADDR=$RIG_NET.1
  RIG_REGISTRY_ADDR=$RIG_NET.1:5000
}
rig_slot "${RIG_SLOT:-0}"

# rig_load_slot DIR: the slot of the rig in DIR (its file DIR/slot; 0 for a rig without one).
rig_load_slot() {
  local s=0
  if [ -s "$1/slot" ]; then s=$(tr -dc 0-9 <"$1/slot"); fi
  rig_slot "${s:-0}"
}

# rig_hash DIR: 8 hex digits naming the rig's links, so rigs in different folders never share a link name.
rig_hash() { printf %s "$1" | sha1sum | cut -c1-8; }
rig_bridge() { echo "blst$(rig_hash "$1")"; }
rig_veth() { echo "vb$(rig_hash "$1")-$2"; }
rig_netns() { if [ "$RIG_SLOT" = 0 ]; then echo "blst-h$1"; else echo "blst$RIG_SLOT-h$1"; fi; }
rig_addr() { echo "$RIG_NET.$((10 + $1))"; }

# rig_check_dir DIR: an absolute path of plain characters, short enough for the unix sockets under it.
rig_check_dir() {
  case $1 in /*) ;; *) rig_die "DIR must be an absolute path: $1" ;; esac
  [[ $1 =~ ^[A-Za-z0-9._/-]+$ ]] || rig_die "DIR may hold only letters, digits and . _ / -: $1"
  # dockerd's containerd socket is DIR/h<i>/run/containerd/containerd-debug.sock; sun_path holds 107 bytes.
  [ ${#1} -le 60 ] || rig_die "DIR is too long for unix socket paths (max 60 characters): $1"
  [ "$1" != / ] || rig_die "DIR must not be /"
}

rig_check_host() { # DIR I
  [[ $2 =~ ^[1-8]$ ]] || rig_die "host number must be 1..$RIG_MAX_HOSTS: $2"
  [ -d "$1/h$2" ] || rig_die "no host $2 in rig $1"
}

# rig_pid FILE: the PID in a pidfile, or nothing.
rig_pid() { if [ -s "$1" ]; then tr -dc 0-9 <"$1"; fi; }

# rig_owns DIR PID: the process exists and belongs to the rig (its command line names DIR, or it runs in a
# namespace of the rig, or its root is inside DIR). Guards against a pidfile whose PID was reused.
rig_owns() {
  local dir=$1 pid=$2 f ns
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" && return 0
  case $(readlink "/proc/$pid/root" 2>/dev/null) in "$dir"/*) return 0 ;; esac
  ns=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) || return 1
  for f in "$dir"/h*/netns; do
    if [ ! -f "$f" ] || [ ! -e "/var/run/netns/$(cat "$f")" ]; then continue; fi
    [ "$(stat -L -c %i "/var/run/netns/$(cat "$f")")" = "$ns" ] && return 0
  done
  return 1
}

# rig_wait SECONDS WHAT CMD...: polls CMD until it succeeds; fails after SECONDS.
rig_wait() {
  local deadline=$(($(date +%s%N) + $1 * 1000000000)) what=$2
  shift 2
  until "$@"; do
    if [ "$(date +%s%N)" -ge "$deadline" ]; then
      echo "$(basename "$0"): timed out waiting for $what" >&2
      return 1
    fi
    sleep 0.05
  done
}

# rig_gone PID: the process has exited. A zombie counts as gone: daemons are reparented to PID 1, which may reap late.
rig_gone() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [ "${stat%% *}" = Z ]
}

# rig_stop DIR SECONDS PID...: TERM the rig's processes among PIDs, wait for them, KILL what is left after SECONDS.
# Fails when one of them survives KILL.
rig_stop() {
  local dir=$1 grace=$2 pid mine=() status=0
  shift 2
  for pid in "$@"; do rig_owns "$dir" "$pid" && mine+=("$pid"); done
  [ ${#mine[@]} -gt 0 ] || return 0
  kill -TERM "${mine[@]}" 2>/dev/null || true
  for pid in "${mine[@]}"; do
    if ! rig_wait "$grace" "process $pid to exit" rig_gone "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      rig_wait 5 "process $pid to die after KILL" rig_gone "$pid" || status=1
    fi
  done
  return $status
}

# Per-host daemons. dockerd runs in the host's network namespace through nsenter --net (not `ip netns exec`,
# which remounts /sys so dockerd fails with "Devices cgroup isn't mounted").
rig_start_dockerd() { # DIR I
  local dir=$1 i=$2 h=$1/h$2
  mkdir -p "$h/data" "$h/run"
  [ -f "$h/daemon.json" ] || echo '{}' >"$h/daemon.json"
  rm -f "$h/dockerd.pid"
  # dockerd writes its own --pidfile; setsid detaches it from the caller's session.
  setsid nsenter --net="/var/run/netns/$(rig_netns "$i")" /usr/sbin/dockerd \
    --config-file "$h/daemon.json" \
    --data-root "$h/data" --exec-root "$h/run" --pidfile "$h/dockerd.pid" \
    -H "unix://$h/docker.sock" \
    --containerd-namespace "$(rig_netns "$i")" --containerd-plugins-namespace "$(rig_netns "$i")-plugins" \
    --insecure-registry "$RIG_REGISTRY_ADDR" --bip "172.30.$i.1/24" \
    --shutdown-timeout 5 --log-level warn \
    >>"$h/dockerd.log" 2>&1 </dev/null &
}

rig_docker_ready() { # DIR I
  [ "$(curl -s --max-time 2 --unix-socket "$1/h$2/docker.sock" http://docker/_ping 2>/dev/null)" = OK ]
}

rig_start_sshd() { # DIR I: sshd forks into the background once it listens and writes its PidFile
  local h=$1/h$2
  install -d -m 755 /run/sshd # privilege separation directory
  rm -f "$h/sshd.pid"
  nsenter --net="/var/run/netns/$(rig_netns "$2")" /usr/sbin/sshd -f "$h/sshd_config" -E "$h/sshd.log" \
    || rig_die "sshd of host $2 failed to start (see $h/sshd.log)"
}

# rig_ssh DIR I ARGS...: ssh as root to host I, checking its key against DIR/known_hosts.
rig_ssh() {
  local dir=$1 i=$2
  shift 2
  ssh -i "$dir/id_ed25519" -o IdentitiesOnly=yes -o UserKnownHostsFile="$dir/known_hosts" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR \
    "root@$(rig_addr "$i")" "$@"
}

# rig_sshd_ready DIR I: sshd accepts a connection and authenticates the rig's key (host key not checked).
rig_sshd_ready() {
  ssh -i "$1/id_ed25519" -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=no -o BatchMode=yes -o ConnectTimeout=2 -o LogLevel=ERROR \
    "root@$(rig_addr "$2")" true </dev/null 2>/dev/null
}

# rig_known_hosts DIR: known_hosts lines (OpenSSH format) for every host's current key.
rig_known_hosts() {
  local d i
  for d in "$1"/h[0-9]*/; do
    d=${d%/}
    i=${d##*/h}
    echo "$(rig_addr "$i") $(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")"
  done
}
