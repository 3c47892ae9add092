/**
 * Registers the listeners that already exist in the attached cgroup, so that
 * servers started before the daemon first started are accelerated without a
 * restart (TCP_LISTEN_CB only sees listen() calls made while the sock_ops
 * program is attached). The listeners_iter object's iter/tcp program does the
 * work in the kernel, straight into the pinned sa_listeners map (frozen for
 * syscalls; program writes are fine). Run once per start, after the sock_ops
 * program is attached; idempotent (see bpf/listeners_iter.bpf.c).
 */
import fs from 'node:fs';
import { DEFAULT_OBJECT_DIR, objectPath, withBpfObject } from '../kernel/bpf-object';
import { mapPinPath } from '../kernel/pins';

const SEED_PROGRAM = 'sockaccel_seed_listeners';

export interface SeedResult {
  /** Listening sockets found in the cgroup (or a descendant). */
  readonly found: number;
  /** Of those, how many were not registered yet. */
  readonly added: number;
}

/**
 * Walks the TCP sockets of this process's network namespace once. Throws if
 * it cannot (no such object, a kernel without iter/tcp or CO-RE targets,
 * missing CAP_PERFMON); the caller carries on without seeding.
 */
export function seedListeners(pinRoot: string, cgroupPath: string, objectDir: string = DEFAULT_OBJECT_DIR): SeedResult {
  return withBpfObject(objectPath(objectDir, 'listenersIter'), (obj) => {
    // The cgroup's id is its cgroupfs inode number (as the loader's link check uses).
    obj.rodata().u64('cgroup_id', BigInt(fs.statSync(cgroupPath).ino));
    obj.reusePinnedMap('sa_listeners', mapPinPath(pinRoot, 'sa_listeners'));
    obj.load();
    const out = obj.withIterator(SEED_PROGRAM, (run) => run()); // one byte per listener: 1 = newly registered
    return { found: out.length, added: out.filter((b) => b === 1).length };
  });
}
