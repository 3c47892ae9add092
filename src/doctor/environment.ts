/**
 * What the daemon needs around the kernel: bpffs, cgroup v2 and its
 * privileges.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_BPFFS, isBpffs } from '../kernel/bpffs';
import { cgroup2MountsFrom, resolveCgroupPath } from '../kernel/cgroup';
import { effectiveCapabilities } from '../kernel/probes';
import { Check, fail, pass, unprivileged, warn } from './check';

/** Capability numbers from linux/capability.h. */
export const CAPS = {
  CAP_NET_ADMIN: 12,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_RESOURCE: 24,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
} as const;
export type CapName = keyof typeof CAPS;

/**
 * What `sockaccel run` needs, measured by test/integration/security.test.ts
 * (the daemon starts and redirects with exactly these):
 * CAP_BPF to load programs and create maps, CAP_NET_ADMIN for sock_ops,
 * sk_msg and the sockhash, CAP_PERFMON because the sock_ops program reads
 * the socket owner through bpf_skc_to_tcp_sock, a helper the kernel grants
 * only to perfmon-capable loaders. CAP_SYS_ADMIN stands in for all three.
 */
export const DAEMON_CAPS: readonly CapName[] = ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON'];

export function hasCap(caps: bigint, cap: CapName): boolean {
  return (caps & (1n << BigInt(CAPS[cap]))) !== 0n;
}

export function missingDaemonCaps(caps: bigint): CapName[] {
  if (hasCap(caps, 'CAP_SYS_ADMIN')) return [];
  return DAEMON_CAPS.filter((c) => !hasCap(caps, c));
}

export function privilegeCheck(caps = effectiveCapabilities()): Check {
  const title = 'privileges';
  const missing = missingDaemonCaps(caps);
  const have = `effective capabilities 0x${caps.toString(16)}, uid ${process.getuid?.()}`;
  if (missing.length > 0) {
    return unprivileged('env.privileges', title, `missing ${missing.join(', ')} (${have})`, `run as root, or grant ${DAEMON_CAPS.join(' ')} (systemd/sockaccel.service does)`);
  }
  return pass('env.privileges', title, `${DAEMON_CAPS.join(', ')} present (${have})`);
}

export function bpffsCheck(pinRoot: string, caps = effectiveCapabilities()): Check {
  const title = 'bpffs';
  const parent = path.dirname(pinRoot);
  if (!isBpffs(DEFAULT_BPFFS)) {
    const fix = `mount -t bpf bpf ${DEFAULT_BPFFS} (systemd: sys-fs-bpf.mount)`;
    return hasCap(caps, 'CAP_SYS_ADMIN')
      ? warn('env.bpffs', title, `not mounted at ${DEFAULT_BPFFS}; the daemon will mount it (it has CAP_SYS_ADMIN)`, fix)
      : fail('env.bpffs', title, `not mounted at ${DEFAULT_BPFFS}, and mounting needs CAP_SYS_ADMIN`, fix);
  }
  const dir = fs.existsSync(pinRoot) ? pinRoot : parent;
  if (!isBpffs(dir)) {
    return fail('env.bpffs', title, `pinRoot ${pinRoot} is not on a bpf filesystem`, `choose a pinRoot under ${DEFAULT_BPFFS}`);
  }
  return pass('env.bpffs', title, `mounted at ${DEFAULT_BPFFS}; pinRoot ${pinRoot} is on it`);
}

export function cgroupCheck(configured: string, mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')): Check {
  const title = 'cgroup v2';
  const mounts = cgroup2MountsFrom(mountinfo);
  if (mounts.length === 0) {
    return fail('env.cgroup', title, 'no cgroup2 mount in /proc/self/mountinfo', 'boot with systemd.unified_cgroup_hierarchy=1, or mount -t cgroup2 none /sys/fs/cgroup/unified');
  }
  // Hybrid hosts keep v1 controllers at /sys/fs/cgroup and v2 elsewhere:
  // worth saying, since tools that assume /sys/fs/cgroup look in the wrong place.
  const hybrid = / - cgroup /.test(mountinfo) ? ' (hybrid mode: cgroup v1 controllers are mounted too)' : '';
  let target: string;
  try {
    target = resolveCgroupPath(configured);
  } catch (err) {
    return fail('env.cgroup', title, `cgroup2 at ${mounts[0]}${hybrid}, but ${(err as Error).message}`, 'set cgroupPath to a directory under the cgroup2 mount, or leave it empty for the root');
  }
  return pass('env.cgroup', title, `cgroup2 at ${mounts[0]}${hybrid}; programs attach to ${target}`);
}
