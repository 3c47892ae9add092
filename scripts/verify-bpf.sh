#!/usr/bin/env bash
# Puts every program of every BPF object through the running kernel's
# verifier, each with every combination of load-time settings that gates a
# branch (the verifier prunes branches on the frozen settings, so a program is
# only checked whole when each such setting has been both off and on), and
# prints the verifier's log on a refusal. Nothing is attached or pinned.
#
#   bash scripts/verify-bpf.sh [OBJECT_DIR]          # default build/bpf
#   bash scripts/kernel-vm.sh 6.1 -- bash scripts/verify-bpf.sh
#
# Exit status 0 when every program loaded. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=build/native/verify-bpf
if [[ ! -x $BIN || scripts/verify-bpf.c -nt $BIN ]]; then
  mkdir -p build/native
  ${CC:-cc} -O2 -Wall -Werror -o "$BIN.tmp" scripts/verify-bpf.c -lbpf
  mv "$BIN.tmp" "$BIN"
fi
# --build: only build the loader (on the host, before a VM runs it).
[[ ${1:-} == --build ]] && exit 0
OBJ_DIR=${1:-build/bpf}

ok=0 failed=0
run() {
  local out status
  out=$("$BIN" "$@" 2>&1) && status=0 || status=$?
  printf '%s\n' "$out"
  ok=$((ok + $(grep -c '^OK ' <<< "$out" || true)))
  failed=$((failed + $(grep -c '^FAIL ' <<< "$out" || true)))
  # A run that checked nothing (a setting the object lacks) is a failure too.
  if [[ $status -ne 0 ]] && ! grep -q '^FAIL ' <<< "$out"; then failed=$((failed + 1)); fi
}

echo "verify-bpf: kernel $(uname -r), objects in $OBJ_DIR"
# The daemon always gives sock_ops its shape slots (mapSize); at 0 the
# verifier would prune the slot claim. The mesh settings are run-time values
# in maps (bpf/mesh.bpf.h), so they gate nothing the verifier can prune.
SLOTS=shape_slots=65535
run "$OBJ_DIR/sockops.bpf.o" default "$SLOTS"
run "$OBJ_DIR/sockops.bpf.o" no-shape-slots
run "$OBJ_DIR/sockops.bpf.o" include-ports include_ports_enabled=1 "$SLOTS"
run "$OBJ_DIR/redirect.bpf.o" default
run "$OBJ_DIR/listeners_iter.bpf.o" default cgroup_id=1
run "$OBJ_DIR/conns_iter.bpf.o" default
echo "verify-bpf: $ok loaded, $failed refused on $(uname -r)"
[[ $failed -eq 0 ]]
