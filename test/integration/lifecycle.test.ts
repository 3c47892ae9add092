/*
 * The daemon's lifecycle outside systemd: one connection streams across a
 * restart, a SIGKILL and start, an upgrade to a second build of the programs,
 * and a stop, and must come out byte-exact; every phase also opens a fresh
 * connection to show whether new connections are accelerated then. Plus the
 * bad inputs that must fail clearly without touching a running data path,
 * and `sockaccel purge`.
 *
 * Which phase redirected what: in every phase the long stream must add to
 * msgs_redirected and never to msgs_passed (an accelerated socket whose send
 * found no peer would count there and go plain), and keep its two sockets in
 * the maps. It never adds to sockets_inserted (inserted once, at the start),
 * so a probe connection's sockets_inserted delta is its own: 2 when new
 * connections are accelerated, 0 when they are plain TCP from the first byte
 * (no sk_msg program ever sees them, so they add to msgs_passed neither).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { LAYOUT_VERSION, META_MAGIC } from '../../src/kernel/bpf-layout';
import {
  BPF,
  bpfMapCreate,
  bpfMapGetFdById,
  bpfMapUpdateElem,
  bpfObjPin,
  bpfProgBindMap,
  bpfProgGetFdById,
  LibbpfError,
  progMapIds,
  mapInfo,
} from '../../src/kernel/libbpf';
import { close } from '../../src/kernel/libc';
import { BpfObject, DEFAULT_OBJECT_DIR, objectPath } from '../../src/kernel/bpf-object';
import { mapPinPath, SHARED_MAP_NAMES, type SharedMapName, withPinnedFd } from '../../src/kernel/pins';
import { readStatus } from '../../src/cli/status';
import { loadedSkMsgPrograms } from '../../src/doctor/neighbours';
import { withScratchCgroup } from '../helpers/cgroup';
import { runCli, type CliResult } from '../helpers/cli';
import { removePinRoot, startDaemon, TEST_PIN_PREFIX, type RunningDaemon } from '../helpers/daemon';
import { withLongStream } from '../helpers/long-stream';
import { uniqueName } from '../helpers/names';
import { privilegedTest } from '../helpers/privilege';
import { childPids } from '../helpers/process';
import { assertIntegrity, exchange } from '../helpers/traffic';
import { waitFor } from '../helpers/wait-for';

const privileged = privilegedTest(test);
const REPO = path.resolve(__dirname, '..', '..', '..');
const LOOPBACK = '127.0.0.1';

const counter = (pinRoot: string, name: string): bigint => BigInt(readStatus(pinRoot).counters[name] ?? 'NaN');
const socketsInMaps = (pinRoot: string): number => {
  const { sockets } = readStatus(pinRoot);
  return sockets.clients + sockets.servers;
};

/** A fresh short connection in `cgroup`; returns how many of its sockets entered the maps. */
async function probeConnection(t: ExecutionContext, pinRoot: string, cgroup: string, seed: string): Promise<bigint> {
  const inserted = counter(pinRoot, 'sockets_inserted');
  const bytes = 256 * 1024;
  const result = await exchange({
    server: { cgroup, host: LOOPBACK, mode: 'echo' },
    client: { cgroup, host: LOOPBACK, bytes, chunk: 16 * 1024, seed },
  });
  assertIntegrity(t, result.client, result.server, { bytesPerConn: bytes, echo: true });
  return counter(pinRoot, 'sockets_inserted') - inserted;
}

type LogLine = { msg?: string; dir?: string; programIds?: { sockops: number }; reusedMaps?: string[] };
const logLines = (d: RunningDaemon): LogLine[] => d.process.events as unknown as LogLine[];
const readyLine = (d: RunningDaemon): LogLine => logLines(d).find((e) => e.msg === 'ready')!;

/** Programs attached to a cgroup, as bpftool lists them. */
function cgroupPrograms(cgroup: string): { id: number; attach_type: string }[] {
  return JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8' }).trim() || '[]');
}

function listPins(pinRoot: string): string[] {
  return fs.readdirSync(pinRoot).sort();
}

