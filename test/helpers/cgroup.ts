import fs, { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import * as bpf from '../../src/kernel/libbpf';
import { dirname, join } from 'node:path';
import { runThenCleanUp } from './cleanup';
import { uniqueName } from './names';
import { killChildren } from './process';
import { waitFor } from './wait-for';

export const SCRATCH_CGROUP_PREFIX = 'sockaccel-test-';

/** Undo `\ooo` octal escapes that mountinfo uses for spaces and the like in paths. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Mount point of the cgroup v2 hierarchy. Read from mountinfo, because hybrid
 * systems mount it at /sys/fs/cgroup/unified rather than /sys/fs/cgroup.
 * The filesystem type follows the " - " separator (field 9 when there are no
 * optional fields); a mount of the hierarchy's root ("/", field 4) is preferred.
 */
export function findCgroup2Root(mountinfo: string = readFileSync('/proc/self/mountinfo', 'utf8')): string {
  const mounts = mountinfo
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const fields = line.split(' ');
      const separator = fields.indexOf('-');
      return { root: fields[3], mountPoint: unescapeMountPath(fields[4] ?? ''), fsType: fields[separator + 1] };
    })
    .filter((mount) => mount.fsType === 'cgroup2');
  const best = mounts.find((mount) => mount.root === '/') ?? mounts[0];
  if (!best) throw new Error('no cgroup2 mount in /proc/self/mountinfo');
  return best.mountPoint;
}

/** Absolute directory of the cgroup v2 group that `pid` belongs to. */
export function cgroupOfPid(pid: number): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('0::'));
  if (line === undefined) throw new Error(`pid ${pid} has no cgroup v2 membership`);
  return join(findCgroup2Root(), line.slice(3));
}

/** Names of all scratch cgroups on the machine, whoever created them. */
export function listScratchCgroups(): string[] {
  return readdirSync(findCgroup2Root()).filter((name) => name.startsWith(SCRATCH_CGROUP_PREFIX));
}

export interface ScratchCgroup {
  name: string;
  /** Absolute directory, usable as `Placement.cgroup` and as a BPF attach target. */
  path: string;
  /** Moves an already running process in; it is moved back to its old cgroup on exit. */
  addPid(pid: number): void;
}

function readProcs(cgroupPath: string): number[] {
  return readFileSync(join(cgroupPath, 'cgroup.procs'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map(Number);
}

/** Moves `pid` into `cgroupPath`; false if the process is already gone. */
function movePid(pid: number, cgroupPath: string): boolean {
  try {
    writeFileSync(join(cgroupPath, 'cgroup.procs'), `${pid}\n`);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * Removes a scratch cgroup: kills the children we spawned into it, moves every
 * other process out (a process we did not start is never killed), then rmdir.
 * Our children are recognised by placement as well as by membership, so one
 * still between spawn and joining is killed rather than left to join late.
 * rmdir answers EBUSY until exited tasks are released, so the whole round is
 * retried briefly. Idempotent: a missing directory is success.
 */
export async function removeScratchCgroup(path: string, origins: ReadonlyMap<number, string> = new Map()): Promise<void> {
  let fatal: string | undefined;
  await waitFor(
    `scratch cgroup ${path} to be removed`,
    async () => {
      if (!existsSync(path)) return true;
      const members = readProcs(path);
      await killChildren((child) => child.placement.cgroup === path || members.includes(child.pid));
      for (const pid of readProcs(path)) movePid(pid, origins.get(pid) ?? dirname(path));
      try {
        rmdirSync(path);
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return true;
        const problem = `cannot remove scratch cgroup ${path} (${code}); procs: ${readProcs(path).join(' ') || 'none'}`;
        if (code !== 'EBUSY') fatal = problem;
        throw new Error(problem);
      }
    },
    { timeoutMs: 5_000, failIf: () => fatal },
  );
}

/**
 * Runs `fn` with a fresh, empty cgroup directly under the cgroup2 root and
 * removes it afterwards, whether `fn` succeeds or throws.
 */
export async function withScratchCgroup<T>(fn: (cgroup: ScratchCgroup) => Promise<T>): Promise<T> {
  const name = uniqueName(SCRATCH_CGROUP_PREFIX);
  const path = join(findCgroup2Root(), name);
  mkdirSync(path);
  const origins = new Map<number, string>();
  const cgroup: ScratchCgroup = {
    name,
    path,
    addPid(pid) {
      origins.set(pid, cgroupOfPid(pid));
      if (!movePid(pid, path)) throw new Error(`cannot move pid ${pid} into ${path}: no such process`);
    },
  };
  return runThenCleanUp(() => fn(cgroup), () => removeScratchCgroup(path, origins));
}

/** The ids of the sock_ops programs attached to `cgroup` (links and legacy attachments alike). */
export function sockopsProgramIds(cgroup: string): number[] {
  const fd = fs.openSync(cgroup, 'r');
  try {
    return bpf.bpfProgQuery(fd, bpf.BPF.CGROUP_SOCK_OPS);
  } finally {
    fs.closeSync(fd);
  }
}
