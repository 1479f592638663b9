#!/usr/bin/env bash
# Brings up the e2e rig: N hosts (network namespaces, each with its own dockerd and sshd) on a bridge, and a registry.
#
#   e2e/rig/up.sh N DIR          N in 1..8, DIR an absolute path that does not exist yet (or is empty)
#
# Env: RIG_REGISTRY_AUTH=1   registry behind htpasswd basic auth (user AWS, password 123456789012-auth-token)
#      RIG_KEEP_ON_FAIL=1    on failure, leave everything up for inspection (then run down.sh DIR)
#      RIG_SLOT=S            0..9 (default 0): the rig's addresses 10.(211+S).0.0/24 and namespaces; rigs in
#                            different slots run side by side
# Writes DIR/rig.env (sourceable) and DIR/hosts.yaml (ballast Host objects) once everything answers.
# Stop it with e2e/rig/down.sh DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -eq 2 ] || rig_die "usage: up.sh N DIR"
n=$1 dir=${2%/}
[[ $n =~ ^[1-8]$ ]] || rig_die "N must be 1..$RIG_MAX_HOSTS: $n"
rig_check_dir "$dir"
auth=${RIG_REGISTRY_AUTH:-0}
[[ $auth =~ ^[01]$ ]] || rig_die "RIG_REGISTRY_AUTH must be 0 or 1: $auth"
[ "$(id -u)" = 0 ] || rig_die "run as root"
for b in /usr/sbin/dockerd "$RIG_DOCKER" /usr/sbin/sshd /usr/bin/docker-registry /bin/busybox /usr/bin/htpasswd \
  curl nsenter ip ssh ssh-keygen iptables; do
  command -v "$b" >/dev/null || rig_die "$b missing: run e2e/rig/deps.sh"
done

# Refuse when a rig is up here or in this slot elsewhere: a slot's names and addresses are fixed.
if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  rig_die "$dir is not empty: a rig is up there or was left over (run e2e/rig/down.sh $dir)"
fi
for i in $(seq 1 "$n"); do
  if [ -e "/var/run/netns/$(rig_netns "$i")" ]; then
    rig_die "network namespace $(rig_netns "$i") exists: another rig is up ($(ip -o link show type bridge |
      grep -o 'alias ballast-rig [^ ]*' | head -n1 || true)); run down.sh on its folder"
  fi
done
if ip -o -4 addr show | grep -qF " $RIG_BRIDGE_ADDR/"; then
  rig_die "$RIG_BRIDGE_ADDR is already assigned: another rig is up ($(ip -o link show type bridge |
    grep -o 'alias ballast-rig [^ ]*' | head -n1 || true)); run down.sh on its folder"
fi
if [ -n "$(ss -Hltn "( sport = :5000 ) and ( src $RIG_BRIDGE_ADDR or src 0.0.0.0 or src [::] )")" ]; then
  rig_die "something listens on $RIG_REGISTRY_ADDR in the root namespace (the Debian docker-registry service?): stop it first"
fi

t0=$(date +%s%N)
mkdir -p "$dir"
echo "ballast e2e rig: remove with e2e/rig/down.sh $dir" >"$dir/$RIG_MARKER" # down.sh removes only marked folders
echo "$RIG_SLOT" >"$dir/slot" # before anything is made: down.sh and ctl.sh read the slot from here
ok=0 push_pid=
on_exit() {
  [ "$ok" = 1 ] && return
  trap - INT TERM
  if [ -n "$push_pid" ]; then kill "$push_pid" 2>/dev/null || true; fi
  echo "up.sh: failed; logs under $dir:" >&2
  for f in "$dir"/registry.log "$dir"/h*/dockerd.log "$dir"/h*/sshd.log; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }
  done
  if [ "${RIG_KEEP_ON_FAIL:-0}" = 1 ]; then
    echo "up.sh: left up (RIG_KEEP_ON_FAIL=1); run e2e/rig/down.sh $dir" >&2
  else
    "$here/down.sh" "$dir" >&2 || true
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

bridge=$(rig_bridge "$dir")

