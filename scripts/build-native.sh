#!/usr/bin/env bash
# Compile the native helpers (scripts/bench/*.c) into build/native/<name>.
# Rebuilds only what is older than its source, like build-bpf.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${CC:-cc}
CFLAGS=(-O2 -Wall -Werror)
OUT=build/native
mkdir -p "$OUT"

for src in scripts/bench/*.c; do
  name=$(basename "$src" .c)
  bin="$OUT/$name"
  if [[ -x "$bin" && "$bin" -nt "$src" && "$bin" -nt "$0" ]]; then
    continue
  fi
  echo "native: $src -> $bin"
  "$CC" "${CFLAGS[@]}" -o "$bin.tmp" "$src" -lm
  mv "$bin.tmp" "$bin"
done
