#!/usr/bin/env bash
# The main job: build what is missing, then run the daemon in the foreground
# on its built-in defaults (attach to the cgroup v2 root, pin under
# /sys/fs/bpf/sockaccel). Extra arguments go to `sockaccel run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/src/cli/main.js run "$@"