/** Whether the kernel still has a map with this id (opening it by id briefly holds it). */
function mapLoaded(id: number): boolean {
  try {
    close(bpfMapGetFdById(id));
    return true;
  } catch (err) {
    if (err instanceof LibbpfError && err.errno === os.constants.errno.ENOENT) return false;
    throw err;
  }
}

/** The redirect object loaded on the pinned maps without sockhash-hold's binding, as an older build did. */
function loadUnboundRedirect(pinRoot: string): BpfObject {
  const obj = BpfObject.open(objectPath(DEFAULT_OBJECT_DIR, 'redirect'));
  try {
    for (const name of obj.mapNames()) obj.reusePinnedMap(name, mapPinPath(pinRoot, name as SharedMapName));
    obj.load();
    return obj;
  } catch (err) {
    obj.close();
    throw err;
  }
}

/**
 * Binds a fresh, otherwise unreferenced map to a program and returns its id.
 * The id vanishes when the program is freed and puts its maps; the sentinel
 * is put last, after every map the program used. So once the sentinel is
 * gone, each of those maps is either freed (its id gone) or held by
 * something else.
 */
function bindSentinel(progId: number): number {
  const mapFd = bpfMapCreate(BPF.MAP_TYPE_ARRAY, 'sa_test_sentinel', 4, 4, 1);
  try {
    const progFd = bpfProgGetFdById(progId);
    try {
      bpfProgBindMap(progFd, mapFd);
    } finally {
      close(progFd);
    }
    return mapInfo(mapFd).id;
  } finally {
    close(mapFd);
  }
}

/** A second build of the BPF objects (an extra -D), in a temp dir removed after the test. */
function buildSecondObjects(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-upgrade-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  execFileSync('bash', [path.join(REPO, 'scripts', 'build-bpf.sh')], {
    env: { ...process.env, BPF_OUT_DIR: dir, BPF_EXTRA_CFLAGS: '-DSOCKACCEL_TEST_BUILD=2' },
    stdio: 'pipe',
  });
  return dir;
}

/** Runs `fn` with a daemon-starting function whose daemons and pins are all gone afterwards. */
async function withDaemons<T>(
  cgroup: string,
  fn: (start: (extraArgs?: string[]) => Promise<RunningDaemon>, pinRoot: string) => Promise<T>,
): Promise<T> {
  const pinRoot = TEST_PIN_PREFIX + uniqueName('lifecycle');
  const started: RunningDaemon[] = [];
  try {
    return await fn(async (extraArgs = []) => {
      const d = await startDaemon({ cgroup, pinRoot, logLevel: 'debug', extraArgs });
      started.push(d);
      return d;
    }, pinRoot);
  } finally {
    for (const d of started) await d.process.kill();
    removePinRoot(pinRoot);
  }
}

