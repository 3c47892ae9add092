#!/usr/bin/env bash
# Installs whatever is missing for sockaccel to build, run and be tested:
# Debian packages, npm packages, the BPF objects and the TypeScript build.
# Idempotent, and quick (a few seconds) when everything is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

# Toolchain and runtime: clang + libbpf headers build the BPF objects,
# libbpf1 is loaded through the FFI, iproute2 watches addresses and builds
# test namespaces, bpftool and iptables serve diagnostics and tests.
# debootstrap and systemd-container (systemd-nspawn) boot the real systemd
# that test/integration/systemd.test.ts runs the service under.
# sockperf cross-checks the bench's own load generator (sockaccel bench --sockperf).
APT_PACKAGES=(clang llvm libbpf-dev libbpf1 bpftool iproute2 iptables libcap2-bin util-linux procps debootstrap systemd-container sockperf)

install_debian_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  if [[ $(id -u) -ne 0 ]]; then
    log "missing Debian packages: ${missing[*]}; run this script as root (or: sudo apt-get install ${missing[*]})"
    exit 1
  fi
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_npm_packages() {
  # npm ci rewrites node_modules; skip it when the installed tree matches the lock.
  if [[ -f node_modules/.package-lock.json && node_modules/.package-lock.json -nt package-lock.json \
        && node_modules/.package-lock.json -nt package.json ]]; then
    return
  fi
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
}

build_typescript() {
  local stamp=dist/.build-stamp
  if [[ -f $stamp ]] && ! find src test tsconfig.json package.json -newer "$stamp" -name '*.ts' -o -newer "$stamp" -name '*.json' | grep -q .; then
    return
  fi
  log "tsc"
  npx tsc -p tsconfig.json
  touch "$stamp"
}

install_debian_packages
install_npm_packages
bash scripts/build-bpf.sh
bash scripts/build-native.sh
build_typescript
