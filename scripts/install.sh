#!/usr/bin/env bash
# Installs the built sockaccel as a systemd service:
#   /opt/sockaccel/                   runtime files (dist/src, build/bpf, production node_modules)
#   /usr/local/bin/sockaccel          wrapper: exec node /opt/sockaccel/dist/src/cli/main.js
#   /etc/systemd/system/sockaccel.service
#   /etc/sockaccel/config.json        default config, only if none exists
# then enables the service and (re)starts it. Rerunning it
# with a new build is the upgrade: the restart reuses the pinned maps and swaps
# the pinned links to the new programs atomically, so no connection notices.
# Idempotent. Build first (bash scripts/setup.sh); run as root.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)

PREFIX=/opt/sockaccel
BIN=/usr/local/bin/sockaccel
UNIT=/etc/systemd/system/sockaccel.service
CONFIG_DIR=/etc/sockaccel
CONFIG=$CONFIG_DIR/config.json

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root: it writes $PREFIX, $BIN, $UNIT and $CONFIG_DIR"
# sd_booted(): systemd is PID 1 exactly when this directory exists.
[[ -d /run/systemd/system ]] \
  || die "systemd is not running here (PID 1 is $(cat /proc/1/comm)): nothing installed; without systemd run the daemon directly: node $SRC/dist/src/cli/main.js run"
NODE=$(command -v node) || die 'node is not in PATH: install Node.js 20 or newer first'
"$NODE" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || die "$NODE is Node.js $("$NODE" --version); sockaccel needs 20 or newer"
for f in dist/src/cli/main.js build/bpf/sockops.bpf.o build/bpf/redirect.bpf.o node_modules package.json package-lock.json \
         systemd/sockaccel.service systemd/config.json; do
  [[ -e $SRC/$f ]] || die "$SRC/$f is missing: build first (bash scripts/setup.sh)"
done

# Stage the new tree beside the old one, then swap: a running daemon keeps
# the files it loaded until the restart below.
stage=$PREFIX.new.$$
trap 'rm -rf "$stage"' EXIT
rm -rf "$stage"
mkdir -p "$stage/dist" "$stage/build"
cp -a "$SRC/dist/src" "$stage/dist/src"
cp -a "$SRC/build/bpf" "$stage/build/bpf"
cp -a "$SRC/package.json" "$SRC/package-lock.json" "$SRC/node_modules" "$stage/"
# Drop the devDependencies, as the lockfile marks them; needs node only, not npm.
"$NODE" -e '
  const fs = require("node:fs"), path = require("node:path");
  const dir = process.argv[1];
  const lock = JSON.parse(fs.readFileSync(path.join(dir, "package-lock.json"), "utf8"));
  for (const [where, pkg] of Object.entries(lock.packages ?? {})) {
    if (where !== "" && pkg.dev) fs.rmSync(path.join(dir, where), { recursive: true, force: true });
  }' "$stage"

if [[ -e $CONFIG ]]; then
  say "keeping the existing $CONFIG"
else
  install -D -m 0644 "$SRC/systemd/config.json" "$CONFIG"
  say "wrote the default $CONFIG"
fi
# Checked with the schema of the build being installed, before anything is swapped in.
env -i SOCKACCEL_CONFIG="$CONFIG" "$NODE" -e 'require(process.argv[1]).loadConfig()' "$stage/dist/src/config/config.js" \
  || die "$CONFIG is not valid for this build (message above); fix it and rerun"

if [[ -d $PREFIX ]]; then
  mv "$PREFIX" "$PREFIX.old.$$"
  mv "$stage" "$PREFIX"
  rm -rf "$PREFIX.old.$$"
else
  mv "$stage" "$PREFIX"
fi
say "installed the runtime files in $PREFIX"

wrapper=$(mktemp "$BIN.XXXXXX")
printf '#!/bin/sh\n# Installed by sockaccel scripts/install.sh\nexec %q %q "$@"\n' "$NODE" "$PREFIX/dist/src/cli/main.js" > "$wrapper"
chmod 0755 "$wrapper"
mv "$wrapper" "$BIN"
install -D -m 0644 "$SRC/systemd/sockaccel.service" "$UNIT"
say "installed $BIN and $UNIT"

systemctl daemon-reload
systemctl enable --quiet sockaccel.service
# restart, not start: after an upgrade the running daemon must hand over to
# the new build (a start would leave the old one running).
systemctl restart sockaccel.service
say "sockaccel.service enabled and running: $(systemctl show -P StatusText sockaccel.service)"
