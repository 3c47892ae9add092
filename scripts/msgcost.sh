#!/usr/bin/env bash
# What the sk_msg programs cost per redirected message, by build, with
# bpf_stats (kernel.bpf_stats_enabled): the run time the kernel charges to
# sockaccel_to_server and sockaccel_to_client, over the messages they ran for.
#
#   bash scripts/msgcost.sh [--seconds S] [--rounds N] CHECKOUT...
#
# Each CHECKOUT is a built sockaccel tree (bash scripts/setup.sh in it). Each
# gets a daemon of its own, in a scratch cgroup with its own pin root; every
# round runs, per checkout in turn, one 64 B request/response connection
# (build/native/loadgen, both ends on CPU 0) in that cgroup and prints the
# nanoseconds per message. Compare builds within one run (the rounds
# interleave them); docs/adaptive.md (Cost) has a run. Needs root; leaves
# nothing behind (daemons stopped, pins purged, cgroups removed, bpf_stats
# back off).
set -euo pipefail

SECS=2 ROUNDS=5
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) SECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { echo "usage: $0 [--seconds S] [--rounds N] CHECKOUT..." >&2; exit 64; }
repos=()
for r in "$@"; do repos+=("$(cd "$r" && pwd)"); done

CG_ROOT=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[[ -n $CG_ROOT ]] || { echo "msgcost: no cgroup v2 mount" >&2; exit 69; }
PORT_BASE=$(( $(cut -f1 /proc/sys/net/ipv4/ip_local_port_range) - 2000 ))
logs=$(mktemp -d)
pids=() cgs=() pins=()
stats_before=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for i in "${!pins[@]}"; do node "${repos[$i]}/dist/src/cli/main.js" purge --pin-root="${pins[$i]}" >/dev/null 2>&1 || true; done
  for c in "${cgs[@]}"; do rmdir "$c" 2>/dev/null || true; done
  sysctl -qw kernel.bpf_stats_enabled="$stats_before"
  rm -rf "$logs"
}
trap cleanup EXIT
sysctl -qw kernel.bpf_stats_enabled=1

for i in "${!repos[@]}"; do
  cgs+=("$CG_ROOT/sockaccel-msgcost-$$-$i"); mkdir "${cgs[$i]}"
  pins+=("/sys/fs/bpf/sockaccel-msgcost-$$-$i")
  node "${repos[$i]}/dist/src/cli/main.js" run --cgroup-path="${cgs[$i]}" --pin-root="${pins[$i]}" --local-cidrs= --log-level=warn > "$logs/daemon-$i.log" 2>&1 &
  pids+=($!)
done
for i in "${!repos[@]}"; do
  for _ in $(seq 600); do [[ -e ${pins[$i]}/link_sockops ]] && break; sleep 0.1; done
  [[ -e ${pins[$i]}/link_sockops ]] || { echo "msgcost: the daemon of ${repos[$i]} did not start:" >&2; cat "$logs/daemon-$i.log" >&2; exit 1; }
done

# "run_time_ns run_cnt" of every loaded sk_msg program of ours; only the
# checkout measured in a round sends, so the difference is its programs'.
sk_msg_totals() {
  bpftool -j prog show | python3 -c '
import json, sys
t = c = 0
for p in json.load(sys.stdin):
    if p.get("name", "").startswith("sockaccel_to_"):
        t += p.get("run_time_ns", 0); c += p.get("run_cnt", 0)
print(t, c)'
}

port=$PORT_BASE
for round in $(seq "$ROUNDS"); do
  for i in "${!repos[@]}"; do
    port=$((port + 1))
    read -r t0 c0 < <(sk_msg_totals)
    ( echo "$BASHPID" > "${cgs[$i]}/cgroup.procs"; exec taskset -c 0 "${repos[$i]}/build/native/loadgen" server --mode rr --host 127.0.0.1 --port "$port" --size 64 ) > "$logs/server.log" 2>&1 &
    spid=$!
    for _ in $(seq 100); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.05; done
    ( echo "$BASHPID" > "${cgs[$i]}/cgroup.procs"; exec taskset -c 0 "${repos[$i]}/build/native/loadgen" client --mode rr --host 127.0.0.1 --port "$port" --size 64 --duration-ms $((SECS * 1000)) ) > "$logs/client.log" 2>&1 \
      || { echo "msgcost: loadgen failed:" >&2; cat "$logs/client.log" >&2; exit 1; }
    kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true
    grep -q '"ok":true' "$logs/client.log" || { echo "msgcost: the run was not byte-exact:" >&2; cat "$logs/client.log" >&2; exit 1; }
    read -r t1 c1 < <(sk_msg_totals)
    awk -v r="$round" -v repo="${repos[$i]}" -v t=$((t1 - t0)) -v c=$((c1 - c0)) \
      'BEGIN { printf "round %d  %-40s %7.1f ns per message over %d messages\n", r, repo, c ? t / c : 0, c }'
  done
done
