/**
 * Registers the listeners that already exist in the attached cgroup, so that
 * servers started before the daemon first started are accelerated without a
 * restart (TCP_LISTEN_CB only sees listen() calls made while the sock_ops
 * program is attached). The listeners_iter object's iter/tcp program does the
 * work in the kernel, straight into the pinned sa_listeners map (frozen for
 * syscalls; program writes are fine). Run once per start, after the sock_ops
 * program is attached; idempotent (see bpf/listeners_iter.bpf.c). A mesh
 * sidecar's listener also marks its namespace as meshed (sa_mesh_netns), so
 * `mesh: "auto"` finds the sidecars of pods that predate the daemon.
 *
 * On a Kubernetes node every pod's server lives in the pod's own network
 * namespace. The iterator therefore walks the open files of every process
 * (iter/task_file) rather than one namespace's TCP table (iter/tcp): it
 * reaches the listeners of every namespace without entering any, so it
 * needs neither setns nor CAP_SYS_ADMIN, which the service does not have.
 * It sees the processes of the daemon's PID namespace (on a node, all).
 */
import fs from 'node:fs';
import { DEFAULT_OBJECT_DIR, objectPath, withBpfObject } from '../kernel/bpf-object';
import { mapPinPath } from '../kernel/pins';

const SEED_PROGRAM = 'sockaccel_seed_listeners';

export interface SeedResult {
  /** Listening socket fds found in the cgroup (or a descendant). */
  readonly found: number;
  /** Of those, how many were not registered yet. */
  readonly added: number;
}

/**
 * Walks every process's open files once. Throws if
 * it cannot (no such object, a kernel without iter/tcp or CO-RE targets,
 * missing CAP_PERFMON); the caller carries on without seeding.
 */
export function seedListeners(pinRoot: string, cgroupPath: string, objectDir: string = DEFAULT_OBJECT_DIR): SeedResult {
  return withBpfObject(objectPath(objectDir, 'listenersIter'), (obj) => {
    // The cgroup's id is its cgroupfs inode number (as the loader's link check uses).
    obj.rodata().u64('cgroup_id', BigInt(fs.statSync(cgroupPath).ino));
    for (const name of ['sa_listeners', 'sa_mesh_presets', 'sa_mesh_netns'] as const) obj.reusePinnedMap(name, mapPinPath(pinRoot, name));
    obj.load();
    const out = obj.withIterator(SEED_PROGRAM, (run) => run()); // one byte per listener fd: 1 = newly registered
    return { found: out.length, added: out.filter((b) => b === 1).length };
  });
}