privileged('a stream crosses restart, SIGKILL + start, upgrade and stop byte-exact; new connections follow each phase', async (t) => {
  const secondBuild = buildSecondObjects(t);
  await withScratchCgroup(async (cg) => {
    await withDaemons(cg.path, async (start, pinRoot) => {
      let daemon = await start();
      const linkId = readStatus(pinRoot).links.sockops!.id;
      await withLongStream({ cgroup: cg.path, host: LOOPBACK }, async (stream) => {
        await waitFor('the stream to be accelerated', () => socketsInMaps(pinRoot) === 2, { failIf: stream.client.process.exitedReport });
        const phase = async (name: string, newConnections: 'accelerated' | 'plain') => {
          const redirected = counter(pinRoot, 'msgs_redirected');
          const passed = counter(pinRoot, 'msgs_passed');
          await waitFor(`${name}: the stream to keep redirecting`, () => counter(pinRoot, 'msgs_redirected') > redirected + 20n, { failIf: stream.client.process.exitedReport });
          const inserted = await probeConnection(t, pinRoot, cg.path, name);
          const deltas = { msgs_redirected: counter(pinRoot, 'msgs_redirected') - redirected, msgs_passed: counter(pinRoot, 'msgs_passed') - passed };
          t.is(deltas.msgs_passed, 0n, `${name}: nothing went over plain TCP from an accelerated socket`);
          t.is(socketsInMaps(pinRoot), 2, `${name}: the stream's two sockets stay in the maps`);
          t.is(inserted, newConnections === 'accelerated' ? 2n : 0n, `${name}: new connections are ${newConnections}`);
          t.log(`${name}: msgs_redirected +${deltas.msgs_redirected}, msgs_passed +${deltas.msgs_passed}; new connection ${newConnections} (sockets_inserted +${inserted})`);
        };

        await phase('running', 'accelerated');

        t.is((await daemon.stop()).code, 0);
        t.is(readStatus(pinRoot).sockopsMode, 'draining');
        await phase('stopped before the restart', 'plain');
        daemon = await start();
        t.deepEqual([...(readyLine(daemon).reusedMaps ?? [])].sort(), [...SHARED_MAP_NAMES].sort(), 'the restart reused every pinned map');
        await phase('restarted', 'accelerated');

        const children = childPids(daemon.process.pid);
        t.true(children.length > 0, 'the daemon runs a child (ip monitor)');
        await daemon.process.kill();
        await waitFor('the killed daemon\'s children to be gone too', () => children.every((pid) => !fs.existsSync(`/proc/${pid}`)));
        // Nobody drained: the accepting program runs on without its daemon.
        t.is(readStatus(pinRoot).sockopsMode, 'accepting');
        await phase('killed (SIGKILL), no daemon', 'accelerated');
        daemon = await start();
        await phase('started after the kill', 'accelerated');

        const oldProgram = readStatus(pinRoot).links.sockops!.progId;
        t.is((await daemon.stop()).code, 0);
        daemon = await start([`--object-dir=${secondBuild}`]);
        t.true(logLines(daemon).some((e) => e.msg === 'stage open done' && e.dir === secondBuild), 'the upgrade loaded the second build');
        const upgraded = readStatus(pinRoot).links.sockops!;
        t.is(upgraded.progId, readyLine(daemon).programIds!.sockops, 'the link runs the second build');
        t.not(upgraded.progId, oldProgram);
        await phase('upgraded', 'accelerated');

        t.is((await daemon.stop()).code, 0);
        await phase('stopped', 'plain');

        // The same link object all along: updated in place, never detached and re-created.
        t.is(readStatus(pinRoot).links.sockops!.id, linkId);
        const result = await stream.finish();
        assertIntegrity(t, result.client, result.server, { echo: true });
        t.log(`stream: ${result.client.conns[0]!.bytesOut} bytes each way, intact`);
      });
    });
  });
});

/** Pins a map the way an incompatible sockaccel build would have. */
function pinForeignMap(pin: string, create: () => number, fill?: (fd: number) => void): void {
  const fd = create();
  try {
    fill?.(fd);
    bpfObjPin(fd, pin);
  } finally {
    close(fd);
  }
}

/** What the first daemon must still have after a failed second start. */
function dataPathSnapshot(pinRoot: string, cgroup: string) {
  const status = readStatus(pinRoot);
  return { pins: listPins(pinRoot), links: status.links, mode: status.sockopsMode, cgroupPrograms: cgroupPrograms(cgroup).map((p) => p.id) };
}

