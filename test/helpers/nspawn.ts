/**
 * A real systemd to test the service under: `systemd-nspawn -b` boots the
 * Debian image of scripts/test-rootfs.sh. What it takes on this host (no
 * systemd as PID 1, cgroup v2 only at /sys/fs/cgroup/unified):
 *
 * - --register=no --keep-unit: no host systemd/machined to register with.
 *   nspawn then puts the container under its own cgroup, so it is started
 *   inside a scratch cgroup, which holds exactly the container: everything in
 *   it can be killed at once (cgroup.kill) and removed afterwards.
 * - SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: a pure cgroup v2 container, whose
 *   cgroup root is <scratch>/payload on the host. The daemon inside attaches
 *   to its root, so it accelerates the container's processes and whatever a
 *   test places below <scratch>/payload from the host.
 * - --capability=all: the container's root keeps CAP_BPF, CAP_NET_ADMIN,
 *   CAP_PERFMON, which systemd then narrows for the service as the unit says.
 * - --bind=<host bpffs dir>:/sys/fs/bpf: nspawn mounts /sys read-only and no
 *   bpffs; on a real host PID 1 mounts it. A fresh directory of the host's
 *   bpffs stands in, so the host (the test) can read the pins too.
 * - No --private-network: the container shares the host's network namespace,
 *   so host-side peers reach it over loopback.
 * - --volatile=overlay: writes go to a tmpfs over the cached image, which
 *   stays pristine for the next boot.
 * - The repository and the host's node binary are bind-mounted read-only.
 *
 * machinectl cannot reach the container (--register=no): commands run in it
 * with nsenter into its PID 1's namespaces.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanUpOnFailure } from './cleanup';
import { findCgroup2Root, SCRATCH_CGROUP_PREFIX } from './cgroup';
import { TEST_PIN_PREFIX } from './daemon';
import { uniqueName } from './names';

export const REPO = path.resolve(__dirname, '..', '..', '..');
const ROOTFS = process.env.SOCKACCEL_TEST_ROOTFS ?? '/var/cache/sockaccel-test/rootfs';
/** Where the repository appears inside the container. */
export const REPO_IN_CONTAINER = '/opt/sockaccel-src';
const NODE_IN_CONTAINER = '/usr/local/bin/node';
const CONTAINER_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Container {
  readonly name: string;
  /** Host pid of the container's PID 1 (systemd). */
  readonly initPid: number;
  /** Host path of the container's cgroup root: the daemon inside attaches here. */
  readonly cgroupRoot: string;
  /** Host directory mounted at /sys/fs/bpf inside. */
  readonly bpffsDir: string;
  /** Runs argv inside the container; resolves with its exit code and output, never rejects on a non-zero exit. */
  exec(argv: string[], timeoutMs?: number): Promise<ExecResult>;
  /** `sh -c script` inside; rejects with the output unless it exits 0. */
  sh(script: string, timeoutMs?: number): Promise<string>;
  /** `systemctl show` of the given properties, as a record. */
  show(unit: string, properties: string[]): Promise<Record<string, string>>;
  /** Boot messages and everything nspawn printed, for failure reports. */
  consoleTail(): string;
}

