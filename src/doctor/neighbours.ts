/**
 * Other BPF programs that touch the same sockets: a CNI (Cilium's sockops
 * acceleration), a service mesh or an observability agent may run sock_ops
 * programs on the cgroups above ours, and sk_msg programs on their own
 * sockmaps. A socket carries at most one msg program: when two accelerators
 * select the same socket, the second insert fails with EBUSY (sockaccel
 * counts it as insert_fail_other) and that connection is not ours.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as bpf from '../kernel/libbpf';
import { forEachLoadedProgram } from '../kernel/programs';
import { LibbpfError } from '../kernel/libbpf';
import { close } from '../kernel/libc';
import { PROBE_PROGRAM } from '../kernel/fionread';
import { findCgroup2Root } from '../kernel/cgroup';
import { Check, pass, warn } from './check';

/** BPF_F_QUERY_EFFECTIVE: what runs for the cgroup's sockets, inherited ones included. */
const BPF_F_QUERY_EFFECTIVE = 1;

export interface ProgramRef {
  readonly id: number;
  readonly name: string;
}

export interface AttachedProgram extends ProgramRef {
  /** The highest cgroup on the path where the program is in effect: where it is attached. */
  readonly cgroup: string;
}

/** The cgroup and its ancestors up to the cgroup2 root, nearest first. */
export function cgroupPath(target: string, root: string): string[] {
  const chain = [target];
  for (let dir = target; dir !== root && dir.startsWith(`${root}/`); ) {
    dir = path.dirname(dir);
    chain.push(dir);
  }
  return chain;
}

/** The program's name, or null if it was unloaded meanwhile. */
function programName(id: number): string | null {
  let fd: number;
  try {
    fd = bpf.bpfProgGetFdById(id);
  } catch (err) {
    if (err instanceof LibbpfError && err.errno === 2) return null;
    throw err;
  }
  try {
    return bpf.progInfo(fd).name;
  } finally {
    close(fd);
  }
}

/** sock_ops programs in effect on `target`, each with the cgroup it comes from. */
export function effectiveSockops(target: string, root = findCgroup2Root()): AttachedProgram[] {
  const origin = new Map<number, string>();
  for (const cgroup of cgroupPath(target, root)) {
    const fd = fs.openSync(cgroup, 'r');
    try {
      // Walking up, the last cgroup where a program is still effective is
      // the one it is attached to.
      for (const id of bpf.bpfProgQuery(fd, bpf.BPF.CGROUP_SOCK_OPS, BPF_F_QUERY_EFFECTIVE)) origin.set(id, cgroup);
    } finally {
      fs.closeSync(fd);
    }
  }
  return [...origin].flatMap(([id, cgroup]) => {
    const name = programName(id);
    return name === null ? [] : [{ id, name, cgroup }];
  });
}

/** Every loaded sk_msg program (whatever map it is attached to). */
export function loadedSkMsgPrograms(): ProgramRef[] {
  const found: ProgramRef[] = [];
  forEachLoadedProgram(bpf.BPF.PROG_TYPE_SK_MSG, (id, _fd, info) => found.push({ id, name: info.name }));
  return found;
}

const describe = (p: ProgramRef & { cgroup?: string }) => `${p.name || '(unnamed)'} (id ${p.id}${p.cgroup ? `, attached at ${p.cgroup}` : ''})`;

/** `ours`: ids of the programs this sockaccel's links run (empty when it is not running). */
export function sockopsNeighboursCheck(attached: readonly AttachedProgram[], ours: ReadonlySet<number>): Check {
  const id = 'programs.sockops';
  const title = 'other sock_ops programs on the cgroup path';
  const others = attached.filter((p) => !ours.has(p.id));
  if (others.length === 0) return pass(id, title, 'none besides sockaccel\'s own');
  const twins = others.filter((p) => p.name.startsWith('sockaccel_'));
  const fix = twins.length > 0
    ? 'another sockaccel instance covers these sockets too: run one daemon per node, or give them disjoint cgroupPaths'
    : 'if one of them inserts sockets into a sockmap with its own msg program (e.g. Cilium sockops acceleration), connections both select go to whichever inserts first; disable one accelerator (Cilium: --sockops-enable=false) or choose a cgroupPath where they do not overlap';
  return warn(id, title, others.map(describe).join('; '), fix);
}

export function skMsgNeighboursCheck(loaded: readonly ProgramRef[], ours: ReadonlySet<number>): Check {
  const id = 'programs.sk_msg';
  const title = 'other sk_msg programs loaded';
  // The FIONREAD probes' program (doctor's own, or a starting daemon's) can
  // outlive its probe briefly: the sockets' psocks release it after an RCU
  // grace period. (Kernel program names stop at 15 characters.)
  const others = loaded.filter((p) => !ours.has(p.id) && p.name !== PROBE_PROGRAM.slice(0, 15));
  if (others.length === 0) return pass(id, title, 'none besides sockaccel\'s own');
  // Kernel program names stop at 15 characters: "sockaccel_to_se".
  const twins = others.some((p) => p.name.startsWith('sockaccel_'));
  return warn(
    id,
    title,
    `${others.map(describe).join('; ')}: ${twins ? 'another sockaccel instance (a second pin root) is loaded' : 'another sockmap user is active on this node'}`,
    'a socket carries only one msg program; if their sock_ops program (see above) selects the same sockets as sockaccel, the second insert fails with EBUSY (insert_fail_other). Keep their scopes disjoint',
  );
}
