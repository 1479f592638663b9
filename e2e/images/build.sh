#!/usr/bin/env bash
# Builds a test app image from busybox-static, with no network: `docker import` of a tiny root folder.
#
#   e2e/images/build.sh DOCKER_HOST TAG VERSION [good|bad|slow]
#
# good: busybox httpd on :3000 answering GET /up with 200 and the body VERSION.
# bad:  busybox httpd on :3000 with no /up (404 forever): never healthy.
# slow: like good, but /up answers only 5 s after the start (404 before): a slow boot.
# Every kind answers GET /version with VERSION at once, and GET /cgi-bin/slow with VERSION after 2 s.
# PID 1 is a shell that traps TERM and stops httpd, so `docker stop` is quick. With the env BOOT_DELAY=S any kind
# boots slowly, like a Rails app binding Puma late: nothing listens on :3000 for S seconds after the start.
set -euo pipefail
docker_host=$1 tag=$2 version=$3 kind=${4:-good}
busybox=/bin/busybox   # busybox-static: no shared libraries needed inside the image
[ -x "$busybox" ] || { echo "build.sh: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/www/cgi-bin" "$root/tmp" "$root/etc"
cp "$busybox" "$root/bin/busybox"
for applet in sh httpd sleep cat echo env ls ps kill wget true; do ln -s busybox "$root/bin/$applet"; done
[ "$kind" = good ] && printf '%s\n' "$version" > "$root/www/up"
printf '%s\n' "$version" > "$root/www/version"
cat > "$root/www/cgi-bin/slow" <<SH
#!/bin/sh
sleep 2
echo "Content-Type: text/plain"
echo
echo "$version"
SH
chmod +x "$root/www/cgi-bin/slow"
up_after=
[ "$kind" = slow ] && up_after="(sleep 5; echo '$version' > /www/up) &"
cat > "$root/start.sh" <<SH
#!/bin/sh
trap 'exit 0' TERM INT
if [ -n "\$BOOT_DELAY" ]; then
  sleep "\$BOOT_DELAY" &
  wait \$!
fi
httpd -f -p 3000 -h /www &
pid=\$!
$up_after
trap 'kill \$pid; exit 0' TERM INT
wait \$pid
SH
chmod +x "$root/start.sh"
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
tar -C "$root" -c . | docker -H "$docker_host" import \
  -c 'CMD ["/start.sh"]' -c 'EXPOSE 3000' -c "ENV APP_VERSION=$version" - "$tag" >/dev/null
echo "$tag"