privileged('bad inputs fail clearly and leave a running daemon on the same cgroup untouched', async (t) => {
  await withScratchCgroup(async (cg) => {
    await withDaemons(cg.path, async (start, pinRoot) => {
      const first = await start();
      const before = dataPathSnapshot(pinRoot, cg.path);
      t.is(before.cgroupPrograms.length, 1);

      const otherRoot = TEST_PIN_PREFIX + uniqueName('bad-pins');
      fs.mkdirSync(otherRoot, { mode: 0o700 });
      t.teardown(() => removePinRoot(otherRoot));
      const notBpffs = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-not-bpffs-'));
      t.teardown(() => fs.rmSync(notBpffs, { recursive: true, force: true }));
      const run = (root: string) => runCli(['run', `--cgroup-path=${cg.path}`, `--pin-root=${root}`]);

      // A second daemon on the same pin root: refused before it loads anything.
      const second = await run(pinRoot);
      t.is(second.code, 75, second.stderr);
      t.regex(second.stderr, new RegExp(`pid ${first.process.pid} \\(sockaccel run: .*\\) already holds pin root ${pinRoot}`));
      t.regex(second.stderr, /hint: stop it first/);

      // A pin root that is not on bpffs.
      const offBpffs = await run(path.join(notBpffs, 'pins'));
      t.is(offBpffs.code, 72, offBpffs.stderr);
      t.regex(offBpffs.stderr, /is not on a bpf filesystem/);

      // A sockhash pinned with the wrong key size.
      pinForeignMap(mapPinPath(otherRoot, 'sa_clients'), () => bpfMapCreate(BPF.MAP_TYPE_SOCKHASH, 'sa_clients', 4, 8, 16));
      const wrongKey = await run(otherRoot);
      t.is(wrongKey.code, 73, wrongKey.stderr);
      t.regex(wrongKey.stderr, new RegExp(`pinned map ${mapPinPath(otherRoot, 'sa_clients')} is incompatible with this build: keySize 4 \\(pinned\\)`));
      t.regex(wrongKey.stderr, /sockaccel purge/);

      // Maps of a future layout version (same shapes, other meaning).
      fs.rmSync(mapPinPath(otherRoot, 'sa_clients'));
      pinForeignMap(
        mapPinPath(otherRoot, 'sa_meta'),
        () => bpfMapCreate(BPF.MAP_TYPE_ARRAY, 'sa_meta', 4, 8, 1),
        (fd) => {
          const meta = Buffer.alloc(8);
          meta.writeUInt32LE(META_MAGIC, 0);
          meta.writeUInt32LE(LAYOUT_VERSION + 1, 4);
          bpfMapUpdateElem(fd, Buffer.alloc(4), meta);
        },
      );
      const newerLayout = await run(otherRoot);
      t.is(newerLayout.code, 73, newerLayout.stderr);
      t.regex(newerLayout.stderr, new RegExp(`layout version ${LAYOUT_VERSION + 1} \\(pinned\\) vs ${LAYOUT_VERSION} \\(this build\\)`));
      t.deepEqual(listPins(otherRoot), ['meta'], 'the failed start removed nothing and left nothing');

      // Purge is refused while the daemon runs, too.
      const purge = await runCli(['purge', `--pin-root=${pinRoot}`]);
      t.is(purge.code, 75, purge.stderr);

      t.deepEqual(dataPathSnapshot(pinRoot, cg.path), before, 'pins, links and cgroup programs unchanged');
      t.is(await probeConnection(t, pinRoot, cg.path, 'after the bad inputs'), 2n, 'the first daemon still accelerates');
    });
  });
});

/**
 * The loaded sk_msg program `name` that holds the map `mapId`: the program a
 * socket got at insertion. Found by walking the programs rather than through
 * the link pin, which exists only with sockmap links (6.10; 6.1 attaches the
 * programs to the maps themselves).
 */
function redirectProgramOn(mapId: number, name: string): number {
  const found = loadedSkMsgPrograms().filter((p) => p.name === name.slice(0, 15) && withProgFd(p.id, (fd) => progMapIds(fd).includes(mapId)));
  if (found.length !== 1) throw new Error(`expected one ${name} holding map ${mapId}, found ${found.map((p) => p.id).join(', ') || 'none'}`);
  return found[0]!.id;
}

function withProgFd<T>(id: number, fn: (fd: number) => T): T {
  const fd = bpfProgGetFdById(id);
  try {
    return fn(fd);
  } finally {
    close(fd);
  }
}

