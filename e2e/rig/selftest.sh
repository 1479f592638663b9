#!/usr/bin/env bash
# Checks the e2e rig end to end on this machine: up, ssh, docker, registry (with and without auth), ctl helpers,
# interrupted up, down, and that nothing is left behind. Exits non-zero at the first failed check.
#
#   e2e/rig/selftest.sh [DIR]      DIR defaults to /tmp/blst-selftest (must not exist)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

dir=${1:-/tmp/blst-selftest}
ctl() { "$here/ctl.sh" "$dir" "$@"; }
fail() { echo "selftest: FAIL: $*" >&2; exit 1; }
step() { echo "selftest: $*"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
tmp=$(mktemp -d)
fwd_pid=
cleanup() {
  if [ -n "$fwd_pid" ]; then kill "$fwd_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

strict_ssh() { # I CMD...: plain ssh with the rig's key and known_hosts, strict host key checking
  local i=$1
  shift
  ssh -i "$RIG_SSH_KEY" -o IdentitiesOnly=yes -o UserKnownHostsFile="$RIG_KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
    -o BatchMode=yes -o ConnectTimeout=2 "root@$(rig_addr "$i")" "$@" </dev/null
}
answers() { # I PORT EXPECTED: GET /up from the root namespace answers EXPECTED (a body or an HTTP code)
  local out
  out=$(curl -s --max-time 2 -w ' %{http_code}' "http://$(rig_addr "$1"):$2/up" 2>/dev/null | tr -d '\n' || true)
  if [[ $3 =~ ^[0-9]{3}$ ]]; then [ "${out##* }" = "$3" ]; else [ "$out" = "$3 200" ]; fi
}
unreachable() { ! curl -s --max-time 1 -o /dev/null "http://$(rig_addr "$1"):$2/up"; }

# Everything the rig started: daemons from pidfiles, everything in its namespaces, processes rooted in DIR.
rig_processes() {
  local h f
  for f in "$dir"/registry.pid "$dir"/h*/dockerd.pid "$dir"/h*/sshd.pid; do rig_pid "$f"; echo; done
  for h in "$dir"/h[0-9]*; do
    [ -f "$h/netns" ] && [ -e "/var/run/netns/$(cat "$h/netns")" ] && ip netns pids "$(cat "$h/netns")"
  done
  for f in /proc/[0-9]*; do
    case $(readlink "$f/root" 2>/dev/null) in "$dir"/*) echo "${f#/proc/}" ;; esac
  done
}

check_clean() { # PIDS...: nothing of the rig is left
  local p
  for p in "$@"; do rig_gone "$p" || fail "process $p is still running: $(tr '\0' ' ' <"/proc/$p/cmdline")"; done
  ! ip netns list | grep -q '^blst-h' || fail "namespaces left: $(ip netns list | tr '\n' ' ')"
  ! ip -o link show | grep -q "blst$(rig_hash "$dir")\|vb$(rig_hash "$dir")" || fail "links left: $(ip -br link)"
  ! grep -qF " $dir/" /proc/self/mountinfo || fail "mounts left under $dir"
  ! iptables -S FORWARD | grep -qF "ballast-rig $dir" || fail "iptables rule left"
  [ ! -e "$dir" ] || fail "$dir still exists"
  for p in /proc/[0-9]*; do
    if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$dir/"; then
      rig_gone "${p#/proc/}" || fail "a process naming $dir is left: ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline")"
    fi
  done
}

cycle() { # AUTH
  local auth=$1 t pids i out
  step "cycle with RIG_REGISTRY_AUTH=$auth"
  t=$(date +%s%N)
  RIG_REGISTRY_AUTH=$auth "$here/up.sh" 2 "$dir"
  step "up.sh 2: $(ms_since "$t") ms"
  # shellcheck disable=SC1091
  . "$dir/rig.env"
  if [ "$RIG_N" != 2 ] || [ "$RIG_REGISTRY" != 10.211.0.1:5000 ] || [ "$RIG_REGISTRY_AUTH" != "$auth" ]; then
    fail "rig.env: $(cat "$dir/rig.env")"
  fi
  [ "$(grep -c '^kind: Host$' "$RIG_HOSTS_YAML")" = 2 ] || fail "hosts.yaml has not 2 hosts"
  grep -qx "  dockerSocket: $dir/h2/docker.sock" "$RIG_HOSTS_YAML" || fail "hosts.yaml lacks h2's socket"

  if "$here/up.sh" 2 "$dir" 2>"$tmp/again"; then fail "up.sh on a running rig succeeded"; fi
  grep -q "not empty" "$tmp/again" || fail "up.sh on a running rig: $(cat "$tmp/again")"
  ctl docker 1 version >/dev/null || fail "the rig did not survive a refused up.sh"

  for i in 1 2; do
    out=$(strict_ssh "$i" docker -H "unix://$dir/h$i/docker.sock" ps) || fail "ssh + docker ps on host $i"
    [[ $out == "CONTAINER ID"* ]] || fail "docker ps over ssh on host $i: $out"
    [ "$(strict_ssh "$i" hostname -I | cut -d' ' -f1)" = "$(rig_addr "$i")" ] || fail "host $i is not in its namespace"
  done
  step "strict ssh + docker ps through ssh on both hosts: ok"

  if [ "$auth" = 1 ]; then
    if ctl docker 1 pull -q "$RIG_APP_IMAGE:v1" >"$tmp/pull" 2>&1; then fail "anonymous pull succeeded with auth on"; fi
    grep -qi "no basic auth credentials\|unauthorized" "$tmp/pull" || fail "anonymous pull: $(cat "$tmp/pull")"
    export DOCKER_CONFIG=$tmp/docker-config
    if ctl docker 1 login -u AWS -p wrong "$RIG_REGISTRY" >/dev/null 2>&1; then fail "login with a wrong password"; fi
    ctl docker 1 login -u AWS -p 123456789012-auth-token "$RIG_REGISTRY" >/dev/null 2>&1 || fail "login"
    for i in 1 2; do ctl docker "$i" pull -q "$RIG_APP_IMAGE:v1" >/dev/null || fail "pull after login on host $i"; done
    ctl docker 1 pull -q "$RIG_APP_IMAGE:bad" >/dev/null || fail "pull bad after login"
    ctl docker 1 logout "$RIG_REGISTRY" >/dev/null
    unset DOCKER_CONFIG
    step "auth: anonymous pull refused, pull after docker login ok"
  else
    for i in 1 2; do ctl docker "$i" pull -q "$RIG_APP_IMAGE:v1" >/dev/null || fail "pull on host $i"; done
    ctl docker 1 pull -q "$RIG_APP_IMAGE:bad" >/dev/null || fail "pull bad"
  fi

  for i in 1 2; do ctl docker "$i" run -d --name app -p 3000:3000 "$RIG_APP_IMAGE:v1" >/dev/null; done
  ctl docker 1 run -d --name bad -p 3001:3000 "$RIG_APP_IMAGE:bad" >/dev/null
  for i in 1 2; do rig_wait 10 "v1 on host $i" answers "$i" 3000 v1 || fail "host $i: /up is not v1"; done
  rig_wait 10 "bad on host 1" answers 1 3001 404 || fail "bad image's /up is not 404"
  [ "$(ctl curl 2 3000 /up)" = v1 ] || fail "ctl curl"
  out=$(nsenter --net=/var/run/netns/"$RIG_H1_NETNS" curl -s --max-time 2 "http://$RIG_H2_ADDR:3000/up") || true
  [ "$out" = v1 ] || fail "host 1 cannot reach host 2's published port: $out"
  step "published ports: v1 on both hosts, bad answers 404, host to host ok"

  # ballastd reaches Docker through a direct-streamlocal channel.
  rm -f "$tmp/fwd.sock"
  ssh -i "$RIG_SSH_KEY" -o UserKnownHostsFile="$RIG_KNOWN_HOSTS" -o StrictHostKeyChecking=yes -o BatchMode=yes \
    -o ExitOnForwardFailure=yes -o StreamLocalBindUnlink=yes -N -L "$tmp/fwd.sock:$RIG_H1_DOCKER" "root@$RIG_H1_ADDR" </dev/null &
  fwd_pid=$!
  rig_wait 10 "the forwarded socket" test -S "$tmp/fwd.sock" || fail "ssh -L to the docker socket"
  out=$("$RIG_DOCKER" -H "unix://$tmp/fwd.sock" ps --format '{{.Names}}' | sort | tr '\n' ' ')
  [ "$out" = "app bad " ] || fail "docker ps through ssh -L: $out"
  step "docker over an ssh direct-streamlocal forward: ok"

  t=$(date +%s%N)
  ctl link 1 down
  unreachable 1 3000 || fail "host 1 still answers with its link down"
  if strict_ssh 1 true 2>/dev/null; then fail "ssh to host 1 with its link down"; fi
  answers 2 3000 v1 || fail "host 2 stopped answering when host 1's link went down"
  ctl link 1 up
  rig_wait 10 "host 1 back" answers 1 3000 v1 || fail "host 1 does not answer after link up"
  strict_ssh 1 true || fail "ssh to host 1 after link up"
  out=$("$RIG_DOCKER" -H "unix://$tmp/fwd.sock" ps -q | wc -l)
  [ "$out" = 2 ] || fail "the ssh forward did not survive a short link cut: $out"
  step "link down/up: ok ($(ms_since "$t") ms)"

  t=$(date +%s%N)
  ctl rekey 1
  if strict_ssh 1 true 2>"$tmp/rekey"; then fail "strict ssh after rekey succeeded"; fi
  grep -q "Host key verification failed" "$tmp/rekey" || fail "strict ssh after rekey: $(cat "$tmp/rekey")"
  rig_sshd_ready "$dir" 1 || fail "sshd of host 1 after rekey"
  strict_ssh 2 true || fail "host 2 affected by rekey of host 1"
  ctl trust 1
  strict_ssh 1 true || fail "strict ssh after trust"
  step "rekey makes strict ssh fail, trust restores it: ok ($(ms_since "$t") ms)"

  ctl dockerd 2 stop
  if ctl docker 2 ps >/dev/null 2>&1; then fail "dockerd 2 still answers after stop"; fi
  ctl dockerd 2 start
  ctl docker 2 ps >/dev/null || fail "dockerd 2 after start"
  step "dockerd stop/start: ok"

  if [ "$auth" = 1 ]; then
    # Down after a crash: dockerd of host 1 killed with its containers running, an ssh session still open.
    kill -KILL "$(rig_pid "$dir/h1/dockerd.pid")"
    rig_wait 5 "dockerd of host 1 to die" rig_gone "$(rig_pid "$dir/h1/dockerd.pid")"
    answers 1 3000 v1 || fail "host 1's container stopped with its dockerd"
    step "dockerd of host 1 killed, its containers left running"
  else
    kill "$fwd_pid" 2>/dev/null || true
    wait "$fwd_pid" 2>/dev/null || true
    fwd_pid=
  fi
  mapfile -t pids < <(rig_processes | grep . | sort -u)
  t=$(date +%s%N)
  "$here/down.sh" "$dir"
  step "down.sh: $(ms_since "$t") ms (${#pids[@]} processes)"
  if [ -n "$fwd_pid" ]; then
    rig_wait 10 "the ssh forward to end" rig_gone "$fwd_pid" || fail "the ssh forward outlived the rig"
    wait "$fwd_pid" 2>/dev/null || true
    fwd_pid=
  fi
  check_clean "${pids[@]}"
  "$here/down.sh" "$dir" >/dev/null || fail "second down.sh"
  check_clean "${pids[@]}"
  step "nothing left; down.sh twice: ok"
}

interrupted() { # up.sh stopped midway cleans up after itself; with RIG_KEEP_ON_FAIL=1, down.sh does
  local keep=$1 up_pid pids
  step "interrupted up.sh (RIG_KEEP_ON_FAIL=$keep)"
  RIG_KEEP_ON_FAIL=$keep "$here/up.sh" 3 "$dir" >/dev/null 2>"$tmp/up.err" &
  up_pid=$!
  rig_wait 20 "dockerd of host 3 to start" test -s "$dir/h3/dockerd.pid" || fail "up.sh did not get to dockerd"
  mapfile -t pids < <(rig_processes | grep . | sort -u)
  kill -TERM "$up_pid"
  if wait "$up_pid"; then fail "interrupted up.sh exited 0"; fi
  if [ "$keep" = 1 ]; then
    [ -d "$dir/h3" ] || fail "RIG_KEEP_ON_FAIL=1 did not keep the rig"
    "$here/down.sh" "$dir" >/dev/null
  fi
  check_clean "${pids[@]}"
  step "interrupted up.sh left nothing behind: ok"
}

[ ! -e "$dir" ] || fail "$dir exists"
total=$(date +%s%N)
cycle 0
cycle 1
interrupted 0
interrupted 1
step "all checks passed in $(ms_since "$total") ms"
