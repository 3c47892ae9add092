/*
 * The security boundary: who can touch sockaccel's pins and maps, whether a
 * local user can get at another user's accelerated bytes, whether the
 * daemon needs more than the capabilities its systemd unit grants, and
 * whether bad input (configuration, BPF objects, pins) fails clearly
 * without leaving anything half-attached.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext, type TestFn } from 'ava';
import * as bpf from '../../src/kernel/libbpf';
import { LibbpfError } from '../../src/kernel/libbpf';
import { close } from '../../src/kernel/libc';
import { listConnections, type ConnRow } from '../../src/conns';
import { describeConfigSchema } from '../../src/config/config';
import { LINK_PINS, linkPinPath, mapPinPath, SHARED_MAP_NAMES, SHARED_MAPS, SharedMapName } from '../../src/kernel/pins';
import { atLeast, parseKernelVersion } from '../../src/kernel/version';
import { DAEMON_CAPS } from '../../src/doctor/environment';
import { sockopsProgramIds, withScratchCgroup } from '../helpers/cgroup';
import { runCli, type CliResult } from '../helpers/cli';
import { removePinRoot, startDaemon, TEST_PIN_PREFIX, withDaemon, type RunningDaemon } from '../helpers/daemon';
import { uniqueName } from '../helpers/names';
import { withPodNetwork } from '../helpers/netns';
import { privilegedTest, onlyCaps } from '../helpers/privilege';
import { JsonLineProcess } from '../helpers/process';
import { withTestUser, type TestUser } from '../helpers/test-user';
import { assertIntegrity, integrityProblems, runClient, startServer, withHeldClient } from '../helpers/traffic';
import type { ClientReport } from '../helpers/peer-protocol';
import { waitFor } from '../helpers/wait-for';

// One daemon at a time on 2 vCPUs.
const privileged = privilegedTest(test.serial as unknown as TestFn);
const REPO = path.resolve(__dirname, '..', '..', '..');
const FIXTURES = path.join(REPO, 'test', 'fixtures');
const POD_CIDRS = ['10.213.0.0/24', 'fd00:5a::/64'];
const EPERM = 1;

/** Maps the daemon writes itself (sa_local, sa_mesh_presets, sa_decisions, sa_policy) or that are keyed by socket fds (sa_sk_state); every other one is frozen. */
const DAEMON_WRITTEN: ReadonlySet<SharedMapName> = new Set(['sa_local', 'sa_sk_state', 'sa_mesh_presets', 'sa_decisions', 'sa_policy']);

/** A clear error: our one-paragraph format, never a JavaScript stack. */
function assertClearError(t: ExecutionContext, r: CliResult, what: string): void {
  t.not(r.code, 0, `${what}: must fail`);
  t.regex(r.stderr, /^sockaccel: \S/, `${what}: stderr starts with the error\n${r.stderr}`);
  t.notRegex(r.stderr, /^\s+at .+[(:]\d+/m, `${what}: no stack trace\n${r.stderr}`);
  t.notRegex(r.stderr, /TypeError|ReferenceError|Unexpected error/, `${what}: not a crash\n${r.stderr}`);
}


/** A connected loopback TCP pair; the sockets are destroyed by the teardown. */
async function socketPair(t: ExecutionContext): Promise<net.Socket> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const peer = await accepted;
  t.teardown(() => {
    client.destroy();
    peer.destroy();
    server.close();
  });
  return client;
}

const socketFd = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

