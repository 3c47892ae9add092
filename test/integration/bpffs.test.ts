/**
 * ensureBpffsMounted when several processes start together on a host without
 * bpffs (a fresh CI machine, the kernel VMs): exactly one bpffs ends up at
 * /sys/fs/bpf. Two stacked mounts would hide the first process's pins.
 * Runs in a private mount namespace: the host's mounts are never touched.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import test from 'ava';
import { privilegedTest } from '../helpers/privilege';

const privileged = privilegedTest(test);
const BPFFS_MODULE = path.resolve(__dirname, '..', '..', 'src', 'kernel', 'bpffs.js');

privileged('processes that find no bpffs and mount it together leave exactly one mount', async (t) => {
  const mountOne = `node -e 'process.stdout.write(String(require(process.argv[1]).ensureBpffsMounted()) + "\\n")' "${BPFFS_MODULE}"`;
  const script = [
    'while umount /sys/fs/bpf 2>/dev/null; do :; done',
    `for i in 1 2 3 4 5 6; do ${mountOne} & done; wait`,
    'echo "mounts $(grep -c " /sys/fs/bpf " /proc/self/mountinfo)"',
  ].join('\n');
  const out = await new Promise<string>((resolve, reject) =>
    execFile('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
  const lines = out.trim().split('\n');
  t.is(lines.filter((l) => l === 'true').length, 1, `one process mounted:\n${out}`);
  t.is(lines.filter((l) => l === 'false').length, 5, `the others found it mounted:\n${out}`);
  t.true(lines.includes('mounts 1'), `one bpffs at /sys/fs/bpf:\n${out}`);
});
