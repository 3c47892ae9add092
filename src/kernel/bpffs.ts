/**
 * The BPF filesystem that holds our pins. It is not mounted at boot on every
 * host; the daemon mounts it at /sys/fs/bpf when nothing is there.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { EnvironmentError } from '../common/errors';

export const BPF_FS_MAGIC = 0xcafe4a11;
export const DEFAULT_BPFFS = '/sys/fs/bpf';

export function isBpffs(dir: string): boolean {
  try {
    return fs.statfsSync(dir).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/** Serialises the check-and-mount of processes starting together (tests, a bench beside a daemon). */
const MOUNT_LOCK = '/run/sockaccel/bpffs-mount.lock';

/**
 * Mounts bpffs at /sys/fs/bpf if it is not there yet. Returns true if it mounted.
 * Two processes that both found nothing and both mounted would stack two
 * bpffs instances, and the first one's pins would vanish under the second:
 * the check is repeated and the mount made under a lock (flock(1)).
 */
export function ensureBpffsMounted(mountPoint = DEFAULT_BPFFS): boolean {
  if (isBpffs(mountPoint)) return false;
  try {
    fs.mkdirSync(mountPoint, { recursive: true });
    fs.mkdirSync(path.dirname(MOUNT_LOCK), { recursive: true });
    const script = '[ "$(stat -f -c %t "$1")" = cafe4a11 ] && exit 3; exec mount -t bpf bpf "$1"';
    execFileSync('flock', [MOUNT_LOCK, 'sh', '-c', script, 'sh', mountPoint], { stdio: 'pipe' });
  } catch (err) {
    // 3: someone else mounted it while we waited for the lock.
    if ((err as { status?: number }).status === 3 && isBpffs(mountPoint)) return false;
    throw new EnvironmentError(`bpffs is not mounted at ${mountPoint} and mounting it failed: ${(err as Error).message.trim()}`, {
      hint: `mount it yourself: mount -t bpf bpf ${mountPoint} (systemd: enable sys-fs-bpf.mount)`,
    });
  }
  return true;
}

/**
 * Creates the pin directory, root-only (0700): whoever can open a writable
 * pin can read our maps, so the directory is the access boundary.
 */
export function preparePinRoot(pinRoot: string): void {
  const parent = path.dirname(pinRoot);
  if (!isBpffs(fs.existsSync(pinRoot) ? pinRoot : parent)) {
    throw new EnvironmentError(`pinRoot ${pinRoot} is not on a bpf filesystem`, {
      hint: `choose a directory under ${DEFAULT_BPFFS} (mounted with: mount -t bpf bpf ${DEFAULT_BPFFS})`,
    });
  }
  fs.mkdirSync(pinRoot, { recursive: true, mode: 0o700 });
  fs.chmodSync(pinRoot, 0o700);
}