/** Why the container cannot be booted here, or undefined if it can. */
export function missingNspawn(): string | undefined {
  for (const tool of ['systemd-nspawn', 'nsenter', 'debootstrap']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed (bash scripts/setup.sh installs it)`;
    }
  }
  return undefined;
}

/** Builds the cached image if needed (about a minute once, instant after). */
function ensureRootfs(): void {
  execFileSync('bash', [path.join(REPO, 'scripts', 'test-rootfs.sh')], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
}

function runIn(initPid: number, argv: string[], timeoutMs: number): Promise<ExecResult> {
  // --kill-child: a timeout that kills nsenter takes the command with it.
  const nsenter = ['-t', String(initPid), '-a', '--kill-child', '--', ...argv];
  const env = { PATH: CONTAINER_PATH, LANG: 'C.UTF-8', SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0' };
  return new Promise((resolve) => {
    execFile('nsenter', nsenter, { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      const killed = err?.killed ? `\n[killed after ${timeoutMs} ms]` : '';
      resolve({ code, stdout, stderr: stderr + killed });
    });
  });
}

function childrenOf(pid: number): number[] {
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .flatMap((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' '))
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** rmdir depth-first; cgroups answer EBUSY for a moment after their last task exits. */
async function removeCgroupTree(dir: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const subdirs = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory());
      for (const sub of subdirs) await removeCgroupTree(path.join(dir, sub.name));
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) throw new Error(`cannot remove cgroup ${dir}: ${code}`);
    }
    await sleep(100);
  }
}

/**
 * Boots a container, runs `fn`, and always tears it down: poweroff, then
 * SIGKILL to everything left in its cgroup, then the cgroups and the bpffs
 * directory (every pin the daemon inside made) are removed.
 */
export async function withContainer<T>(fn: (container: Container) => Promise<T>): Promise<T> {
  const { container, shutdown } = await bootContainer();
  try {
    return await fn(container);
  } finally {
    await shutdown();
  }
}

export async function bootContainer(): Promise<{ container: Container; shutdown: () => Promise<void> }> {
  ensureRootfs();
  fs.mkdirSync('/run/systemd/nspawn/propagate', { recursive: true });
  const tag = uniqueName('');
  const name = `sa-${tag}`;
  const scratch = path.join(findCgroup2Root(), `${SCRATCH_CGROUP_PREFIX}${tag}-nspawn`);
  const bpffsDir = `${TEST_PIN_PREFIX}${tag}-nspawn`;
  fs.mkdirSync(scratch);
  fs.mkdirSync(bpffsDir);

  const args = [
    '-D', ROOTFS, '-M', name, '--register=no', '--keep-unit', '-b', '--volatile=overlay', '--capability=all',
    '--console=read-only', `--bind=${bpffsDir}:/sys/fs/bpf`, `--bind-ro=${REPO}:${REPO_IN_CONTAINER}`,
    `--bind-ro=${process.execPath}:${NODE_IN_CONTAINER}`,
  ];
  // Joins the scratch cgroup first, so the container and all it starts live there.
  const nspawn = spawn('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec systemd-nspawn "$@"', 'sh', scratch, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' },
  });
  let consoleText = '';
  const keep = (chunk: Buffer) => {
    consoleText = (consoleText + chunk.toString('utf8')).slice(-16_384);
  };
  nspawn.stdout!.on('data', keep);
  nspawn.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => nspawn.on('close', () => resolve()));
  let running = true;
  void exited.then(() => {
    running = false;
  });

  const shutdown = async (): Promise<void> => {
    if (running) {
      // SIGTERM asks nspawn for a clean poweroff of the container.
      nspawn.kill('SIGTERM');
      const off = await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]);
      if (!off) {
        fs.writeFileSync(path.join(scratch, 'cgroup.kill'), '1');
        nspawn.kill('SIGKILL');
        await exited;
      }
    }
    // Whatever a test placed in the container's cgroup from the host goes too.
    if (fs.existsSync(scratch)) fs.writeFileSync(path.join(scratch, 'cgroup.kill'), '1');
    await removeCgroupTree(scratch);
    fs.rmSync(bpffsDir, { recursive: true, force: true });
  };

  return cleanUpOnFailure(async () => {
    const describe = (problem: string) => `container ${name}: ${problem}\nconsole:\n${consoleText}`;
    const deadline = Date.now() + 30_000;
    let initPid: number | undefined;
    while (initPid === undefined) {
      if (!running) throw new Error(describe('systemd-nspawn exited during boot'));
      if (Date.now() > deadline) throw new Error(describe('no init process after 30 s'));
      initPid = childrenOf(nspawn.pid!)[0];
      if (initPid === undefined) await sleep(50);
    }
    const pid = initPid;
    const initCgroup = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'))!.slice(3);
    const container: Container = {
      name,
      initPid: pid,
      // PID 1 sits in <root>/init.scope
      cgroupRoot: path.join(findCgroup2Root(), path.dirname(initCgroup)),
      bpffsDir,
      exec: (argv, timeoutMs = 60_000) => runIn(pid, argv, timeoutMs),
      async sh(script, timeoutMs = 60_000) {
        const r = await runIn(pid, ['sh', '-c', script], timeoutMs);
        if (r.code !== 0) throw new Error(`in container: sh -c '${script}' exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
        return r.stdout;
      },
      async show(unit, properties) {
        const out = await container.sh(`systemctl show ${unit} ${properties.map((p) => `-p ${p}`).join(' ')}`);
        return Object.fromEntries(
          out
            .split('\n')
            .filter((line) => line.includes('='))
            .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
        );
      },
      consoleTail: () => consoleText,
    };
    // "degraded" is fine: units this image cannot run in a container may fail.
    const state = await container.exec(['systemctl', 'is-system-running', '--wait'], 30_000);
    if (!['running', 'degraded'].includes(state.stdout.trim())) {
      throw new Error(describe(`did not finish booting: ${state.stdout.trim()} ${state.stderr.trim()}`));
    }
    return { container, shutdown };
  }, shutdown);
}