privileged('pins are root-only (0700 dir, 0600 pins) and program-only maps refuse writes, even from root through the pin', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path }, async (d) => {
      const dir = fs.statSync(d.pinRoot);
      t.is(dir.mode & 0o777, 0o700, 'pin directory 0700');
      t.is(dir.uid, 0, 'pin directory owned by root');
      const pins = fs.readdirSync(d.pinRoot);
      // The sk_msg programs are pinned links only where the kernel has sockmap
      // links (6.10); before that they are attached to the maps themselves.
      const release = parseKernelVersion(os.release());
      const links = release !== null && atLeast(release, '6.10') ? Object.values(LINK_PINS) : [LINK_PINS.sockops];
      t.deepEqual([...pins].sort(), [...Object.values(SHARED_MAPS), ...links].sort(), 'every shared map and link pinned, nothing else');
      for (const pin of pins) {
        const st = fs.statSync(path.join(d.pinRoot, pin));
        t.is(st.mode & 0o777, 0o600, `${pin} is 0600`);
        t.is(st.uid, 0, `${pin} owned by root`);
      }

      // A real established socket: the one thing an attacker would plant.
      const victim = socketFd(await socketPair(t));
      for (const name of SHARED_MAP_NAMES.filter((n) => !DAEMON_WRITTEN.has(n))) {
        const fd = bpf.bpfObjGet(mapPinPath(d.pinRoot, name)); // writable open, as root
        try {
          const info = bpf.mapInfo(fd);
          const value = Buffer.alloc(bpf.perCpuValueBufferSize(info.valueSize));
          if (info.type === bpf.BPF.MAP_TYPE_SOCKHASH) value.writeBigUInt64LE(BigInt(victim));
          const err = t.throws(() => bpf.bpfMapUpdateElem(fd, Buffer.alloc(info.keySize), value), { instanceOf: LibbpfError }, name);
          t.is(err?.errno, EPERM, `${name}: update refused with EPERM (frozen), got ${err?.errnoName}`);
          if (info.type === bpf.BPF.MAP_TYPE_SOCKHASH || info.type === bpf.BPF.MAP_TYPE_HASH) {
            t.is(t.throws(() => bpf.bpfMapDeleteElem(fd, Buffer.alloc(info.keySize)), { instanceOf: LibbpfError })?.errno, EPERM, `${name}: delete refused`);
          }
        } finally {
          close(fd);
        }
      }
      t.true(d.status().sockets.clients + d.status().sockets.servers === 0, 'nothing was planted');
    }),
  );
});

function attackerPins(user: TestUser, pinRoot: string, pins: string[]): Promise<Record<string, unknown>[]> {
  const proc = new JsonLineProcess('attacker pins', [...user.asUser, process.execPath, path.join(FIXTURES, 'attacker.js'), 'pins', '--pin-root', pinRoot, '--pins', pins.join(',')], {});
  return proc.exitWithin(20_000).then(() => proc.events as unknown as Record<string, unknown>[]);
}

privileged('an unprivileged user can neither open the pins nor make a sockhash to plant sockets in', async (t) => {
  await withTestUser((user) =>
    withScratchCgroup((cg) =>
      withDaemon({ cgroup: cg.path }, async (d) => {
        const events = await attackerPins(user, d.pinRoot, fs.readdirSync(d.pinRoot));
        const identity = events.find((e) => e.event === 'identity');
        t.is(identity?.uid, user.uid);
        t.is(identity?.capEff, '0000000000000000', 'no capabilities');
        const attempts = events.filter((e) => e.event === 'attempt');
        t.true(attempts.length > 4 * SHARED_MAP_NAMES.length, `${attempts.length} attempts`);
        for (const a of attempts) t.false(a.ok, `${a.what} must fail (${a.error})`);
        // The directory (0700, root) stops every path lookup; bpf_obj_get does
        // the same lookup, so it fails the same way even where unprivileged
        // bpf() is allowed.
        t.is(attempts.find((a) => a.what === 'readdir pin root')?.error, 'EACCES');
        for (const a of attempts.filter((x) => String(x.what).startsWith('bpf_obj_get') || String(x.what).startsWith('open '))) {
          t.true(['EACCES', 'EPERM'].includes(String(a.error)), `${a.what}: ${a.error}`);
        }
        t.is(attempts.find((a) => a.what === 'create a sockhash')?.error, 'EPERM');
      }),
    ),
  );
});

privileged("a user's connection to a victim's listener in the cgroup is accelerated, and carries only its own bytes", async (t) => {
  await withTestUser((user) =>
    withScratchCgroup((cg) =>
      withDaemon({ cgroup: cg.path }, async (d) => {
        const inserted = d.counter('sockets_inserted');
        const server = await startServer({ host: '127.0.0.1', mode: 'echo', cgroup: cg.path });
        try {
          const common = { cgroup: cg.path, host: '127.0.0.1', port: server.port, bytes: 2 * 1024 * 1024, conns: 2, chunk: 16384 };
          const [victim, attacker] = await Promise.all([
            runClient({ ...common, seed: 'victim' }),
            runClient({ ...common, seed: 'attacker', uid: user.uid, gid: user.gid }),
          ]);
          const all: ClientReport = { conns: [...victim.conns, ...attacker.conns], fionread: [] };
          assertIntegrity(t, all, await server.results(4), { bytesPerConn: common.bytes, echo: true });
        } finally {
          await server.stop();
        }
        t.is(d.counter('sockets_inserted') - inserted, 8n, 'all four connections, the user\'s included, were accelerated');
      }),
    ),
  );
});