# Network: bridge in the root namespace, one namespace per host on a veth pair.
ip link add "$bridge" type bridge
ip link set "$bridge" alias "ballast-rig $dir"
ip addr add "$RIG_BRIDGE_ADDR/24" dev "$bridge"
ip link set "$bridge" up
# With br_netfilter loaded (dockerd loads it), bridged frames cross the FORWARD chain, whose policy dockerd sets to DROP.
iptables -I FORWARD -i "$bridge" -o "$bridge" -j ACCEPT -m comment --comment "ballast-rig $dir"
for i in $(seq 1 "$n"); do
  h=$dir/h$i ns=$(rig_netns "$i") veth=$(rig_veth "$dir" "$i")
  mkdir -p "$h"
  echo "$ns" >"$h/netns" # before creating it: down.sh deletes the namespaces named here
  ip netns add "$ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip link set "$veth" master "$bridge" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(rig_addr "$i")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$RIG_BRIDGE_ADDR"
done

# dockerds first: they take longest to start.
for i in $(seq 1 "$n"); do rig_start_dockerd "$dir" "$i"; done

# Registry in the root namespace, on the bridge address.
mkdir -p "$dir/registry"
auth_yaml=""
if [ "$auth" = 1 ]; then
  htpasswd -Bbn "$RIG_REGISTRY_USER" "$RIG_REGISTRY_PASSWORD" >"$dir/htpasswd"
  auth_yaml="auth:
  htpasswd:
    realm: ballast-rig
    path: $dir/htpasswd"
fi
cat >"$dir/registry.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/registry
  delete:
    enabled: true
http:
  addr: $RIG_REGISTRY_ADDR
  secret: ballast-rig
$auth_yaml
YAML
# The background child is not a process group leader, so setsid execs without forking: $! is the registry.
setsid /usr/bin/docker-registry serve "$dir/registry.yml" >>"$dir/registry.log" 2>&1 </dev/null &
echo $! >"$dir/registry.pid"

# SSH: a client key for root on every host, one host key per host, known_hosts for all of them.
ssh-keygen -q -t ed25519 -N '' -C ballast-rig -f "$dir/id_ed25519"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
for i in $(seq 1 "$n"); do
  h=$dir/h$i
  ssh-keygen -q -t ed25519 -N '' -C "h$i" -f "$h/ssh_host_ed25519_key"
  cat >"$h/sshd_config" <<CONF
Port 22
ListenAddress $(rig_addr "$i")
HostKey $h/ssh_host_ed25519_key
PidFile $h/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
MaxStartups 100
PrintMotd no
Subsystem sftp internal-sftp
CONF
  rig_start_sshd "$dir" "$i"
done
rig_known_hosts "$dir" >"$dir/known_hosts"

