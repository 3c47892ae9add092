#!/usr/bin/env bash
# Builds, once, the Debian root filesystem that test/integration/systemd.test.ts
# boots with `systemd-nspawn -b` to run sockaccel under a real systemd. The
# container gets node and the repository by bind mounts, so the image only
# needs systemd and sockaccel's runtime libraries (libbpf1, iproute2).
# About a minute the first time; a no-op (milliseconds) once cached. The tests
# boot it with --volatile=overlay, so it stays pristine.
set -euo pipefail

ROOTFS=${SOCKACCEL_TEST_ROOTFS:-/var/cache/sockaccel-test/rootfs}
MIRROR=${SOCKACCEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,libbpf1,iproute2
# Changing what goes into the image changes this line, and so rebuilds it.
STAMP_TEXT="$SUITE $PACKAGES v1"
STAMP=$ROOTFS/.sockaccel-test-rootfs

[[ -f $STAMP && $(<"$STAMP") == "$STAMP_TEXT" ]] && exit 0

log() { printf 'test-rootfs: %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || { log 'must run as root (debootstrap)'; exit 1; }
command -v debootstrap >/dev/null || { log 'debootstrap is missing: bash scripts/setup.sh installs it'; exit 1; }

mkdir -p "$(dirname "$ROOTFS")"
tmp=$ROOTFS.tmp.$$
trap 'rm -rf "$tmp"' EXIT
log "debootstrap $SUITE into $ROOTFS (once)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$MIRROR" >"$tmp.log" 2>&1 \
  || { log "debootstrap failed:"; tail -20 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"
# Nothing in the tests needs these; they only slow the boot down.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
            systemd-tmpfiles-clean.timer console-getty.service getty.target; do
  ln -sf /dev/null "$tmp/etc/systemd/system/$unit"
done
echo "$STAMP_TEXT" > "$tmp/.sockaccel-test-rootfs"
rm -rf "$ROOTFS"
mv "$tmp" "$ROOTFS"
log "built $ROOTFS"