/** The victim's paired connection to `port` from `client`, as `sockaccel conns` shows it. */
function victimRow(pinRoot: string, port: number, client: string): ConnRow {
  const rows = listConnections(pinRoot, { port });
  const row = rows.find((r) => r.client === client);
  if (!row) throw new Error(`no accelerated connection from ${client} to port ${port} among ${JSON.stringify(rows)}`);
  return row;
}

privileged('a user who recreates a victim connection\'s addresses and ports in a namespace of its own gets none of its bytes', async (t) => {
  // The victim: pod A talks to pod B, both on the node, accelerated. The
  // attacker: an unprivileged user in the same cgroup, inside a user and
  // network namespace of its own (unshare -Urn), puts both pod addresses on
  // its loopback and connects from the victim client's exact address and
  // port to the victim server's address and port, with its own server's
  // handshake held back (final ACK dropped) so only its client enters the
  // map. A key of addresses alone (cross-namespace keys carry no netns
  // cookie) would make the victim server's replies land in the attacker's
  // socket and the attacker's marker in the victim's stream; the key also
  // holds both initial sequence numbers, which the attacker cannot choose.
  await withTestUser((user) =>
    withPodNetwork({ pods: 2 }, (podNet) =>
      withScratchCgroup((cg) =>
        withDaemon({ cgroup: cg.path, localCidrs: POD_CIDRS }, async (d) => {
          const [a, b] = podNet.pods;
          const server = await startServer({ host: '0.0.0.0', mode: 'echo', cgroup: cg.path, netns: b.ns });
          try {
            // The victim streams until released: the attack always lands in the middle of it.
            const victimOpts = { host: b.ipv4, port: server.port, stream: true, chunk: 2048, pauseMs: 8, seed: 'victim', cgroup: cg.path, netns: a.ns };
            await withHeldClient(victimOpts, async (victim) => {
              const [victimClient] = await victim.holding();
              const victimNow = () => victimRow(d.pinRoot, server.port, victimClient);
              await waitFor('the victim connection to be paired', victimNow, { failIf: victim.process.exitedReport });
              const clientPort = Number(victimClient.split(':').pop());
              const setup = [
                'ip link set lo up',
                `ip addr add ${a.ipv4}/32 dev lo`,
                `ip addr add ${b.ipv4}/32 dev lo`,
                `iptables -A INPUT -p tcp --dport ${server.port} --tcp-flags SYN,ACK,FIN,RST ACK -j DROP`,
                'exec "$0" "$@"',
              ].join(' && ');
              const attacker = new JsonLineProcess(
                'attacker steal',
                [
                  ...user.asUser, 'unshare', '-Urn', '--', 'sh', '-c', setup,
                  process.execPath, path.join(FIXTURES, 'attacker.js'), 'steal',
                  '--client-ip', a.ipv4, '--client-port', String(clientPort),
                  '--server-ip', b.ipv4, '--server-port', String(server.port),
                ],
                { cgroup: cg.path },
              );
              try {
                type StealEvent = { event: string; bytes?: number; local?: string; sample?: string };
                const connected = await attacker.waitUntil((events) => (events as unknown as StealEvent[]).find((e) => e.event === 'connected'), 20_000, 'the attacker to connect');
                t.is(connected.local, `${a.ipv4}:${clientPort}`, 'the attacker did hold the victim client\'s endpoint');
                // While the attacker holds the victim's endpoint, the victim's server
                // must go on answering: 64 KiB more that a confused key would divert.
                const answered = victimNow().bytesServerToClient ?? 0;
                await waitFor('the victim server to answer 64 KiB during the attack', () => (victimNow().bytesServerToClient ?? 0) >= answered + 64 * 1024, {
                  failIf: () => attacker.exitedReport() ?? victim.process.exitedReport(),
                });
                attacker.signal('SIGUSR2');
                const status = await attacker.exitWithin(20_000);
                t.is(status.code, 0, attacker.failureReport('failed'));
                const stolen = (attacker.events as unknown as StealEvent[]).find((e) => e.event === 'stolen');
                t.is(stolen?.bytes, 0, `the attacker received victim bytes: ${stolen?.sample}`);
              } finally {
                await attacker.kill();
              }
              t.notThrows(victimNow, 'the victim connection is still paired after the attack');

              const report = await victim.release();
              const problems = integrityProblems(report, await server.results(1), { echo: true });
              t.deepEqual(problems, [], 'the victim connection stayed byte-exact both ways (no marker injected, nothing diverted)');
            });
          } finally {
            await server.stop();
          }
        }),
      ),
    ),
  );
});

