#!/usr/bin/env bash
# Compile every bpf/<name>.bpf.c into build/bpf/<name>.bpf.o.
# Rebuilds only what is older than its sources.
# BPF_OUT_DIR and BPF_EXTRA_CFLAGS build a second set elsewhere (the upgrade
# test loads one built with an extra -D).
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG=${CLANG:-clang}
ARCH_INCLUDE="/usr/include/$(uname -m)-linux-gnu"
CFLAGS=(-O2 -g -Wall -Werror -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -I bpf -I "$ARCH_INCLUDE")
read -ra EXTRA_CFLAGS <<< "${BPF_EXTRA_CFLAGS:-}"
CFLAGS+=("${EXTRA_CFLAGS[@]}")
OUT=${BPF_OUT_DIR:-build/bpf}
mkdir -p "$OUT"

for src in bpf/*.bpf.c; do
  name=$(basename "$src" .c)
  obj="$OUT/$name.o"
  if [[ -f "$obj" ]] && ! find "$src" bpf/*.h -newer "$obj" | grep -q .; then
    continue
  fi
  echo "bpf: $src -> $obj"
  "$CLANG" "${CFLAGS[@]}" -c "$src" -o "$obj.tmp"
  # Old verifiers (6.1, 6.12) need the bound on each bitmap index in the code
  # itself: fail the build when the compiler optimised it away.
  if [[ $name == sockops.bpf ]] && ! bash scripts/check-bpf-bounds.sh "$obj.tmp" >/dev/null; then
    rm -f "$obj.tmp"
    echo "bpf: $obj: an index into the port bitmaps is not bounded in the compiled code (see scripts/check-bpf-bounds.sh)" >&2
    exit 1
  fi
  mv "$obj.tmp" "$obj"
done
