#!/usr/bin/env bash
# Runs one command as root inside a qemu VM that boots one of Debian's
# kernels, with this machine's whole file tree visible (read-only, under a
# writable tmpfs overlay), and returns the command's exit code.
#
#   bash scripts/kernel-vm.sh 6.1 -- npx ava --timeout=20m dist/test/integration/datapath.test.js
#   bash scripts/kernel-vm.sh 6.12 --prepare      # only fetch and cache the kernel
#   bash scripts/kernel-vm.sh --list              # the kernels it knows
#
# KERNEL is a kernel line (6.1: bookworm, 6.12: bookworm-backports, 5.10:
# bullseye; the newest package of the line is taken) or the exact name of a
# generic linux-image-*-amd64 package. The package is downloaded with
# `apt-get download` through apt lists of its own (under $CACHE/apt; the
# host's apt sources, lists and install candidates are never changed),
# extracted with dpkg-deb -x (never installed), and cached with its initramfs
# under $CACHE/kernels/<package>/, rebuilt when the module list or the init
# script below changes (a stamp, as in scripts/test-rootfs.sh).
#
# The guest: qemu under TCG (no KVM here), -smp 2 -m 2048, no network device
# (only lo, and whatever namespaces/veths the command makes). / is the host's
# / over virtio-9p, read-only, under an overlay whose upper layer is a tmpfs:
# the command can write anywhere and nothing reaches the host. proc, sysfs,
# devtmpfs, devpts, cgroup2 (/sys/fs/cgroup) and tmpfs on /run and /tmp are
# mounted; bpffs is not (the daemon mounts it, as on a fresh host). The command
# runs in the caller's directory with CI, PATH, HOME, LANG, NODE_OPTIONS,
# every SOCKACCEL_* variable and those named by --env.
#
# Its output streams to stdout (kernel messages are kept quiet). Exit code:
# the command's, or 124 on timeout, 125 if the VM ended without reporting one
# (boot failure, kernel panic), 130 on Ctrl-C. A guest that fails before it
# starts the command is booted once more. qemu and the run's temporary
# directory are always removed, also on failure or Ctrl-C.
set -euo pipefail
# The command runs in the caller's directory (not this repository's).
CALLER_DIR=$PWD

