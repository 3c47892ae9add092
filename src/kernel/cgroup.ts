/**
 * Where cgroup v2 lives on this host, and which cgroup to attach to.
 * cgroup v2 is not always at /sys/fs/cgroup (hybrid hosts mount it at
 * /sys/fs/cgroup/unified), so the mount table is the only reliable source.
 */
import fs from 'node:fs';
import path from 'node:path';
import { EnvironmentError } from '../common/errors';

const CGROUP2_SUPER_MAGIC = 0x63677270;

/** Mount points of every cgroup2 filesystem in a /proc/<pid>/mountinfo text. */
export function cgroup2MountsFrom(mountinfo: string): string[] {
  const mounts: string[] = [];
  for (const line of mountinfo.split('\n')) {
    // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> <source> <super opts>"
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (fstype !== 'cgroup2') continue;
    const mountPoint = line.slice(0, sep).split(' ')[4];
    if (mountPoint) mounts.push(unescapeMountPath(mountPoint));
  }
  return mounts;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function findCgroup2Root(mountinfoPath = '/proc/self/mountinfo'): string {
  const mounts = cgroup2MountsFrom(fs.readFileSync(mountinfoPath, 'utf8'));
  if (mounts.length === 0) {
    throw new EnvironmentError('cgroup v2 is not mounted (no cgroup2 entry in /proc/self/mountinfo)', {
      hint: 'mount it, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`, or boot with systemd.unified_cgroup_hierarchy=1',
    });
  }
  return mounts[0];
}

export function isCgroup2Dir(dir: string): boolean {
  try {
    return fs.statfsSync(dir).type === CGROUP2_SUPER_MAGIC && fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** The configured cgroup, or the cgroup v2 root when none is configured. */
export function resolveCgroupPath(configured: string): string {
  const dir = configured === '' ? findCgroup2Root() : path.resolve(configured);
  if (!isCgroup2Dir(dir)) {
    throw new EnvironmentError(`cgroupPath ${dir} is not a cgroup v2 directory`, {
      hint: `use a directory under the cgroup2 mount (${safeRoot()}), or leave cgroupPath empty for its root`,
    });
  }
  return dir;
}

function safeRoot(): string {
  try {
    return findCgroup2Root();
  } catch {
    return 'none found';
  }
}