# Wait for everything to answer, failing early when a daemon died.
registry_ready() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$RIG_REGISTRY_ADDR/v2/" 2>/dev/null || true)
  [ "$code" = 200 ] || [ "$code" = 401 ] || { rig_gone "$(rig_pid "$dir/registry.pid")" &&
    rig_die "registry exited (see $dir/registry.log)"; return 1; }
}
docker_ready() {
  rig_docker_ready "$dir" "$1" && return 0
  # dockerd writes its pidfile early and removes it when it exits.
  if [ -s "$dir/h$1/dockerd.pid" ] && rig_gone "$(rig_pid "$dir/h$1/dockerd.pid")"; then
    rig_die "dockerd of host $1 exited (see $dir/h$1/dockerd.log)"
  fi
  if grep -q 'level=fatal\|failed to start daemon' "$dir/h$1/dockerd.log" 2>/dev/null; then
    rig_die "dockerd of host $1 failed (see $dir/h$1/dockerd.log)"
  fi
  return 1
}
sshd_listens() { # sshd sends its banner
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  [ "$(timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/22" && head -c 4 <&3' _ "$(rig_addr "$1")" 2>/dev/null)" = SSH- ] && return 0
  [ -s "$dir/h$1/sshd.pid" ] && rig_gone "$(rig_pid "$dir/h$1/sshd.pid")" &&
    rig_die "sshd of host $1 exited (see $dir/h$1/sshd.log)"
  return 1
}

# Test images, built on host 1 and pushed; then removed there so every host starts with the same empty cache.
push_images() {
  set -e
  export DOCKER_CONFIG=$dir/h1/push-config # never root's ~/.docker
  mkdir -p "$DOCKER_CONFIG"
  local sock=unix://$dir/h1/docker.sock v kind pids=() pid
  if [ "$auth" = 1 ]; then
    echo "$RIG_REGISTRY_PASSWORD" |
      "$RIG_DOCKER" -H "$sock" login -u "$RIG_REGISTRY_USER" --password-stdin "$RIG_REGISTRY_ADDR"
  fi
  for v in $RIG_APP_TAGS; do
    kind=good
    if [ "$v" = bad ]; then kind=bad; fi
    if [ "$v" = v2-slow ]; then kind=slow; fi
    "$here/../images/build.sh" "$sock" "$RIG_REGISTRY_ADDR/ballast/app:$v" "$v" "$kind"
    "$RIG_DOCKER" -H "$sock" push -q "$RIG_REGISTRY_ADDR/ballast/app:$v" &
    pids+=($!)
  done
  "$here/../images/caddy.sh" "$sock" "$RIG_REGISTRY_ADDR/$RIG_PROXY_TAG"
  "$RIG_DOCKER" -H "$sock" push -q "$RIG_REGISTRY_ADDR/$RIG_PROXY_TAG" &
  pids+=($!)
  for pid in "${pids[@]}"; do wait "$pid"; done
  for v in $RIG_APP_TAGS; do "$RIG_DOCKER" -H "$sock" rmi "$RIG_REGISTRY_ADDR/ballast/app:$v"; done
  "$RIG_DOCKER" -H "$sock" rmi "$RIG_REGISTRY_ADDR/$RIG_PROXY_TAG"
  if [ "$auth" = 1 ]; then "$RIG_DOCKER" -H "$sock" logout "$RIG_REGISTRY_ADDR"; fi
  rm -rf "$DOCKER_CONFIG"
}

rig_wait 20 registry registry_ready
rig_wait 30 "dockerd of host 1" docker_ready 1
push_images >"$dir/images.log" 2>&1 &
push_pid=$!
for i in $(seq 2 "$n"); do rig_wait 30 "dockerd of host $i" docker_ready "$i"; done
for i in $(seq 1 "$n"); do rig_wait 20 "sshd of host $i" sshd_listens "$i"; done
ssh_pids=()
for i in $(seq 1 "$n"); do
  rig_ssh "$dir" "$i" true </dev/null &
  ssh_pids+=($!)
done
for i in $(seq 1 "$n"); do
  wait "${ssh_pids[$((i - 1))]}" || rig_die "ssh to host $i with $dir/known_hosts failed (see $dir/h$i/sshd.log)"
done
wait "$push_pid" || { tail -n 5 "$dir/images.log" >&2; rig_die "building or pushing the test images failed (see $dir/images.log)"; }
push_pid=

{
  echo "RIG_DIR=$dir"
  echo "RIG_N=$n"
  echo "RIG_SLOT=$RIG_SLOT"
  echo "RIG_BRIDGE=$bridge"
  echo "RIG_REGISTRY=$RIG_REGISTRY_ADDR"
  echo "RIG_REGISTRY_AUTH=$auth"
  if [ "$auth" = 1 ]; then
    echo "RIG_REGISTRY_USER=$RIG_REGISTRY_USER"
    echo "RIG_REGISTRY_PASSWORD=$RIG_REGISTRY_PASSWORD"
  fi
  echo "RIG_APP_IMAGE=$RIG_REGISTRY_ADDR/ballast/app"
  echo "RIG_APP_TAGS=${RIG_APP_TAGS// /,}"
  echo "RIG_PROXY_IMAGE=$RIG_REGISTRY_ADDR/$RIG_PROXY_TAG"
  echo "RIG_SSH_KEY=$dir/id_ed25519"
  echo "RIG_KNOWN_HOSTS=$dir/known_hosts"
  echo "RIG_HOSTS_YAML=$dir/hosts.yaml"
  for i in $(seq 1 "$n"); do
    echo "RIG_H${i}_NAME=h$i"
    echo "RIG_H${i}_ADDR=$(rig_addr "$i")"
    echo "RIG_H${i}_DOCKER=$dir/h$i/docker.sock"
    echo "RIG_H${i}_NETNS=$(rig_netns "$i")"
    echo "RIG_H${i}_VETH=$(rig_veth "$dir" "$i")"
  done
} >"$dir/rig.env.tmp"
for i in $(seq 1 "$n"); do
  [ "$i" = 1 ] || echo ---
  cat <<YAML
apiVersion: ballast/v1
kind: Host
metadata: {name: h$i}
spec:
  address: $(rig_addr "$i")
  user: root
  port: 22
  dockerSocket: $dir/h$i/docker.sock
YAML
done >"$dir/hosts.yaml"
mv "$dir/rig.env.tmp" "$dir/rig.env"

ok=1
ms=$((($(date +%s%N) - t0) / 1000000))
echo "up.sh: rig of $n host(s) up in $dir in $((ms / 1000)).$(printf %03d $((ms % 1000)))s (registry auth: $auth)"