CACHE=${SOCKACCEL_VM_CACHE:-/var/cache/sockaccel-test}
MIRROR=${SOCKACCEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SOCKACCEL_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
TIMEOUT=${SOCKACCEL_VM_TIMEOUT:-3600}
MEM=${SOCKACCEL_VM_MEM:-2048}
SMP=${SOCKACCEL_VM_SMP:-}
# "off": multi-threaded TCG, guest time = host time (the default). A number N:
# guest time from the instruction count (qemu -icount shift=N). See run_vm.
ICOUNT=${SOCKACCEL_VM_ICOUNT:-off}
# Mount bpffs at /sys/fs/bpf before the command, as systemd does at boot.
BPFFS=${SOCKACCEL_VM_BPFFS:-1}

log() { printf 'kernel-vm: %s\n' "$*" >&2; }
die() { log "$*"; exit 125; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  cat <<'EOF'
Usage: bash scripts/kernel-vm.sh KERNEL [options] -- COMMAND [ARG...]
       bash scripts/kernel-vm.sh KERNEL --prepare
       bash scripts/kernel-vm.sh --list
Options:
  --timeout SECONDS   end the VM after this long (default 3600; SOCKACCEL_VM_TIMEOUT)
  --mem MIB           guest memory (default 2048; SOCKACCEL_VM_MEM)
  --smp N             guest CPUs (default 2, 1 with --icount; SOCKACCEL_VM_SMP)
  --icount SHIFT|off  guest clock: off = host time (default); SHIFT = one executed
                      instruction is 2^SHIFT ns of guest time, for a busy host
                      (SOCKACCEL_VM_ICOUNT; see docs/kernels.md)
  --env NAME[=VALUE]  pass one more environment variable into the guest
  --no-bpffs          leave /sys/fs/bpf unmounted (default: mounted, as systemd
                      does; SOCKACCEL_VM_BPFFS=0)
  --output FILE       also write the command's own output (no boot lines) to FILE
  --prepare           only fetch the kernel and build its initramfs, then exit
EOF
}

# Modules the guest loads, dependencies first (each one's own dependencies are
# added from its modinfo). REQUIRED ones must exist (as a module or built in);
# the others are loaded when the kernel has them.
REQUIRED_MODULES=(virtio virtio_ring virtio_pci 9pnet 9pnet_virtio 9p overlay)
OPTIONAL_MODULES=(
  virtio_rng
  veth bridge
  # netfilter for the mesh (iptables-nft: REDIRECT, owner) and security tests
  crc32c_generic libcrc32c
  x_tables nf_tables nft_compat nft_chain_nat nf_nat nf_conntrack
  xt_REDIRECT xt_owner xt_tcpudp xt_conntrack xt_addrtype
  ip_tables iptable_nat iptable_filter ip6_tables ip6table_nat ip6table_filter
)

# ---------------------------------------------------------------------------
# Kernel packages, through apt lists of our own.

APT_DIR=$CACHE/apt
apt_opts() {
  printf '%s\n' \
    -o "Dir::Etc::sourcelist=$APT_DIR/sources.list" \
    -o "Dir::Etc::sourceparts=$APT_DIR/sources.list.d" \
    -o "Dir::Etc::preferences=$APT_DIR/preferences" \
    -o "Dir::Etc::preferencesparts=$APT_DIR/preferences.d" \
    -o "Dir::State=$APT_DIR/state" \
    -o "Dir::State::Lists=$APT_DIR/lists" \
    -o "Dir::State::status=$APT_DIR/status" \
    -o "Dir::Cache=$APT_DIR/cache" \
    -o "APT::Architecture=amd64" \
    -o "APT::Architectures::=amd64" \
    -o "APT::Sandbox::User=root"
}

apt_setup() {
  mkdir -p "$APT_DIR"/{sources.list.d,preferences.d,state,lists/partial,cache/archives/partial}
  touch "$APT_DIR/status" "$APT_DIR/preferences"
  local key=/usr/share/keyrings/debian-archive-keyring.gpg
  cat > "$APT_DIR/sources.list.new" <<EOF
deb [signed-by=$key] $MIRROR bookworm main
deb [signed-by=$key] $MIRROR bookworm-backports main
deb [signed-by=$key] $SECURITY_MIRROR bookworm-security main
deb [signed-by=$key] $MIRROR bullseye main
deb [signed-by=$key] $SECURITY_MIRROR bullseye-security main
EOF
  if cmp -s "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"; then rm "$APT_DIR/sources.list.new"
  else mv "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"; fi
}

# Refreshes our lists when they are missing or older than a day. A failed
# refresh keeps the old lists (and the cached kernels still work offline).
apt_update() {
  local stamp=$APT_DIR/lists/.updated
  if [[ -f $stamp && -z $(find "$stamp" -mmin +1440) && $stamp -nt $APT_DIR/sources.list ]]; then return; fi
  local -a opts; mapfile -t opts < <(apt_opts)
  log "apt-get update (kernel lists in $APT_DIR)"
  if apt-get "${opts[@]}" -qq update >&2; then touch "$stamp"; else log 'apt-get update failed; using the lists already there'; fi
}

# Package-name pattern of each kernel line (generic flavour only).
line_regex() {
  case $1 in
    6.1) echo '^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
    6.12) echo '^linux-image-6\.12\.[0-9]+\+deb12(\.[0-9]+)?-amd64$' ;;
    5.10) echo '^linux-image-5\.10\.0-[0-9]+-amd64$' ;;
    *) return 1 ;;
  esac
}

