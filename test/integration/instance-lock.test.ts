/*
 * src/daemon/instance-lock.ts against the real flock(2) (through the FFI, hence an
 * integration test). Each test uses its own lock directory.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { AlreadyRunningError } from '../../src/common/errors';
import { acquireInstanceLock, lockPath } from '../../src/daemon/instance-lock';

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
  const holder = spawn('flock', ['--exclusive', '--no-fork', file, 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(() => {
    holder.kill('SIGKILL');
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.throws(() => acquireInstanceLock('/sys/fs/bpf/c', 'run', dir), { instanceOf: AlreadyRunningError, message: /pid 999999 \(sockaccel run: command line unknown\)/ });
  holder.kill('SIGKILL');
  await new Promise((resolve) => holder.once('exit', resolve));
  const lock = acquireInstanceLock('/sys/fs/bpf/c', 'run', dir);
  t.regex(fs.readFileSync(lock.path, 'utf8'), new RegExp(`^${process.pid}\\n`));
  lock.release();
});