const UNIT_FILE = path.join(REPO, 'systemd', 'sockaccel.service');
const DEFAULT_CAPS = ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_SYS_RESOURCE'];

/** The unit's CapabilityBoundingSet (later lines add to earlier ones, "~" would invert: not used there). */
function unitCapabilities(): { caps: string[]; source: string } {
  if (!fs.existsSync(UNIT_FILE)) return { caps: DEFAULT_CAPS, source: 'default (no unit file)' };
  const lines = fs.readFileSync(UNIT_FILE, 'utf8').split('\n').filter((l) => /^CapabilityBoundingSet=/.test(l.trim()));
  const caps = lines.flatMap((l) => l.split('=')[1].trim().split(/\s+/)).filter(Boolean);
  if (caps.some((c) => c.startsWith('~'))) throw new Error(`${UNIT_FILE}: an inverted CapabilityBoundingSet is not supported by this test`);
  return { caps: caps.length > 0 ? caps : DEFAULT_CAPS, source: UNIT_FILE };
}

/** Capabilities this test process may hand on (its bounding set). */
function grantable(): Set<string> {
  const bnd = BigInt(`0x${/^CapBnd:\s*(\w+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]}`);
  const names = execFileSync('capsh', ['--decode=' + bnd.toString(16)], { encoding: 'utf8' });
  return new Set(names.split('=')[1].trim().split(',').map((c) => c.toUpperCase()));
}

privileged('the daemon starts, accelerates and stops with only the capabilities of systemd/sockaccel.service', async (t) => {
  const { caps, source } = unitCapabilities();
  const have = grantable();
  const usable = caps.filter((c) => have.has(c));
  t.log(`capabilities from ${source}: ${caps.join(' ')}${usable.length < caps.length ? ` (this machine cannot grant ${caps.filter((c) => !have.has(c)).join(' ')}; testing without)` : ''}`);
  await withScratchCgroup(async (cg) => {
    const pinRoot = TEST_PIN_PREFIX + uniqueName('caps');
    try {
      const d = await startDaemon({ cgroup: cg.path, pinRoot, wrapper: onlyCaps(usable) });
      try {
        const eff = /^CapEff:\s*(\w+)$/m.exec(fs.readFileSync(`/proc/${d.process.pid}/status`, 'utf8'))![1];
        t.log(`daemon CapEff 0x${eff}`);
        const inserted = d.counter('sockets_inserted');
        const server = await startServer({ host: '127.0.0.1', mode: 'echo', cgroup: cg.path });
        try {
          const client = await runClient({ host: '127.0.0.1', port: server.port, bytes: 1024 * 1024, cgroup: cg.path });
          assertIntegrity(t, client, await server.results(1), { bytesPerConn: 1024 * 1024, echo: true });
        } finally {
          await server.stop();
        }
        t.is(d.counter('sockets_inserted') - inserted, 2n, 'accelerated');
      } finally {
        t.is((await d.stop()).code, 0, 'clean stop');
      }
      // A restart reuses the pins and swaps the links: the other half of the daemon's privileged work.
      const again = await startDaemon({ cgroup: cg.path, pinRoot, wrapper: onlyCaps(usable) });
      t.is((await again.stop()).code, 0, 'clean restart and stop');
    } finally {
      removePinRoot(pinRoot);
    }
  });
});

