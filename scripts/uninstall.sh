#!/usr/bin/env bash
# Reverses scripts/install.sh without losing a byte of anyone's traffic:
#   1. stops and disables the service (the stop drains: new connections stay
#      plain TCP, accelerated ones keep their redirect);
#   2. `sockaccel purge`: waits for accelerated connections to close, then
#      removes the pinned maps and links. If some are still open after the
#      wait it refuses, and so does this script, leaving the pins and the
#      installed command in place so that a later run can finish the job;
#   3. removes the unit, the wrapper and /opt/sockaccel.
# /etc/sockaccel/config.json is kept unless --remove-config is given.
#
#   uninstall.sh [--wait-seconds N] [--force] [--remove-config]
#
# --force is passed to purge: see `sockaccel help purge` for what it costs.
# Idempotent; run as root.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)

PREFIX=/opt/sockaccel
BIN=/usr/local/bin/sockaccel
UNIT=/etc/systemd/system/sockaccel.service
CONFIG_DIR=/etc/sockaccel

say() { printf 'uninstall: %s\n' "$*"; }
die() { printf 'uninstall: %s\n' "$*" >&2; exit 1; }

wait_seconds=30
force=()
remove_config=false
while [[ $# -gt 0 ]]; do
  case $1 in
    --wait-seconds) [[ $# -ge 2 ]] || die '--wait-seconds needs a value'; wait_seconds=$2; shift 2 ;;
    --wait-seconds=*) wait_seconds=${1#*=}; shift ;;
    --force) force=(--force); shift ;;
    --remove-config) remove_config=true; shift ;;
    *) die "unknown argument $1 (usage: uninstall.sh [--wait-seconds N] [--force] [--remove-config])" ;;
  esac
done
[[ $wait_seconds =~ ^[0-9]+$ ]] || die "--wait-seconds must be a whole number, got $wait_seconds"
[[ $(id -u) -eq 0 ]] || die "must run as root: it removes pins under /sys/fs/bpf, $PREFIX, $BIN and $UNIT"

if [[ -d /run/systemd/system ]] && systemctl cat sockaccel.service >/dev/null 2>&1; then
  systemctl disable --now --quiet sockaccel.service
  say 'stopped and disabled sockaccel.service'
fi

# The installed command knows the installed layout; the repo's build stands in
# when an earlier, interrupted run already removed it.
if [[ -x $BIN ]]; then
  sockaccel=("$BIN")
elif [[ -f $SRC/dist/src/cli/main.js ]]; then
  sockaccel=(node "$SRC/dist/src/cli/main.js")
else
  die "neither $BIN nor a built $SRC/dist/src/cli/main.js is there to run the purge"
fi
# Purge reads the pin root from the config, so it runs before the config goes.
"${sockaccel[@]}" purge --wait-seconds "$wait_seconds" "${force[@]}" \
  || die 'purge refused (message above): pins, unit and command were left in place; rerun once those connections closed, or with --force'

rm -f "$UNIT"
[[ -d /run/systemd/system ]] && systemctl daemon-reload
rm -f "$BIN"
rm -rf "$PREFIX"
say "removed $UNIT, $BIN and $PREFIX"
if $remove_config; then
  rm -rf "$CONFIG_DIR"
  say "removed $CONFIG_DIR"
elif [[ -d $CONFIG_DIR ]]; then
  say "kept $CONFIG_DIR (use --remove-config to remove it)"
fi