privileged('purge refuses while sockets hold the maps; --force keeps their unread bytes; a drained purge removes everything', async (t) => {
  await withScratchCgroup(async (cg) => {
    await withDaemons(cg.path, async (start, pinRoot) => {
      const daemon = await start();
      // halfClose + holdReads: the client reads nothing until we let it, so the
      // server's echo piles up unread in its redirect queue while we purge.
      const streamOpts = { cgroup: cg.path, host: LOOPBACK, chunk: 512, pauseMs: 20, halfClose: true, holdReads: true };
      await withLongStream(streamOpts, async (stream) => {
        await waitFor('unread redirected bytes', () => socketsInMaps(pinRoot) === 2 && counter(pinRoot, 'bytes_redirected') > 16_384n, { failIf: stream.client.process.exitedReport });
        t.is((await daemon.stop()).code, 0);
        const pins = listPins(pinRoot);
        const clientsMap = withPinnedFd(mapPinPath(pinRoot, 'sa_clients'), (fd) => mapInfo(fd).id);
        const serversMap = withPinnedFd(mapPinPath(pinRoot, 'sa_servers'), (fd) => mapInfo(fd).id);
        // The program the server socket got at insertion (links open read-write only).
        const toClientProg = redirectProgramOn(clientsMap, 'sockaccel_to_client');
        const sentinel = bindSentinel(toClientProg);

        const refused = await runCli(['purge', `--pin-root=${pinRoot}`, '--wait-seconds=1']);
        t.is(refused.code, 73, refused.stderr);
        t.regex(refused.stdout, /waiting up to 1 s for 2 accelerated sockets to close/);
        t.regex(refused.stderr, /2 accelerated sockets still use the maps under .*; nothing was removed/);
        t.deepEqual(listPins(pinRoot), pins, 'a refused purge removes nothing');
        t.is(readStatus(pinRoot).sockopsMode, 'draining');

        // Programs of an older build that did not bind: loaded on the pinned
        // maps, each holds only the sockhash it redirects into. --force must
        // bind them before it unpins anything.
        const older = loadUnboundRedirect(pinRoot);
        let forced: CliResult;
        try {
          forced = await runCli(['purge', `--pin-root=${pinRoot}`, '--wait-seconds=0', '--force']);
        } finally {
          older.close();
        }
        t.is(forced.code, 0, forced.stderr);
        t.regex(forced.stdout, /bound both sockhashes to 2 sk_msg programs of an older build/);
        t.regex(forced.stdout, /--force: 2 accelerated sockets keep orphaned maps until they close/);
        t.false(fs.existsSync(pinRoot), 'the pin root is gone');
        t.deepEqual(cgroupPrograms(cg.path), [], 'nothing attached to the cgroup');

        // The server closes first, the usual order for a reply: the client
        // FINs but still reads nothing, the server echoes the rest and closes.
        // Its socket leaves the servers map and releases the last hold on the
        // servers' sk_msg program, which puts its maps (the sentinel last).
        // Only the client's socket can keep the sockhashes alive now; were
        // the clients map freed, the kernel would drop the client's psock and
        // every echoed byte in it (sock_hash_free -> sk_psock_drop).
        stream.stopWriting();
        await stream.server.results(1);
        await waitFor("the server socket's sk_msg program to be freed", () => !mapLoaded(sentinel));
        t.true(mapLoaded(clientsMap), 'the clients map outlives the server socket while the client has unread bytes');
        t.true(mapLoaded(serversMap), 'the servers map outlives the server socket too');

        const result = await stream.finish(); // lets the client read at last
        assertIntegrity(t, result.client, result.server, { echo: true });
        t.true(result.client.conns[0]!.bytesInAfterFin > 16_384, 'the echo was still unread when purge --force ran');
        // No leak: the last socket gone, the kernel frees the orphaned maps.
        await waitFor('the orphaned sockhashes to be freed', () => !mapLoaded(clientsMap) && !mapLoaded(serversMap));
      });
    });
  });

  await withScratchCgroup(async (cg) => {
    await withDaemons(cg.path, async (start, pinRoot) => {
      const daemon = await start();
      t.is(await probeConnection(t, pinRoot, cg.path, 'before purge'), 2n);
      t.is((await daemon.stop()).code, 0);
      const purged = await runCli(['purge', `--pin-root=${pinRoot}`, '--wait-seconds=5']);
      t.is(purged.code, 0, purged.stderr);
      t.regex(purged.stdout, /detached the sock_ops program from its cgroup/);
      t.regex(purged.stdout, new RegExp(`removed ${pinRoot}$`, 'm'));
      t.false(fs.existsSync(pinRoot));
      t.deepEqual(cgroupPrograms(cg.path), []);
      const again = await runCli(['purge', `--pin-root=${pinRoot}`]);
      t.is(again.code, 0, again.stderr);
      t.regex(again.stdout, /nothing pinned under/);
    });
  });
});