privileged('every capability of the minimal set is needed: without any one the start fails clearly and attaches nothing', async (t) => {
  t.deepEqual([...DAEMON_CAPS].sort(), ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON'], 'the set src/doctor/environment.ts documents');
  await withScratchCgroup(async (cg) => {
    for (const missing of DAEMON_CAPS) {
      const pinRoot = TEST_PIN_PREFIX + uniqueName('nocap');
      try {
        const r = await runCli(['run', `--cgroup-path=${cg.path}`, `--pin-root=${pinRoot}`], { prefix: onlyCaps(DAEMON_CAPS.filter((c) => c !== missing)) });
        assertClearError(t, r, `without ${missing}`);
        t.log(`without ${missing}: exit ${r.code}: ${r.stderr.split('\n').slice(0, 2).join(' | ')}`);
        t.deepEqual(sockopsProgramIds(cg.path), [], `without ${missing}: nothing attached`);
        t.deepEqual(fs.existsSync(pinRoot) ? fs.readdirSync(pinRoot) : [], [], `without ${missing}: nothing pinned`);
      } finally {
        removePinRoot(pinRoot);
      }
    }
  });
});

// ---- bad input -------------------------------------------------------------

type Channel = 'file' | 'env' | 'flag';

interface FuzzCase {
  readonly key: string;
  readonly value: unknown;
  readonly channel: Channel;
}

const SCHEMA = new Map(describeConfigSchema().map((row) => [row.key as string, row]));

/**
 * Invalid values per configuration key, by kind: wrong types, out of range,
 * malformed CIDRs, ports, paths, addresses. Strings go through every channel
 * (file, SOCKACCEL_* variable, --flag); other JSON types only fit in a file.
 */
const INVALID: Record<string, unknown[]> = {
  mapSize: ['abc', 1.5, -1, 0, 15, 1048577, '1e3', true, [16], null],
  statusIntervalMs: [99, 600001, 'fast', ''],
  localCidrs: ['10.0.0.0/33', '10.0.0.1/8', 'fe80::/129', 'not-a-cidr', [42], '10.0.0.0/-1', '300.1.1.0/24'],
  includePorts: [0, '65536', '-1', 'http', [80, 'x'], [1.5], '80,,90x'],
  excludePorts: ['0', [70000]],
  pinRoot: ['relative/pins', ''],
  cgroupPath: ['relative/cgroup'],
  logLevel: ['loud', 5],
  objectDir: ['relative/objects'],
  mesh: ['envoy'],
  meshProxyUid: ['-2', 'root', 4294967295],
  meshOutboundPort: ['70000'],
  acceleratePlain: ['maybe', 1],
  metricsEnabled: ['yes', 1],
  metricsAddress: ['0.0.0.0', '127.0.0.1:99999', '[::1]', 'example.com:9464', '127.0.0.1:0', ':9464'],
};

function fuzzCases(): FuzzCase[] {
  const channels: Channel[] = ['file', 'env', 'flag'];
  let i = 0;
  return Object.entries(INVALID).flatMap(([key, values]) =>
    values.map((value) => ({ key, value, channel: typeof value === 'string' ? channels[i++ % channels.length] : ('file' as Channel) })),
  );
}

async function pool<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

privileged('invalid configurations, by file, variable or flag, fail clearly with nothing pinned or attached', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-fuzz-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const busyPort = (busy.address() as net.AddressInfo).port;

  await withScratchCgroup(async (cg) => {
    const roots: string[] = [];
    interface Input {
      file?: Record<string, unknown> | string;
      env?: NodeJS.ProcessEnv;
      args?: string[];
    }
    // The scratch cgroup and a fresh pin root come from the file, the
    // channel every other one overrides: the fuzzed value always wins.
    const run = async (name: string, input: Input): Promise<CliResult & { name: string }> => {
      const pinRoot = TEST_PIN_PREFIX + uniqueName('fuzz');
      roots.push(pinRoot);
      const file = path.join(tmp, `${roots.length}.json`);
      fs.writeFileSync(file, typeof input.file === 'string' ? input.file : JSON.stringify({ cgroupPath: cg.path, pinRoot, ...input.file }));
      const r = await runCli(['run', ...(input.args ?? [])], { env: { SOCKACCEL_CONFIG: file, ...input.env } });
      return { ...r, name };
    };
    try {
      const generated = fuzzCases().map((c) => {
        const name = `${c.key}=${JSON.stringify(c.value)} via ${c.channel}`;
        const row = SCHEMA.get(c.key)!;
        if (c.channel === 'file') return () => run(name, { file: { [c.key]: c.value } });
        if (c.channel === 'env') return () => run(name, { env: { [row.env]: String(c.value) } });
        return () => run(name, { args: [`--${row.arg}=${String(c.value)}`] });
      });
      const special = [
        () => run('file is not JSON', { file: '{"mapSize": 16' }),
        () => run('file holds an array', { file: '[]' }),
        () => run('file holds a string', { file: '"mapSize"' }),
        () => run('a key with an object value', { file: { mapSize: { value: 16 } } }),
        () => run('a misspelt key', { file: { mapsize: 16 } }),
        () => run('the config key inside the file', { file: { config: '/etc/x.json' } }),
        () => run('a port both included and excluded', { file: { includePorts: [80], excludePorts: [80, 443] } }),
        () => run('a named config file that is missing', { env: { SOCKACCEL_CONFIG: path.join(tmp, 'missing.json') } }),
        () => run('pinRoot off bpffs', { file: { pinRoot: path.join(tmp, 'pins') } }),
        () => run('cgroupPath that does not exist', { file: { cgroupPath: '/sys/fs/cgroup/unified/sockaccel-no-such-cgroup' } }),
        () => run('cgroupPath that is not a cgroup', { file: { cgroupPath: tmp } }),
        () => run('metricsAddress already in use', { file: { metricsEnabled: true, metricsAddress: `127.0.0.1:${busyPort}` } }),
        () => run('metricsAddress not on this host', { file: { metricsEnabled: true, metricsAddress: '192.0.2.77:9464' } }),
      ];
      const results = await pool([...generated, ...special], 4, (f) => f());
      t.true(results.length > 60, `${results.length} configurations`);
      for (const r of results) {
        assertClearError(t, r, r.name);
        t.true([72, 78].includes(r.code), `${r.name}: exit ${r.code} (config 78 or environment 72)\n${r.stderr}`);
      }
      for (const r of results.filter((x) => x.code === 78 && / via /.test(x.name))) {
        t.regex(r.stderr, new RegExp(r.name.split('=')[0]), `${r.name}: the message names the key`);
      }
      t.deepEqual(sockopsProgramIds(cg.path), [], 'no program attached');
      const pinned = roots.filter((r) => fs.existsSync(r) && fs.readdirSync(r).length > 0);
      t.deepEqual(pinned, [], 'no pins left behind');
    } finally {
      for (const r of roots) removePinRoot(r);
    }
  });
});

