/**
 * Feature probes run before anything is loaded. Each answers supported,
 * unsupported (with the first kernel that has it) or inconclusive (the probe
 * itself could not tell, e.g. without privilege), and names the fix.
 */
import fs from 'node:fs';
import os from 'node:os';
import { BPF, libbpfProbeBpfHelper, libbpfProbeBpfMapType, libbpfProbeBpfProgType, ProbeResult } from './libbpf';
import { isBpffs, DEFAULT_BPFFS } from './bpffs';
import { findCgroup2Root } from './cgroup';
import { atLeast, parseKernelVersion } from './version';
import { EnvironmentError, KernelFeatureError, PrivilegeError } from '../common/errors';

export type ProbeStatus = 'supported' | 'unsupported' | 'inconclusive';

export interface Probe {
  readonly name: string;
  readonly status: ProbeStatus;
  /** First kernel version with the feature. */
  readonly minKernel: string;
  readonly detail?: string;
}

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

/** Effective capabilities of this process, from /proc/self/status. */
export function effectiveCapabilities(statusText = fs.readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(statusText);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

const has = (caps: bigint, cap: number) => (caps & (1n << BigInt(cap))) !== 0n;

/**
 * Loading sock_ops/sk_msg needs CAP_BPF + CAP_NET_ADMIN; reading the socket
 * owner through BTF (bpf_skc_to_tcp_sock) also needs CAP_PERFMON, or the
 * verifier refuses the program. CAP_SYS_ADMIN covers all three.
 */
export function checkPrivileges(caps = effectiveCapabilities()): void {
  const admin = has(caps, CAP_SYS_ADMIN);
  const missing = [
    !(admin || has(caps, CAP_BPF)) && 'CAP_BPF',
    !(admin || has(caps, CAP_NET_ADMIN)) && 'CAP_NET_ADMIN',
    !(admin || has(caps, CAP_PERFMON)) && 'CAP_PERFMON',
  ].filter(Boolean);
  if (missing.length === 0) return;
  throw new PrivilegeError(`missing ${missing.join(', ')} (effective capabilities 0x${caps.toString(16)})`, {
    hint: 'run as root, or grant CAP_BPF CAP_NET_ADMIN CAP_PERFMON (see systemd/sockaccel.service)',
  });
}

interface KernelFeature {
  readonly name: string;
  readonly minKernel: string;
  readonly probe: () => ProbeResult;
}

const KERNEL_FEATURES: readonly KernelFeature[] = [
  { name: 'sock_ops programs', minKernel: '4.13', probe: () => libbpfProbeBpfProgType(BPF.PROG_TYPE_SOCK_OPS) },
  { name: 'sk_msg programs', minKernel: '4.17', probe: () => libbpfProbeBpfProgType(BPF.PROG_TYPE_SK_MSG) },
  { name: 'sockhash maps', minKernel: '4.18', probe: () => libbpfProbeBpfMapType(BPF.MAP_TYPE_SOCKHASH) },
  { name: 'socket-local storage', minKernel: '5.2', probe: () => libbpfProbeBpfMapType(BPF.MAP_TYPE_SK_STORAGE) },
  {
    name: 'bpf_get_netns_cookie in sock_ops',
    minKernel: '5.15',
    probe: () => libbpfProbeBpfHelper(BPF.PROG_TYPE_SOCK_OPS, BPF.FUNC_get_netns_cookie),
  },
  {
    name: 'bpf_get_netns_cookie in sk_msg',
    minKernel: '5.15',
    probe: () => libbpfProbeBpfHelper(BPF.PROG_TYPE_SK_MSG, BPF.FUNC_get_netns_cookie),
  },
  {
    name: 'bpf_sk_storage_get in sock_ops',
    minKernel: '5.3',
    probe: () => libbpfProbeBpfHelper(BPF.PROG_TYPE_SOCK_OPS, BPF.FUNC_sk_storage_get),
  },
];

export function probeKernelFeatures(): Probe[] {
  return KERNEL_FEATURES.map((f) => {
    const r = f.probe();
    return {
      name: f.name,
      minKernel: f.minKernel,
      status: r.status,
      ...(r.status === 'inconclusive' ? { detail: r.error.message } : {}),
    };
  });
}

/**
 * The verdict on the feature probes: KernelFeatureError (exit 69) naming the
 * first unsupported feature, every other one missing, and the kernel to
 * upgrade to; EnvironmentError when a probe could not tell. "supported" is
 * not double-checked here (libbpf can say it falsely): the load stage's
 * verifier is the authority on that.
 */
export function requireKernelFeatures(probes: readonly Probe[], release: string): void {
  const unsupported = probes.filter((p) => p.status === 'unsupported');
  if (unsupported.length > 0) {
    const [first, ...others] = unsupported;
    const newest = unsupported.map((p) => p.minKernel).reduce((a, b) => (atLeast(parseKernelVersion(a)!, b) ? a : b));
    const also = others.length === 0 ? '' : `; also missing: ${others.map((p) => `${p.name} (${p.minKernel})`).join(', ')}`;
    throw new KernelFeatureError({
      feature: first.name,
      minKernel: first.minKernel,
      detail: `this kernel is ${release}${also}`,
      hint: `upgrade to Linux ${newest} or later; nothing was loaded or attached`,
    });
  }
  const inconclusive = probes.find((p) => p.status === 'inconclusive');
  if (inconclusive) {
    throw new EnvironmentError(`could not probe ${inconclusive.name}: ${inconclusive.detail}`, {
      hint: 'check that bpf() is not blocked (seccomp, LSM, unprivileged_bpf_disabled with missing capabilities)',
    });
  }
}

/**
 * Everything the daemon needs before it opens an object. Throws the error
 * class that names the fix; returns the probe table for the logs.
 */
export function probeEnvironment(): Probe[] {
  checkPrivileges();
  findCgroup2Root(); // throws EnvironmentError naming the fix
  const probes = probeKernelFeatures();
  requireKernelFeatures(probes, os.release());
  return probes;
}

export function bpffsProbe(): Probe {
  return { name: `bpffs at ${DEFAULT_BPFFS}`, minKernel: '4.4', status: isBpffs(DEFAULT_BPFFS) ? 'supported' : 'unsupported' };
}
