#!/usr/bin/env bash
# Rebuild the BPF objects and the TypeScript (no package installs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-bpf.sh
bash scripts/build-native.sh
npx tsc -p tsconfig.json
touch dist/.build-stamp
