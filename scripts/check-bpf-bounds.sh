#!/usr/bin/env bash
# Checks that the compiler kept the bound on every variable index into the
# given bitmap arrays of a BPF object, so that old verifiers can prove the
# access in range.
#
#   bash scripts/check-bpf-bounds.sh build/bpf/sockops.bpf.o [ARRAY...]
#   (default arrays: include_ports exclude_ports)
#
# Why: on 6.1 and 6.12 the verifier refused sockops.bpf.o ("R4 max value is
# outside of the allowed memory range"). The port comes out of a 16-bit byte
# swap, so clang knew it fits in 16 bits, dropped the `& 0xffff`, and the
# index reached the bitmap through a stack slot, from which those verifiers
# learn no bound. scripts/build-bpf.sh runs this after every build.
#
# How: in `llvm-objdump -d -r`, each access is `rP = <array> ll` followed by
# `rP += rI`. Walking back from there within the basic block, the value of rI
# must come from an `&= K` through moves and constant shifts only (a load
# from the stack, a byte swap or a call before the mask fails the check), and
# K pushed through those shifts must keep every 8-byte element in the array.
set -euo pipefail

obj=${1:?usage: check-bpf-bounds.sh OBJECT [ARRAY...]}
shift
arrays=("$@")
[[ ${#arrays[@]} -gt 0 ]] || arrays=(include_ports exclude_ports)
OBJDUMP=${LLVM_OBJDUMP:-llvm-objdump}

# Sizes of the arrays, from the symbol table.
declare -A size=()
while read -r _ _ _ _ sz name; do size[$name]=$((16#$sz)); done \
  < <("$OBJDUMP" -t "$obj" | awk '$3 == "O" { print $1, $2, $3, $4, $5, $6 }')
syms=''
for a in "${arrays[@]}"; do
  [[ -n ${size[$a]:-} ]] || { echo "check-bpf-bounds: $obj has no symbol $a" >&2; exit 1; }
  syms+="$a=${size[$a]} "
done

"$OBJDUMP" -d -r --no-show-raw-insn "$obj" | awk -v obj="$obj" -v syms="$syms" '
function fail(msg) { printf "check-bpf-bounds: %s: %s\n", obj, msg > "/dev/stderr"; bad++ }
BEGIN {
  n = split(syms, list, " ")
  for (i = 1; i <= n; i++) { split(list[i], kv, "="); size[kv[1]] = kv[2] }
}
# A label starts a basic block that other paths may enter: forget the past.
/^[0-9a-f]+ <.*>:$/ { nh = 0; next }
/R_BPF_64_64/ {
  sym = $NF
  if (sym in size && last ~ /^r[0-9]+ = 0 ll$/) { want = sym; wantreg = substr(last, 2) + 0; wantat = lastat }
  next
}
/^ *[0-9]+:\t/ {
  at = $1; sub(/:$/, "", at)
  line = $0; sub(/^ *[0-9]+:\t/, "", line)
  if (want != "") {
    if (match(line, "^r" wantreg " \\+= r[0-9]+$")) {
      idx = substr(line, RSTART + length("r" wantreg " += r")) + 0
      check(want, idx, at)
    }
    want = ""
  }
  hist[nh++] = line
  last = line; lastat = at
  next
}
function check(sym, reg, at,    j, t, ins, f, nops, ops, k, bound) {
  found++
  t = reg; nops = 0
  for (j = nh - 2; j >= 0; j--) {         # hist[nh-1] is the "rP = 0 ll"
    ins = hist[j]
    if (ins ~ /^call /) { if (t <= 5) { fail(sprintf("insn %s: index into %s crosses a call", at, sym)); return } continue }
    if (ins !~ /^[rw][0-9]+ /) continue   # stores, jumps: no register written
    split(ins, f, " ")
    if (substr(f[1], 2) + 0 != t) continue
    if (f[2] == "=" && f[3] ~ /^[rw][0-9]+$/ && f[4] == "") { t = substr(f[3], 2) + 0; continue }
    if (f[2] == "=" && f[3] ~ /^-?[0-9]+$/ && f[4] == "") { bound = f[3] + 0; break }
    if ((f[2] == ">>=" || f[2] == "<<=") && f[3] ~ /^[0-9]+$/) { ops[++nops] = f[2] f[3]; continue }
    if (f[2] == "&=" && f[3] ~ /^[0-9]+$/) { bound = f[3] + 0; break }
    fail(sprintf("insn %s: index into %s comes from \"%s\" with no mask after it", at, sym, ins)); return
  }
  if (j < 0) { fail(sprintf("insn %s: no mask on the index into %s in its basic block", at, sym)); return }
  for (k = nops; k >= 1; k--) {
    if (ops[k] ~ /^>>=/) bound = int(bound / 2 ^ substr(ops[k], 4))
    else bound = bound * 2 ^ substr(ops[k], 4)
  }
  if (bound + 8 > size[sym]) { fail(sprintf("insn %s: index into %s may reach byte %d of %d", at, sym, bound, size[sym])); return }
  ok++
}
END {
  if (bad) exit 1
  if (!found) { printf "check-bpf-bounds: %s: no variable index into %s found\n", obj, syms > "/dev/stderr"; exit 1 }
  printf "check-bpf-bounds: %s: %d bitmap index(es) bounded\n", obj, ok
}'
