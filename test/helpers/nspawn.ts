/**
 * A real systemd to test the service under: `systemd-nspawn -b` boots the
 * Debian image of scripts/test-rootfs.sh. What it takes on this host (no
 * systemd as PID 1, cgroup v2 only at /sys/fs/cgroup/unified):
 *
 * - --register=no --keep-unit: no host systemd/machined to register with.
 *   nspawn then puts the container below its own cgroup, so it is started in
 *   a scratch cgroup (<scratch>/nspawn; commands run in <scratch>/exec): all
 *   the test started can be killed at once (cgroup.kill) and removed.
 * - SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: a pure cgroup v2 container, whose
 *   cgroup root is <scratch>/nspawn/payload on the host. The daemon inside attaches
 *   to its root, so it accelerates the container's processes and whatever a
 *   test places below it from the host.
 * - --capability=all: the container's root keeps CAP_BPF, CAP_NET_ADMIN,
 *   CAP_PERFMON, which systemd then narrows for the service as the unit says.
 * - --system-call-filter=bpf: nspawn's own seccomp filter blocks bpf() for
 *   everything the container's systemd starts (the daemon's first probe then
 *   reads as "the kernel does not support sock_ops programs").
 * - --bind=<host bpffs dir>:/sys/fs/bpf: nspawn mounts /sys read-only and no
 *   bpffs; on a real host PID 1 mounts it. A fresh directory of the host's
 *   bpffs stands in, so the host (the test) can read the pins too.
 * - No --private-network: the container shares the host's network namespace,
 *   so host-side peers reach it over loopback; or, with `netns`, a network
 *   namespace the test built (a simulated node).
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
import { cleanUpOnFailure } from './cleanup';
import { findCgroup2Root, SCRATCH_CGROUP_PREFIX } from './cgroup';
import { TEST_PIN_PREFIX } from './daemon';
import { uniqueName } from './names';
import { waitFor } from './wait-for';

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
function ensureRootfs(): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('bash', [path.join(REPO, 'scripts', 'test-rootfs.sh')], { timeout: 300_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`scripts/test-rootfs.sh failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

/**
 * Runs argv in the container's namespaces, from a leaf of its scratch cgroup:
 * nsenter does not move a process into the container's cgroup, and this way
 * the teardown's cgroup.kill also ends a command that outlived its timeout.
 */
function runIn(initPid: number, execCgroup: string, argv: string[], timeoutMs: number): Promise<ExecResult> {
  const command = ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', execCgroup, 'nsenter', '-t', String(initPid), '-a', '--', ...argv];
  const env = { PATH: CONTAINER_PATH, LANG: 'C.UTF-8', SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0' };
  return new Promise((resolve) => {
    execFile('sh', command, { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
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

function commOf(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** rmdir depth-first; cgroups answer EBUSY for a moment after their last task exits. */
async function removeCgroupTree(dir: string): Promise<void> {
  let fatal: string | undefined;
  const rmdirTree = (d: string): void => {
    for (const sub of fs.readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory())) rmdirTree(path.join(d, sub.name));
    fs.rmdirSync(d);
  };
  await waitFor(
    `cgroup ${dir} to be removed`,
    () => {
      try {
        rmdirTree(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return true;
        if (code !== 'EBUSY') fatal = `cannot remove cgroup ${dir}: ${code}`;
        throw err;
      }
      return true;
    },
    { timeoutMs: 10_000, intervalMs: 100, failIf: () => fatal },
  );
}

/**
 * Boots a container. `shutdown` tears it down whatever state it is in:
 * poweroff, then SIGKILL to everything left in its scratch cgroup, then the
 * cgroups and the bpffs directory (every pin the daemon inside made) go.
 */
export interface BootOptions {
  /**
   * A named network namespace (/run/netns/<name>) for the container, as a
   * node's: the daemon inside then sees its interfaces and routes. Default:
   * the host's namespace.
   */
  readonly netns?: string;
}

export async function bootContainer(opts: BootOptions = {}): Promise<{ container: Container; shutdown: () => Promise<void> }> {
  await ensureRootfs();
  fs.mkdirSync('/run/systemd/nspawn/propagate', { recursive: true });
  const tag = uniqueName('');
  const name = `sa-${tag}`;
  const scratch = path.join(findCgroup2Root(), `${SCRATCH_CGROUP_PREFIX}${tag}-nspawn`);
  const bpffsDir = `${TEST_PIN_PREFIX}${tag}-nspawn`;
  const execCgroup = path.join(scratch, 'exec');
  fs.mkdirSync(scratch);
  fs.mkdirSync(execCgroup);
  fs.mkdirSync(path.join(scratch, 'nspawn'));
  fs.mkdirSync(bpffsDir);

  const args = [
    '-D', ROOTFS, '-M', name, '--register=no', '--keep-unit', '-b', '--volatile=overlay', '--capability=all',
    '--system-call-filter=bpf', `--bind=${bpffsDir}:/sys/fs/bpf`, `--bind-ro=${REPO}:${REPO_IN_CONTAINER}`,
    `--bind-ro=${process.execPath}:${NODE_IN_CONTAINER}`,
    ...(opts.netns ? [`--network-namespace-path=/run/netns/${opts.netns}`] : []),
  ];
  // Joins the scratch cgroup first, so the container and all it starts live there.
  const nspawn = spawn('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec systemd-nspawn "$@"', 'sh', path.join(scratch, 'nspawn'), ...args], {
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
      const off = await waitFor('the container to power off', () => !running, { timeoutMs: 10_000 }).then(() => true, () => false);
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
    const booting = { timeoutMs: 30_000, failIf: () => !running && 'systemd-nspawn exited during boot' };
    const described = (err: Error): never => {
      throw new Error(describe(err.message));
    };
    // The first child is nspawn's own until it execs the container's systemd.
    const pid = await waitFor('the container\'s init process', () => childrenOf(nspawn.pid!).find((p) => commOf(p) === 'systemd'), booting).catch(described);
    // Known once booted: PID 1 moves itself from the root into <root>/init.scope.
    let cgroupRoot = '';
    const container: Container = {
      name,
      initPid: pid,
      get cgroupRoot() {
        return cgroupRoot;
      },
      bpffsDir,
      exec: (argv, timeoutMs = 60_000) => runIn(pid, execCgroup, argv, timeoutMs),
      async sh(script, timeoutMs = 60_000) {
        const r = await runIn(pid, execCgroup, ['sh', '-c', script], timeoutMs);
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
    // Until PID 1 listens, systemctl says "offline" or cannot connect at all.
    // "degraded" is fine: units this image cannot run in a container may fail.
    await waitFor('the container to finish booting', async () => {
      const state = await container.exec(['systemctl', 'is-system-running', '--wait'], 30_000);
      const word = state.stdout.trim();
      if (['running', 'degraded'].includes(word)) return true;
      throw new Error(`${word} ${state.stderr.trim()}`);
    }, { ...booting, intervalMs: 100 }).catch(described);
    const initCgroup = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'))!.slice(3);
    cgroupRoot = path.join(findCgroup2Root(), initCgroup.replace(/\/init\.scope$/, ''));
    return { container, shutdown };
  }, shutdown);
}
