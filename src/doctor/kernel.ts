/**
 * Is this kernel able to run sockaccel? The version, each feature with the
 * first kernel that has it, and the authoritative answer: whether our own
 * programs pass the verifier here.
 */
import os from 'node:os';
import { BpfObject, DEFAULT_OBJECT_DIR, OBJECT_FILES, objectPath, type ObjectRole } from '../kernel/bpf-object';
import { probeKernelFeatures, type Probe } from '../kernel/probes';
import { atLeast, parseKernelVersion, type KernelVersion } from '../kernel/version';
import { VerifierError } from '../common/errors';
import { Check, fail, pass, warn } from './check';

/**
 * What the data path relies on that no probe can ask the kernel about
 * (context fields, callbacks, attach modes), with the first kernel that has
 * it. `optional`: sockaccel works without it, in a weaker mode.
 */
const VERSION_FEATURES: readonly { name: string; minKernel: string; optional?: string }[] = [
  { name: 'TCP_LISTEN_CB in sock_ops', minKernel: '4.19' },
  { name: 'skops->sk', minKernel: '5.3' },
  { name: 'cgroup bpf_link and link pinning', minKernel: '5.7' },
  { name: 'CAP_BPF', minKernel: '5.8' },
  { name: 'msg->sk in sk_msg', minKernel: '5.8' },
  { name: 'bpf_skc_to_tcp_sock (socket owner for mesh rules)', minKernel: '5.9' },
  { name: 'PARSE_ALL_HDR_OPT_CB (unpaired clients leave the map on plain data)', minKernel: '5.10' },
  { name: 'BPF atomic compare-and-swap (pairing state)', minKernel: '5.12' },
  {
    name: 'sockmap bpf_link',
    minKernel: '6.10',
    optional: 'the sk_msg programs are attached to the maps directly and stay there for the maps\' lifetime; an upgrade cannot swap them',
  },
];

function featureCheck(probe: Probe, kernel: KernelVersion | null): Check {
  const id = `kernel.feature.${probe.name.replace(/\W+/g, '_')}`;
  const title = `${probe.name} (Linux ${probe.minKernel}+)`;
  if (probe.status === 'unsupported') {
    return fail(id, title, 'not supported by this kernel', `upgrade to Linux ${probe.minKernel} or later`);
  }
  if (probe.status === 'inconclusive') {
    return fail(id, title, `could not probe: ${probe.detail}`, 'run doctor as root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON); check that no seccomp/LSM policy blocks bpf()');
  }
  // libbpf's helper probe can report a forbidden helper as supported (only
  // "unsupported" is trustworthy), so a "supported" on a kernel that is too
  // old is a contradiction worth flagging rather than a pass.
  if (kernel && !atLeast(kernel, probe.minKernel)) {
    return warn(id, title, `the probe says supported, but this kernel predates ${probe.minKernel}`, 'trust the program load check below; it is authoritative');
  }
  return pass(id, title, 'supported');
}

export function kernelChecks(release = os.release()): Check[] {
  const kernel = parseKernelVersion(release);
  const probes = probeKernelFeatures();
  const required = [...probes.map((p) => p.minKernel), ...VERSION_FEATURES.filter((f) => !f.optional).map((f) => f.minKernel)];
  const minimum = required.reduce((a, b) => (atLeast(parseKernelVersion(a)!, b) ? a : b));
  const checks: Check[] = [];
  if (!kernel) {
    checks.push(fail('kernel.version', 'kernel version', `cannot parse "${release}"`, `make sure the kernel is Linux ${minimum} or later`));
  } else if (!atLeast(kernel, minimum)) {
    checks.push(fail('kernel.version', 'kernel version', `${release} (sockaccel needs ${minimum}+)`, `upgrade to Linux ${minimum} or later`));
  } else {
    checks.push(pass('kernel.version', 'kernel version', `${release} (sockaccel needs ${minimum}+)`));
  }
  checks.push(...probes.map((p) => featureCheck(p, kernel)));
  for (const f of VERSION_FEATURES) {
    const id = `kernel.feature.${f.name.replace(/\W+/g, '_')}`;
    const title = `${f.name} (Linux ${f.minKernel}+)`;
    if (!kernel || atLeast(kernel, f.minKernel)) checks.push(pass(id, title, 'present by kernel version'));
    else if (f.optional) checks.push(warn(id, title, `missing: ${f.optional}`, `upgrade to Linux ${f.minKernel} or later for it`));
    else checks.push(fail(id, title, 'missing on this kernel', `upgrade to Linux ${f.minKernel} or later`));
  }
  return checks;
}

/**
 * Loads each object into the kernel (maps shrunk to a few entries) and
 * closes it again: nothing is pinned or attached, so a running daemon is
 * unaffected. A pass here is the real proof that the verifier of this
 * kernel, with this process's privileges, accepts the programs.
 */
export function programLoadCheck(objectDir: string = DEFAULT_OBJECT_DIR): Check {
  const id = 'kernel.programs_load';
  const title = 'BPF programs pass the verifier';
  const loaded: string[] = [];
  for (const role of Object.keys(OBJECT_FILES) as ObjectRole[]) {
    const name = OBJECT_FILES[role];
    const file = objectPath(objectDir, role);
    let obj: BpfObject;
    try {
      obj = BpfObject.open(file);
    } catch (err) {
      return fail(id, title, `cannot open ${file}: ${(err as Error).message}`, 'build the objects (bash scripts/setup.sh) or fix objectDir');
    }
    try {
      for (const map of obj.mapNames()) if (obj.mapShape(map).maxEntries > 16) obj.setMaxEntries(map, 16);
      obj.load();
      loaded.push(...obj.programNames());
    } catch (err) {
      if (err instanceof VerifierError) {
        const lines = err.relevantLines(6);
        return fail(id, title, `the verifier rejected ${err.program} in ${name}:\n         ${lines.join('\n         ')}`, 'use a kernel the programs support, or objects built for this kernel');
      }
      return fail(id, title, `loading ${name} failed: ${(err as Error).message}`, 'run doctor as root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)');
    } finally {
      obj.close();
    }
  }
  return pass(id, title, `${loaded.join(', ')} loaded from ${objectDir}`);
}
