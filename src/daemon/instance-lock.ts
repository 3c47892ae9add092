/**
 * One sockaccel process per pin root: the daemon takes this lock before it
 * loads or touches anything, `sockaccel purge` takes it before it removes
 * anything, so a second one fails without disturbing the first one's data path.
 *
 * The lock is flock(2) on /run/sockaccel/<hash of the pin root>.lock, not an
 * O_EXCL pid file: the kernel drops a flock when its holder dies, SIGKILL and
 * watchdog aborts included, so a stale lock is simply taken over by the next
 * process and there is no pid-reuse guess to make. The file holds the
 * holder's pid and role, only to name it in the error.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LibbpfError } from '../kernel/libc';
import { bindLibrary, getErrno } from '../kernel/native';
import { isPermissionError } from '../kernel/pin-access';
import { AlreadyRunningError, PrivilegeError } from '../common/errors';

/** systemd's RuntimeDirectory=sockaccel; writable under ProtectSystem=strict. */
export const LOCK_DIR = '/run/sockaccel';

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;
const EINTR = 4;

const libc = bindLibrary('libc.so.6', { flock: ['int', ['int', 'int']] } as const);

/** true if locked, false if another open file description holds it. */
function tryFlock(fd: number, file: string): boolean {
  for (;;) {
    if (libc().flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
    const errno = getErrno();
    if (errno === EWOULDBLOCK) return false;
    if (errno !== EINTR) throw new LibbpfError('flock', errno, file);
  }
}

/** A file of the daemon that uses `pinRoot`, in the runtime directory: `<digest of the pin root><suffix>`. */
export function runtimePath(pinRoot: string, suffix: string, dir: string = LOCK_DIR): string {
  const digest = crypto.createHash('sha256').update(path.resolve(pinRoot)).digest('hex').slice(0, 16);
  return path.join(dir, `${digest}${suffix}`);
}

export function lockPath(pinRoot: string, dir: string = LOCK_DIR): string {
  return runtimePath(pinRoot, '.lock', dir);
}

export interface InstanceLock {
  readonly path: string;
  /** Unlinks and unlocks; idempotent. */
  release(): void;
}

/** Who holds the lock, for the error: "pid 42 (sockaccel run: node .../cli.js run)". */
function describeHolder(file: string): string {
  let pid: number;
  let role: string;
  try {
    const [pidText = '', roleText = '?'] = fs.readFileSync(file, 'utf8').split('\n');
    pid = Number(pidText);
    role = roleText;
  } catch {
    return 'another process';
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return 'another process';
  let cmdline = 'command line unknown';
  try {
    cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    // it may have exited a moment ago; the lock said it was there
  }
  return `pid ${pid} (sockaccel ${role}: ${cmdline})`;
}

/**
 * Takes the lock for `pinRoot` or throws AlreadyRunningError naming the
 * holder. `role` ("run", "purge") is recorded for that message.
 */
export function acquireInstanceLock(pinRoot: string, role: string, dir: string = LOCK_DIR): InstanceLock {
  const file = lockPath(pinRoot, dir);
  for (;;) {
    const fd = openLockFile(dir, file, role);
    let held = false;
    try {
      if (!tryFlock(fd, file)) {
        throw new AlreadyRunningError(`${describeHolder(file)} already holds pin root ${pinRoot}`, {
          hint: 'stop it first (systemctl stop sockaccel), or give this process another --pin-root',
        });
      }
      // The holder before us may have unlinked the file between our open and
      // our flock: then we locked an orphan nobody else sees, and must retry.
      if (fs.fstatSync(fd).ino === statIno(file)) {
        fs.ftruncateSync(fd, 0);
        fs.writeSync(fd, `${process.pid}\n${role}\n${path.resolve(pinRoot)}\n`, 0);
        held = true;
      }
    } finally {
      if (!held) fs.closeSync(fd);
    }
    if (held) return heldLock(file, fd);
  }
}

/** Opens (creating) the lock file; a PrivilegeError when this process may not, which is anyone but root. */
function openLockFile(dir: string, file: string, role: string): number {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    // No O_TRUNC: the holder's pid must survive until we know we hold the lock.
    return fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  } catch (err) {
    if (!isPermissionError(err)) throw err;
    throw new PrivilegeError(`sockaccel ${role} needs root: it cannot take its instance lock ${file} (${(err as NodeJS.ErrnoException).code})`, {
      cause: err,
      hint: `run it as root (sudo); the lock lives in ${dir}, which only root may write`,
    });
  }
}

function heldLock(file: string, fd: number): InstanceLock {
  let held = true;
  return {
    path: file,
    release() {
      if (!held) return;
      held = false;
      // Unlink while still holding the lock, then unlock by closing.
      fs.rmSync(file, { force: true });
      fs.closeSync(fd);
    },
  };
}

function statIno(file: string): number | undefined {
  try {
    return fs.statSync(file).ino;
  } catch {
    return undefined;
  }
}