# The newest package of a line that apt can actually download.
resolve_line() {
  local regex=$1 names
  local -a opts; mapfile -t opts < <(apt_opts)
  names=$(apt-cache "${opts[@]}" pkgnames linux-image- 2>/dev/null | grep -E "$regex" || true)
  [[ -n $names ]] || return 1
  # pkgnames also lists names only referenced; madison shows those with a version.
  # shellcheck disable=SC2086
  apt-cache "${opts[@]}" madison $names 2>/dev/null | awk '{print $1}' | sort -uV | tail -1
}

resolve_kernel() {
  local spec=$1 regex pkg
  if [[ $spec == linux-image-*-amd64 ]]; then echo "$spec"; return; fi
  regex=$(line_regex "$spec") || die "unknown kernel '$spec': use 6.1, 6.12, 5.10 or a linux-image-*-amd64 package name"
  apt_setup
  apt_update
  pkg=$(resolve_line "$regex" || true)
  if [[ -z $pkg ]]; then
    # Offline: the newest kernel of this line already in the cache.
    pkg=$(find "$CACHE/kernels" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | grep -E "$regex" | sort -V | tail -1 || true)
    [[ -n $pkg ]] || die "no package found for kernel $spec (pattern $regex)"
    log "apt has no package for $spec; using the cached $pkg"
  fi
  echo "$pkg"
}

# ---------------------------------------------------------------------------
# The guest's first program, in the initramfs (busybox sh).
INIT_SCRIPT='#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
  insmod /modules/$m.ko 2>/dev/null || echo "kernel-vm: insmod $m failed"
done
fail() { echo "kernel-vm: $*"; echo o > /proc/sysrq-trigger; sleep 10; }
mkdir -p /lower /upper /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower || fail "mounting the host root failed"
mount -t tmpfs -o mode=0755 upper /upper
mkdir -p /upper/data /upper/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work /newroot || fail "overlay mount failed"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
# What udev would add: bash process substitution needs /dev/fd.
ln -sfn /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
mount -t tmpfs -o mode=0755 run $R/run
mount -t tmpfs -o mode=1777 tmp $R/tmp
mkdir -p $R/run/kernel-vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 xchg $R/run/kernel-vm || fail "mounting the exchange directory failed"
[ -x $R/run/kernel-vm/stage2 ] || fail "no stage2 in the exchange directory"
exec switch_root $R /run/kernel-vm/stage2
'
INIT_VERSION=3

# Kernel modules: name -> file, dependencies, load order.
declare -A MOD_FILE=() MOD_SEEN=()
MOD_ORDER=()

index_modules() {
  local moddir=$1 f base
  while IFS= read -r f; do
    base=${f##*/}; base=${base%%.ko*}; base=${base//-/_}
    MOD_FILE[$base]=$f
  done < <(find "$moddir/kernel" -name '*.ko*')
}

is_builtin() {
  local moddir=$1 name=${2//-/_}
  [[ -f $moddir/modules.builtin ]] || return 1
  sed 's#.*/##; s#\.ko$##; s#-#_#g' "$moddir/modules.builtin" | grep -qx "$name"
}

# Decompressed copy of a module in $work/mods/<name>.ko.
unpack_module() {
  local src=$1 dst=$2
  case $src in
    *.ko.xz) xz -dc "$src" > "$dst" ;;
    *.ko.zst) zstd -qdc "$src" > "$dst" ;;
    *.ko.gz) gzip -dc "$src" > "$dst" ;;
    *.ko) cp "$src" "$dst" ;;
  esac
}

