#!/usr/bin/env bash
# Builds a test app image from busybox-static, with no network: `docker import` of a tiny root folder.
#
#   e2e/images/build.sh DOCKER_HOST TAG VERSION [good|bad]
#
# good: busybox httpd on :3000 answering GET /up with 200 and the body VERSION.
# bad:  busybox httpd on :3000 with no /up (404 forever): never healthy.
# PID 1 is a shell that traps TERM and stops httpd, so `docker stop` is quick. With the env BOOT_DELAY=S the app
# boots slowly, like a Rails app: nothing listens on :3000 for S seconds after the start.
set -euo pipefail
docker_host=$1 tag=$2 version=$3 kind=${4:-good}
busybox=/bin/busybox   # busybox-static: no shared libraries needed inside the image
[ -x "$busybox" ] || { echo "build.sh: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
cp "$busybox" "$root/bin/busybox"
for applet in sh httpd sleep cat echo env ls ps kill wget true; do ln -s busybox "$root/bin/$applet"; done
[ "$kind" = good ] && printf '%s\n' "$version" > "$root/www/up"
printf '%s\n' "$version" > "$root/www/version"
cat > "$root/start.sh" <<'SH'
#!/bin/sh
trap 'exit 0' TERM INT
if [ -n "$BOOT_DELAY" ]; then
  sleep "$BOOT_DELAY" &
  wait $!
fi
httpd -f -p 3000 -h /www &
pid=$!
trap 'kill $pid; exit 0' TERM INT
wait $pid
SH
chmod +x "$root/start.sh"
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
tar -C "$root" -c . | docker -H "$docker_host" import \
  -c 'CMD ["/start.sh"]' -c 'EXPOSE 3000' -c "ENV APP_VERSION=$version" - "$tag" >/dev/null
echo "$tag"