/** What a pin root holds, by kernel identity: an untouched pin keeps its map or link id. */
function pinIdentities(pinRoot: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of SHARED_MAP_NAMES) {
    const p = mapPinPath(pinRoot, name);
    if (fs.existsSync(p)) out[path.basename(p)] = (() => {
      const fd = bpf.bpfObjGet(p);
      try {
        return bpf.mapInfo(fd).id;
      } finally {
        close(fd);
      }
    })();
  }
  for (const link of Object.keys(LINK_PINS) as (keyof typeof LINK_PINS)[]) {
    const p = linkPinPath(pinRoot, link);
    if (!fs.existsSync(p)) continue;
    const fd = bpf.bpfObjGet(p);
    try {
      const info = bpf.linkInfo(fd);
      out[path.basename(p)] = info.id;
      out[`${path.basename(p)}.prog`] = info.progId;
    } finally {
      close(fd);
    }
  }
  return out;
}

/** Objects built by scripts/build-bpf.sh (same flags) with a program the verifier must refuse prepended to each. */
function buildRejectedObjects(tmp: string): string {
  const inject = path.join(tmp, 'inject.h');
  fs.writeFileSync(
    inject,
    `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sockops")
int injected_bad_ctx(struct bpf_sock_ops *skops)
{
	/* past the end of the context: the verifier must refuse this */
	return *(volatile __u32 *)((char *)skops + 4096);
}
`,
  );
  const out = path.join(tmp, 'rejected');
  execFileSync('bash', [path.join(REPO, 'scripts', 'build-bpf.sh')], {
    env: { ...process.env, BPF_OUT_DIR: out, BPF_EXTRA_CFLAGS: `-include ${inject}` },
    stdio: 'pipe',
  });
  return out;
}