add_module() {
  local moddir=$1 work=$2 name=${3//-/_} required=$4 dep deps
  [[ -n ${MOD_SEEN[$name]:-} ]] && return 0
  MOD_SEEN[$name]=1
  if [[ -z ${MOD_FILE[$name]:-} ]]; then
    is_builtin "$moddir" "$name" && return 0
    [[ $required == 1 ]] && die "kernel module $name is neither built in nor in $moddir"
    log "note: this kernel has no module $name"
    return 0
  fi
  unpack_module "${MOD_FILE[$name]}" "$work/mods/$name.ko"
  # The .modinfo section's "depends=a,b" (no depmod, no modinfo needed).
  deps=$(tr '\0' '\n' < "$work/mods/$name.ko" | sed -n 's/^depends=//p' | head -1)
  for dep in ${deps//,/ }; do add_module "$moddir" "$work" "$dep" 1; done
  MOD_ORDER+=("$name")
}

stamp_text() {
  printf '%s\n' "modules: ${REQUIRED_MODULES[*]} | ${OPTIONAL_MODULES[*]}" "init: $INIT_VERSION" "$INIT_SCRIPT" \
    "busybox: $(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null)" | sha256sum | cut -d' ' -f1
}

ensure_host_tools() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  [[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -qx switch_root \
    && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=(busybox-static)
  command -v cpio >/dev/null || missing+=(cpio)
  command -v xz >/dev/null || missing+=(xz-utils)
  command -v zstd >/dev/null || missing+=(zstd)
  [[ ${#missing[@]} -eq 0 ]] && return
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# Makes $CACHE/kernels/<pkg>/{vmlinuz,initrd.gz,release} current.
prepare_kernel() {
  local pkg=$1 dir=$CACHE/kernels/$1 stamp work kver moddir
  stamp=$(stamp_text)
  if [[ -f $dir/stamp && $(<"$dir/stamp") == "$stamp" && -f $dir/vmlinuz && -f $dir/initrd.gz ]]; then return; fi
  mkdir -p "$dir"
  work=$(mktemp -d "$dir/build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  if [[ ! -f $dir/package.deb ]]; then
    local -a opts; mapfile -t opts < <(apt_opts)
    apt_setup; apt_update
    log "downloading $pkg"
    (cd "$work" && apt-get "${opts[@]}" -qq download "$pkg" >&2) || die "apt-get download $pkg failed"
    mv "$work"/*.deb "$dir/package.deb"
  fi
  log "building the initramfs for $pkg"
  dpkg-deb -x "$dir/package.deb" "$work/pkg"
  kver=$(find "$work/pkg/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -1)
  [[ -n $kver ]] || die "$pkg holds no /lib/modules"
  moddir=$work/pkg/lib/modules/$kver
  mkdir -p "$work/mods" "$work/root"/{bin,modules,proc,sys,dev}
  MOD_FILE=(); MOD_SEEN=(); MOD_ORDER=()
  index_modules "$moddir"
  # libcrc32c only names its crc32c provider as a soft dependency: load it first.
  local m
  for m in "${REQUIRED_MODULES[@]}"; do add_module "$moddir" "$work" "$m" 1; done
  for m in "${OPTIONAL_MODULES[@]}"; do add_module "$moddir" "$work" "$m" 0; done
  for m in "${MOD_ORDER[@]}"; do mv "$work/mods/$m.ko" "$work/root/modules/"; done
  printf '%s\n' "${MOD_ORDER[@]}" > "$work/root/modules/order"
  cp /bin/busybox "$work/root/bin/busybox"
  printf '%s' "$INIT_SCRIPT" > "$work/root/init"
  chmod 755 "$work/root/init"
  (cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.gz"
  cp "$work/pkg/boot/vmlinuz-$kver" "$work/vmlinuz"
  mv "$work/vmlinuz" "$work/initrd.gz" "$dir/"
  echo "$kver" > "$dir/release"
  printf '%s\n' "${MOD_ORDER[@]}" > "$dir/modules"
  echo "$stamp" > "$dir/stamp"
  rm -rf "$work"
  trap - EXIT
  log "cached $pkg ($kver) in $dir"
}

# ---------------------------------------------------------------------------

list_kernels() {
  apt_setup; apt_update
  local line
  for line in 6.1 6.12 5.10; do
    printf '%-5s %s\n' "$line" "$(resolve_line "$(line_regex "$line")" || echo '(none)')"
  done
  echo "cached:"
  find "$CACHE/kernels" -mindepth 1 -maxdepth 1 -printf '  %f\n' 2>/dev/null | sort -V
}

main() {
  local spec='' prepare=0 output=''
  local -a extra_env=() cmd=()
  [[ $# -gt 0 ]] || { usage; exit 2; }
  while [[ $# -gt 0 ]]; do
    case $1 in
      -h|--help) usage; exit 0 ;;
      --list) list_kernels; exit 0 ;;
      --prepare) prepare=1 ;;
      --timeout) TIMEOUT=$2; shift ;;
      --mem) MEM=$2; shift ;;
      --smp) SMP=$2; shift ;;
      --icount) ICOUNT=$2; shift ;;
      --env) extra_env+=("$2"); shift ;;
      --no-bpffs) BPFFS=0 ;;
      --output) output=$2; shift ;;
      --) shift; cmd=("$@"); break ;;
      -*) log "unknown option $1"; usage >&2; exit 2 ;;
      *) [[ -z $spec ]] || { log "unexpected argument $1"; exit 2; }; spec=$1 ;;
    esac
    shift
  done
  [[ -n $spec ]] || { usage >&2; exit 2; }
  [[ $(id -u) -eq 0 ]] || die 'must run as root'
  [[ $prepare == 1 || ${#cmd[@]} -gt 0 ]] || { log 'no command: put it after --'; exit 2; }

  ensure_host_tools
  local pkg dir
  pkg=$(resolve_kernel "$spec")
  prepare_kernel "$pkg"
  dir=$CACHE/kernels/$pkg
  [[ $prepare == 1 ]] && { echo "$dir"; exit 0; }

  case $CALLER_DIR/ in
    /tmp/*|/run/*|/proc/*|/sys/*|/dev/*) die "the guest mounts its own /tmp and /run: run from a directory elsewhere (now $CALLER_DIR)" ;;
  esac

  run_vm "$dir" "$output" "${#extra_env[@]}" "${extra_env[@]}" "${cmd[@]}"
}

QEMU_PID=''
XCHG=''
OUTPUT_FILE=''
# Ends our qemu: SIGTERM, then SIGKILL after 5 s.
stop_qemu() {
  if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill -TERM "$QEMU_PID" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$QEMU_PID" 2>/dev/null || true
  fi
  [[ -n $QEMU_PID ]] && { wait "$QEMU_PID" 2>/dev/null || true; }
  QEMU_PID=''
}

cleanup() {
  stop_qemu
  # The command's output so far, also after a timeout or Ctrl-C.
  if [[ -n $OUTPUT_FILE && -n $XCHG && -f $XCHG/output ]]; then cp "$XCHG/output" "$OUTPUT_FILE" || true; fi
  [[ -n $XCHG ]] && rm -rf "$XCHG"
  XCHG=''
}

run_vm() {
  local dir=$1 n_env=$3
  OUTPUT_FILE=$2
  shift 3
  local -a extra_env=("${@:1:n_env}"); shift "$n_env"
  local -a cmd=("$@")
  local kver name
  kver=$(<"$dir/release")

  XCHG=$(mktemp -d "${TMPDIR:-/tmp}/kernel-vm.XXXXXX")
  trap cleanup EXIT
  trap 'log "interrupted"; cleanup; exit 130' INT TERM HUP

  # What the guest runs after switching to the overlay root (bash from the host tree).
  {
    echo '#!/bin/bash'
    printf 'export %q\n' "CI=${CI:-}" "PATH=$PATH" "HOME=${HOME:-/root}" "LANG=${LANG:-C.UTF-8}"
    [[ -n ${NODE_OPTIONS:-} ]] && printf 'export %q\n' "NODE_OPTIONS=$NODE_OPTIONS"
    while IFS= read -r name; do printf 'export %q\n' "$name=${!name}"; done < <(compgen -e | grep '^SOCKACCEL_' || true)
    local e
    for e in "${extra_env[@]}"; do
      if [[ $e == *=* ]]; then printf 'export %q\n' "$e"; else printf 'export %q\n' "$e=${!e:-}"; fi
    done
    [[ $BPFFS == 1 ]] && echo 'mount -t bpf bpf /sys/fs/bpf'
    printf 'cd %q || exit 125\n' "$CALLER_DIR"
    declare -p cmd
  } > "$XCHG/env"
  cat > "$XCHG/stage2" <<'EOF'
#!/bin/bash
# PID 1 after switch_root: set the guest up, run the command, power off.
X=/run/kernel-vm
exec </dev/null >/dev/console 2>&1
stty -F /dev/console -onlcr 2>/dev/null
hostname kernel-vm
ip link set lo up
ulimit -n 1048576 2>/dev/null || ulimit -n 65536
ulimit -l unlimited
echo "kernel-vm: $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"
: > $X/started
source $X/env
rc=0
"${cmd[@]}" 2>&1 | tee $X/output
rc=${PIPESTATUS[0]}
echo "$rc" > $X/rc.tmp && mv $X/rc.tmp $X/rc
sync
echo "kernel-vm: command exited $rc"
sleep 0.5; echo o > /proc/sysrq-trigger
sleep 30
EOF
  chmod 755 "$XCHG/stage2"

  local append="console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init random.trust_cpu=on mitigations=off"
  # The guest clock. By default it is host time: on an idle 2-core host
  # TCG runs the guest 10-15x slower than the host and the tests' own waits
  # (a daemon ready within 20 s) still hold. On a busy host the guest gets
  # little CPU, its programs take 100x longer in host time, and those waits
  # fail (a load average of 19 made every data-path test time out). With
  # --icount the guest's time advances by executed instructions instead
  # (shift 0: 1 ns each, a 1 GHz, 1-IPC machine), so the guest sees an
  # ordinary machine however busy the host is; sleep=on keeps idle waits
  # (and 9p I/O) in host time. Costs: one host thread for all guest CPUs, and
  # one guest CPU by default: Debian's 6.1 and 5.10 hang bringing up a second
  # CPU under -icount ("x86: Booting SMP configuration:" and no further).
  local -a accel
  if [[ $ICOUNT == off ]]; then accel=(-accel tcg,thread=multi); SMP=${SMP:-2}
  else accel=(-accel tcg,thread=single -icount "shift=$ICOUNT,sleep=on,align=off"); SMP=${SMP:-1}
  fi
  log "booting $kver (qemu TCG, $SMP CPUs, $MEM MiB, icount $ICOUNT, timeout ${TIMEOUT}s): ${cmd[*]}"
  local start=$SECONDS timed_out=0 attempt
  for attempt in 1 2; do
    qemu-system-x86_64 -machine q35 "${accel[@]}" -cpu max -smp "$SMP" -m "$MEM" \
      -nic none -display none -vga none -monitor none -serial stdio -no-reboot \
      -kernel "$dir/vmlinuz" -initrd "$dir/initrd.gz" -append "$append" \
      -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
      -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
      -fsdev local,id=xchg,path="$XCHG",security_model=none,multidevs=remap \
      -device virtio-9p-pci,fsdev=xchg,mount_tag=xchg \
      -device virtio-rng-pci </dev/null &
    QEMU_PID=$!

    # Wait for qemu, or the deadline.
    while kill -0 "$QEMU_PID" 2>/dev/null; do
      if (( SECONDS - start >= TIMEOUT )); then timed_out=1; log "timeout after ${TIMEOUT}s: stopping the VM"; break; fi
      sleep 1 & wait $! || true
    done
    stop_qemu
    # A guest kernel that died before it ran the command failed the VM, not
    # the command: under TCG, 6.12 has oopsed at boot on an int3 left by its
    # own text patching (sched_clock_cpu, 1 boot in dozens). Boot it again.
    [[ $timed_out == 1 || -f $XCHG/started || $attempt == 2 ]] && break
    log "the guest never reached the command (its kernel failed while booting, see above): booting it again"
  done
  local rc=125
  if [[ $timed_out == 1 ]]; then rc=124
  elif [[ -f $XCHG/rc ]]; then rc=$(<"$XCHG/rc")
  else log "the VM ended without an exit code from the command"
  fi
  log "$kver: exit $rc after $((SECONDS - start)) s"
  cleanup
  return "$rc"
}

main "$@"
