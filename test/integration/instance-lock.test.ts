/*
 * src/daemon/instance-lock.ts against the real flock(2) (through the FFI, hence an
 * integration test). Each test uses its own lock directory.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { AlreadyRunningError } from '../../src/common/errors';
import { acquireInstanceLock, lockPath } from '../../src/daemon/instance-lock';
import { JsonLineProcess } from '../helpers/process';
import { waitFor } from '../helpers/wait-for';

function lockDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-lock-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('one holder per pin root; the second is told who holds it; release lets the next one in', (t) => {
  const dir = lockDir(t);
  const first = acquireInstanceLock('/sys/fs/bpf/a', 'run', dir);
  t.is(fs.readFileSync(first.path, 'utf8'), `${process.pid}\nrun\n/sys/fs/bpf/a\n`);
  const err = t.throws(() => acquireInstanceLock('/sys/fs/bpf/a/', 'purge', dir), { instanceOf: AlreadyRunningError });
  t.regex(err!.message, new RegExp(`^pid ${process.pid} \\(sockaccel run: .*node.*\\) already holds pin root /sys/fs/bpf/a/$`));
  t.is(err!.exitCode, 75);

  const other = acquireInstanceLock('/sys/fs/bpf/b', 'run', dir);
  t.not(other.path, first.path, 'another pin root has its own lock');
  other.release();

  first.release();
  first.release();
  t.false(fs.existsSync(first.path), 'released locks leave no file');
  acquireInstanceLock('/sys/fs/bpf/a', 'purge', dir).release();
});

test('a lock whose holder died (SIGKILL) is taken over', async (t) => {
  const dir = lockDir(t);
  const file = lockPath('/sys/fs/bpf/c', dir);
  // A holder that dies with the lock held: flock(1) exec'ing sleep (--no-fork),
  // so the one process holding it is the one SIGKILL ends.
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(file, '999999\nrun\n/sys/fs/bpf/c\n');
  const holder = new JsonLineProcess('flock holder', ['flock', '--exclusive', '--no-fork', file, 'sleep', '60'], {});
  t.teardown(() => holder.kill());
  // Held once the kernel lists holder's flock on the file's inode.
  const lockLine = new RegExp(`^\\d+: FLOCK +ADVISORY +WRITE +${holder.pid} +[0-9a-f]+:[0-9a-f]+:${fs.statSync(file).ino} `, 'm');
  await waitFor('flock(1) to hold the lock', () => lockLine.test(fs.readFileSync('/proc/locks', 'utf8')), { failIf: holder.exitedReport });
  t.throws(() => acquireInstanceLock('/sys/fs/bpf/c', 'run', dir), { instanceOf: AlreadyRunningError, message: /pid 999999 \(sockaccel run: command line unknown\)/ });
  await holder.kill();
  const lock = acquireInstanceLock('/sys/fs/bpf/c', 'run', dir);
  t.regex(fs.readFileSync(lock.path, 'utf8'), new RegExp(`^${process.pid}\\n`));
  lock.release();
});
