#!/usr/bin/env bash
# The whole test suite: unit tests (no privilege) and integration tests that
# load the programs into the real kernel (root). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
npx ava --tap "$@" | tee "$out"
status=${PIPESTATUS[0]}
set -e
pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -1)
fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -1)
skip=$(sed -n 's/^# skip \([0-9]*\)$/\1/p' "$out" | tail -1)
echo "ava: ${pass:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
exit "$status"