privileged('corrupt or truncated objects, a verifier rejection and a map of the wrong type fail clearly and leave existing pins untouched', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-objects-'));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const objects = path.join(REPO, 'build', 'bpf');
  const variant = (name: string, sockops: (good: Buffer) => Buffer): string => {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir);
    for (const file of fs.readdirSync(objects)) if (file.endsWith('.bpf.o')) fs.copyFileSync(path.join(objects, file), path.join(dir, file));
    fs.writeFileSync(path.join(dir, 'sockops.bpf.o'), sockops(fs.readFileSync(path.join(objects, 'sockops.bpf.o'))));
    return dir;
  };
  const truncated = variant('truncated', (good) => good.subarray(0, Math.floor(good.length / 2)));
  const garbage = variant('garbage', (good) => Buffer.from(good.map((_, i) => (i * 7919) % 251)));
  const empty = variant('empty', () => Buffer.alloc(0));
  const rejected = buildRejectedObjects(tmp);

  await withScratchCgroup(async (cg) => {
    const pinRoot = TEST_PIN_PREFIX + uniqueName('objects');
    const wrongRoot = TEST_PIN_PREFIX + uniqueName('wrong-type');
    try {
      // An earlier run's pins: maps, and a drained sock_ops link still on the cgroup.
      const first: RunningDaemon = await startDaemon({ cgroup: cg.path, pinRoot });
      await first.stop();
      const before = pinIdentities(pinRoot);
      const attached = sockopsProgramIds(cg.path);
      t.is(attached.length, 1);
      const run = (dir: string, root = pinRoot) => runCli(['run', `--cgroup-path=${cg.path}`, `--pin-root=${root}`, `--object-dir=${dir}`]);

      for (const [what, dir] of [['truncated', truncated], ['garbage', garbage], ['empty', empty]] as const) {
        const r = await run(dir);
        assertClearError(t, r, what);
        t.is(r.code, 70, `${what}: ${r.stderr}`);
        t.regex(r.stderr, /^sockaccel: open: bpf_object__open_file failed: LIBBPF_ERRNO__FORMAT \(BPF object format invalid\)/, `${what}: ${r.stderr}`);
        t.regex(r.stderr, new RegExp(`${dir}/sockops\\.bpf\\.o`), `${what}: names the file`);
        t.regex(r.stderr, /hint: objectDir must hold/);
      }

      const verifier = await run(rejected);
      assertClearError(t, verifier, 'verifier rejection');
      t.is(verifier.code, 65, verifier.stderr);
      t.regex(verifier.stderr, /the kernel verifier rejected program "injected_bad_ctx"/);
      t.regex(verifier.stderr, /verifier log \(relevant lines\):\n(\s{4}.+\n)*\s{4}.*invalid bpf_context access off=4096 size=4/, verifier.stderr);

      // A HASH map pinned where the clients sockhash belongs, same key and value size: only the type differs.
      fs.mkdirSync(wrongRoot, { mode: 0o700 });
      const wrongPin = mapPinPath(wrongRoot, 'sa_clients');
      const fd = bpf.bpfMapCreate(bpf.BPF.MAP_TYPE_HASH, 'sa_clients', 32, 8, 16);
      try {
        bpf.bpfObjPin(fd, wrongPin);
      } finally {
        close(fd);
      }
      const wrongBefore = pinIdentities(wrongRoot);
      const wrong = await run(objects, wrongRoot);
      assertClearError(t, wrong, 'wrong map type');
      t.is(wrong.code, 73, wrong.stderr);
      t.regex(wrong.stderr, new RegExp(`pinned map ${wrongPin} is incompatible with this build: type ${bpf.BPF.MAP_TYPE_HASH} \\(pinned\\) vs ${bpf.BPF.MAP_TYPE_SOCKHASH} \\(this build\\)`));
      t.deepEqual(pinIdentities(wrongRoot), wrongBefore, 'the foreign pin is left as it was, and nothing was added');

      t.deepEqual(pinIdentities(pinRoot), before, 'the earlier pins are the same maps and links, running the same programs');
      t.deepEqual(sockopsProgramIds(cg.path), attached, 'the cgroup runs the same program');
    } finally {
      removePinRoot(pinRoot);
      removePinRoot(wrongRoot);
    }
  });
});
