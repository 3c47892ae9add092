#!/usr/bin/env bash
# Runs integration test files on other kernels, each file in a fresh qemu VM
# of scripts/kernel-vm.sh (Debian's kernels, TCG, about 10-15x slower than
# the host).
#
#   bash scripts/test-kernels.sh                       # the CI matrix below
#   bash scripts/test-kernels.sh 6.1 datapath mesh     # any test files on any kernel
#   bash scripts/test-kernels.sh 6.12 dist/test/integration/lifecycle.test.js
#
# A test file is named by its base name (datapath = dist/test/integration/
# datapath.test.js) or by its path; "verifier" runs scripts/verify-bpf.sh.
# Builds the project first (scripts/setup.sh).
# Prints one line per file and a closing "kernels: N passed, N failed,
# N skipped" (tests, from ava's TAP); a VM that died, timed out or ran no test
# counts as one failed test. Exit status 0 when nothing failed.
# SOCKACCEL_VM_TIMEOUT (seconds per VM, default 1800) and SOCKACCEL_AVA_TIMEOUT
# (ava's per-test inactivity timeout in the guest, default 15m) tune the waits;
# SOCKACCEL_VM_ICOUNT=0 gives the guests an instruction-count clock on a busy
# host (see scripts/kernel-vm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# What CI runs: kernel line -> test files. "verifier" is not an ava file: it
# puts every BPF program, under every setting, through that kernel's verifier
# (scripts/verify-bpf.sh), one count per program and setting.
MATRIX=(
  "6.1 verifier datapath lifecycle mesh security adaptive"
  "6.12 verifier datapath lifecycle"
)
# Tests left out in the VMs because nothing in them depends on the kernel
# and each costs minutes under TCG (ava --match patterns, by file).
declare -A SKIP_IN_VM=(
  [security]='!invalid configurations, by file, variable or flag*'
)
# 6.1 and older kernels refuse by default (FIONREAD does not count
# redirected bytes there); the matrix tests the data path as an operator who
# opted in runs it. fionread.test.js names the default itself.
export SOCKACCEL_FIONREAD_HAZARD=${SOCKACCEL_FIONREAD_HAZARD:-accept}
# A TCG guest runs 10-15x slower than the host: every deadline of the tests
# (never a fixed wait) is scaled by this (test/helpers/wait-for.ts).
export SOCKACCEL_TEST_TIME_SCALE=${SOCKACCEL_TEST_TIME_SCALE:-10}
VM_TIMEOUT=${SOCKACCEL_VM_TIMEOUT:-1800}
AVA_TIMEOUT=${SOCKACCEL_AVA_TIMEOUT:-15m}

log() { printf 'test-kernels: %s\n' "$*" >&2; }

if [[ $# -gt 0 ]]; then
  [[ $# -ge 2 ]] || { echo 'usage: bash scripts/test-kernels.sh [KERNEL TEST-FILE...]' >&2; exit 2; }
  MATRIX=("$*")
fi

bash scripts/setup.sh
bash scripts/verify-bpf.sh --build

test_file() {
  case $1 in
    */*) echo "$1" ;;
    *) echo "dist/test/integration/$1.test.js" ;;
  esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Ctrl-C ends the running VM (scripts/kernel-vm.sh cleans it up); the results
# so far are still printed.
interrupted=0
trap 'interrupted=1' INT TERM
summary=()
total_pass=0 total_fail=0 total_skip=0
start_all=$SECONDS
for row in "${MATRIX[@]}"; do
  read -ra words <<< "$row"
  kernel=${words[0]}
  for name in "${words[@]:1}"; do
    if [[ $name == verifier ]]; then
      file=scripts/verify-bpf.sh
      run=(bash scripts/verify-bpf.sh)
    else
      file=$(test_file "$name")
      run=(npx ava --tap --timeout="$AVA_TIMEOUT" "$file")
      [[ -n ${SKIP_IN_VM[$name]:-} ]] && run+=(--match "${SKIP_IN_VM[$name]}")
    fi
    [[ -f $file ]] || { log "no test file $file"; summary+=("$kernel $name: no such test file"); total_fail=$((total_fail + 1)); continue; }
    out=$work/out
    rm -f "$out"
    log "$kernel: $file"
    start=$SECONDS load_before=$(cut -d' ' -f1 /proc/loadavg)
    set +e
    bash scripts/kernel-vm.sh "$kernel" --timeout "$VM_TIMEOUT" --output "$out" -- "${run[@]}"
    rc=$?
    set -e
    secs=$((SECONDS - start))
    pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" 2>/dev/null | tail -1) || true
    fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" 2>/dev/null | tail -1) || true
    skip=$(sed -n 's/^# skip \([0-9]*\)$/\1/p' "$out" 2>/dev/null | tail -1) || true
    if [[ $name == verifier ]]; then
      pass=$(sed -n 's/^verify-bpf: \([0-9]*\) loaded, \([0-9]*\) refused.*/\1/p' "$out" 2>/dev/null | tail -1) || true
      fail=$(sed -n 's/^verify-bpf: \([0-9]*\) loaded, \([0-9]*\) refused.*/\2/p' "$out" 2>/dev/null | tail -1) || true
      skip=0
    elif [[ -z $pass && -f $out ]]; then
      # No TAP summary (the VM timed out or was stopped): count the tests done.
      pass=$(grep -cE '^ok [0-9]+ ' "$out" || true)
      fail=$(grep -cE '^not ok [0-9]+ ' "$out" || true)
      skip=$(grep -cE '^ok [0-9]+ .*# SKIP' "$out" || true)
      pass=$((pass - skip))
    fi
    pass=${pass:-0} fail=${fail:-0} skip=${skip:-0}
    note=''
    case $rc in 124) note=' (VM timed out)' ;; 125) note=' (VM failed)' ;; 130) note=' (interrupted)' ;; esac
    if [[ $rc -ne 0 && $fail -eq 0 ]]; then
      # The VM or ava ended without a failed test to show for it.
      fail=1
      [[ -n $note ]] || note=" (exit $rc)"
    fi
    # The host's load average matters: a TCG guest slows down with it.
    line="$kernel $name: $pass passed, $fail failed, $skip skipped in ${secs}s$note (host load $load_before -> $(cut -d' ' -f1 /proc/loadavg))"
    # The failed tests by name, for the summary.
    failed_names=$(grep -E '^(not ok [0-9]+ |FAIL )' "$out" 2>/dev/null | sed 's/^not ok [0-9]* - /    not ok: /; s/^FAIL /    refused: /' || true)
    summary+=("$line")
    [[ -n $failed_names ]] && summary+=("$failed_names")
    log "$line"
    total_pass=$((total_pass + pass)) total_fail=$((total_fail + fail)) total_skip=$((total_skip + skip))
    [[ $rc -eq 130 || $interrupted -eq 1 ]] && { log 'interrupted'; interrupted=1; break 2; }
  done
done

echo
echo "test-kernels: results ($((SECONDS - start_all)) s in VMs and builds)"
printf '  %s\n' "${summary[@]}"
echo "kernels: $total_pass passed, $total_fail failed, $total_skip skipped"
[[ $interrupted -eq 0 ]] || exit 130
[[ $total_fail -eq 0 ]]
