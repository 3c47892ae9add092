/*
 * The core data path on the real kernel: the daemon attached to a scratch
 * cgroup, real TCP connections from processes started inside it, and every
 * byte checked (SHA-256 both ways) beside the redirect counters. A counter
 * that moved is necessary but not proof; the hashes are the proof.
 */
import os from 'node:os';
import test, { type ExecutionContext, type TestFn } from 'ava';
import { withScratchCgroup } from '../helpers/cgroup';
import { withDaemon, type DaemonOptions, type RunningDaemon } from '../helpers/daemon';
import { withPodNetwork } from '../helpers/netns';
import { privilegedTest } from '../helpers/privilege';
import {
  assertFionreadExact,
  assertIntegrity,
  exchange,
  fionreadCheck,
  runClient,
  startServer,
  type ClientOptions,
  type ExchangeResult,
  type ServerOptions,
} from '../helpers/traffic';
import { waitFor } from '../helpers/wait-for';
import { DEFAULT_OBJECT_DIR } from '../../src/kernel/bpf-object';
import { probePaired } from '../../src/kernel/fionread';
import { heldShapeSlots, readPendingCount } from '../../src/kernel/pairs';
import { chooseFreePorts } from '../../src/bench/ports';

// One daemon per test and 2 vCPUs: run this file's tests one at a time.
const privileged = privilegedTest(test.serial as unknown as TestFn);
const MiB = 1024 * 1024;
const POD_CIDRS = ['10.213.0.0/24', 'fd00:5a::/64'];

type Counters = Record<string, bigint>;

function counters(d: RunningDaemon): Counters {
  return Object.fromEntries(Object.entries(d.status().counters).map(([k, v]) => [k, BigInt(v)]));
}

function delta(before: Counters, after: Counters): Counters {
  return Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - (before[k] ?? 0n)]));
}

/** Runs an exchange and returns it with the counter movement it caused. */
async function measured(d: RunningDaemon, server: Omit<ServerOptions, 'port'>, client: Omit<ClientOptions, 'port'>) {
  const before = counters(d);
  const result = await exchange({ server, client });
  return { result, moved: delta(before, counters(d)) };
}

/** Every socket left the sockhash and every pairing entry was cleaned up. */
async function assertMapsDrain(t: ExecutionContext, d: RunningDaemon): Promise<void> {
  // Closed sockets leave the maps as their close is processed: wait for all of them.
  const s = await waitFor('the maps to drain', () => {
    const now = d.status();
    const busy = now.sockets.clients + now.sockets.servers > 0 || Object.values(now.pairs).some((n) => n > 0);
    if (busy) throw new Error(`sockets ${JSON.stringify(now.sockets)}, pairs ${JSON.stringify(now.pairs)}`);
    return now;
  });
  t.deepEqual([s.sockets.clients, s.sockets.servers], [0, 0], 'sockhashes empty after the connections closed');
  t.deepEqual(s.pairs, { pending: 0, paired: 0, fallback: 0 }, 'pairing table empty');
  // Every way out of PENDING took its connection off the count exactly once,
  // and every connection's first close freed its shape slot.
  t.is(readPendingCount(d.pinRoot), 0n, 'pending count back to 0');
  t.deepEqual(heldShapeSlots(d.pinRoot), [], 'no shape slot still owned');
}

function assertEcho(t: ExecutionContext, result: ExchangeResult, client: Omit<ClientOptions, 'port'>): void {
  assertIntegrity(t, result.client, result.server, { bytesPerConn: client.bytes, echo: true });
  t.is(result.client.conns.length, client.conns ?? 1);
}

/** Both ends of every connection were paired and everything went socket to socket. */
function assertAccelerated(t: ExecutionContext, moved: Counters, conns: number, bytesEachWay: number): void {
  t.is(moved.sockets_inserted, BigInt(2 * conns), 'both ends of every connection inserted');
  t.is(moved.pair_fallback, 0n, 'no connection fell back to plain TCP');
  t.is(moved.msgs_passed, 0n, 'no message went over plain TCP');
  t.is(moved.bytes_redirected, BigInt(2 * conns * bytesEachWay), 'every byte of both directions redirected');
}

function assertNeverInserted(t: ExecutionContext, moved: Counters): void {
  t.is(moved.sockets_inserted, 0n, 'no socket inserted');
  t.is(moved.bytes_redirected, 0n, 'nothing redirected');
}

async function inDaemonCgroup<T>(opts: Omit<DaemonOptions, 'cgroup'>, fn: (d: RunningDaemon, cgroup: string) => Promise<T>): Promise<T> {
  return withScratchCgroup((cg) => withDaemon({ ...opts, cgroup: cg.path }, (d) => fn(d, cg.path)));
}

async function echoAccelerated(t: ExecutionContext, serverHost: string, clientHost: string): Promise<void> {
  await inDaemonCgroup({}, async (d, cgroup) => {
    const client = { host: clientHost, bytes: 8 * MiB, conns: 2, cgroup };
    const { result, moved } = await measured(d, { host: serverHost, mode: 'echo', cgroup }, client);
    assertEcho(t, result, client);
    assertAccelerated(t, moved, 2, 8 * MiB);
    await assertMapsDrain(t, d);
  });
}

privileged('127.0.0.1: 8 MiB each way, redirected and byte-exact', (t) => echoAccelerated(t, '127.0.0.1', '127.0.0.1'));

privileged('::1: 8 MiB each way, redirected and byte-exact', (t) => echoAccelerated(t, '::1', '::1'));

privileged('IPv4 client to a server listening on :: (IPv4-mapped), redirected and byte-exact', (t) =>
  echoAccelerated(t, '::', '127.0.0.1'),
);

privileged('pod to pod across namespaces on a bridge, IPv4 and IPv6, redirected and byte-exact', async (t) => {
  await withPodNetwork({ pods: 2 }, (net) =>
    inDaemonCgroup({ localCidrs: POD_CIDRS }, async (d, cgroup) => {
      const [a, b] = net.pods;
      for (const [serverHost, clientHost] of [
        [b.ipv4, b.ipv4],
        [b.ipv6, b.ipv6],
      ]) {
        const client = { host: clientHost, bytes: 4 * MiB, conns: 2, cgroup, netns: a.ns };
        const { result, moved } = await measured(d, { host: serverHost, mode: 'echo', cgroup, netns: b.ns }, client);
        assertEcho(t, result, client);
        assertAccelerated(t, moved, 2, 4 * MiB);
      }
      await assertMapsDrain(t, d);
    }),
  );
});

privileged('a peer outside the local set is never inserted, on either side', async (t) => {
  await withPodNetwork({ pods: 1 }, (net) =>
    inDaemonCgroup({ localCidrs: POD_CIDRS }, async (d, cgroup) => {
      const client = { host: net.remote.ipv4, bytes: 2 * MiB, cgroup, netns: net.pods[0].ns };
      const { result, moved } = await measured(d, { host: net.remote.ipv4, mode: 'echo', cgroup, netns: net.remote.ns }, client);
      assertEcho(t, result, client);
      assertNeverInserted(t, moved);
      t.true(moved.skipped_not_local >= 1n, 'the client saw a non-local peer');
    }),
  );
});

privileged('a server outside the cgroup: neither end inserted, FIONREAD exact on both ends', async (t) => {
  await inDaemonCgroup({}, async (d, cgroup) => {
    const before = counters(d);
    const result = await fionreadCheck({ server: { host: '127.0.0.1' }, client: { host: '127.0.0.1', cgroup }, conns: 4 });
    const moved = delta(before, counters(d));
    assertFionreadExact(t, result.fionread, 8);
    assertIntegrity(t, result.client, result.server, { echo: true });
    assertNeverInserted(t, moved);
    t.true(moved.skipped_no_listener >= 4n, 'the client found no listener in the cgroup');
  });
});

privileged('FIONREAD on both ends of an accelerated connection is what the start-up probe measured: exact, or (Linux 6.1) blind', async (t) => {
  // The daemon's own probe decides whether this kernel counts redirected
  // bytes in FIONREAD; a blind kernel is refused unless the operator opts in
  // (the test daemons do). Real connections must agree with the probe.
  const verdict = await probePaired(DEFAULT_OBJECT_DIR);
  t.true(verdict.kind === 'counted' || verdict.kind === 'blind', JSON.stringify(verdict));
  await inDaemonCgroup({}, async (d, cgroup) => {
    const before = counters(d);
    const result = await fionreadCheck({ server: { host: '127.0.0.1', cgroup }, client: { host: '127.0.0.1', cgroup }, conns: 4 });
    const moved = delta(before, counters(d));
    if (verdict.kind === 'counted') {
      assertFionreadExact(t, result.fionread, 8);
    } else {
      t.is(result.fionread.length, 8);
      t.deepEqual(result.fionread.filter((r) => r.got !== 0), [], 'blind as the probe found: FIONREAD 0 while redirected bytes wait');
      t.log(`FIONREAD blind on ${os.release()}: the daemon refuses this kernel unless fionreadHazard is "accept"`);
    }
    assertIntegrity(t, result.client, result.server, { echo: true });
    t.is(moved.sockets_inserted, 8n);
    t.true(moved.bytes_redirected > 0n);
  });
});

privileged('1,000 concurrent connections stay byte-exact and the map empties when they close', async (t) => {
  await inDaemonCgroup({}, async (d, cgroup) => {
    const client = { host: '127.0.0.1', bytes: 64 * 1024, chunk: 16 * 1024, conns: 1000, cgroup, timeoutMs: 120_000 };
    const { result, moved } = await measured(d, { host: '127.0.0.1', mode: 'echo', cgroup }, client);
    assertEcho(t, result, client);
    // Under a SYN flood of 1,000 some clients may send before their server
    // is paired (how many depends on the machine's load); those connections
    // fall back as a whole and stay exact. Every connection is one or the
    // other: paired (both sockets inserted) or fallen back (its client
    // inserted, then counted once in pair_fallback).
    t.is(moved.sockets_inserted - moved.sockets_removed, 0n, 'every inserted socket left the map');
    t.is(moved.sockets_inserted + moved.pair_fallback, 2n * BigInt(client.conns), `every connection paired or fell back as a whole (${moved.sockets_inserted} sockets inserted, ${moved.pair_fallback} fell back)`);
    t.true(moved.bytes_redirected > 0n, 'connections were accelerated');
    t.log(`${BigInt(client.conns) - moved.pair_fallback} of ${client.conns} connections accelerated`);
    t.is(moved.insert_fail_full + moved.insert_fail_other, 0n);
    await assertMapsDrain(t, d);
  });
});

privileged('a full map falls back to plain TCP, counts the failure and loses nothing', async (t) => {
  await inDaemonCgroup({ mapSize: 16 }, async (d, cgroup) => {
    const client = { host: '127.0.0.1', bytes: 1 * MiB, conns: 24, cgroup };
    const { result, moved } = await measured(d, { host: '127.0.0.1', mode: 'echo', cgroup }, client);
    assertEcho(t, result, client);
    t.true(moved.insert_fail_full > 0n, 'inserts beyond the map size were counted as map-full');
    // Connections that did not fit never enter the map, so sk_msg never sees them.
    t.true(moved.sockets_inserted < 48n, 'not every connection was accelerated');
    t.true(moved.bytes_redirected > 0n, 'connections that fit were redirected');
    t.true(moved.bytes_redirected < BigInt(2 * 24 * MiB), 'connections that did not fit went over plain TCP');
    t.is(d.status().sockets.capacity, 16);
    await assertMapsDrain(t, d);
  });
});

privileged('first write in the same tick as connect: byte-exact, whichever path it took', async (t) => {
  await inDaemonCgroup({}, async (d, cgroup) => {
    const client = { host: '127.0.0.1', bytes: 256 * 1024, chunk: 1000, conns: 50, firstWriteImmediate: true, cgroup };
    const { result, moved } = await measured(d, { host: '127.0.0.1', mode: 'echo', cgroup }, client);
    assertEcho(t, result, client);
    t.true(moved.sockets_inserted > 0n);
    await assertMapsDrain(t, d);
  });
});

privileged('half-close and peer close: the reply arrives after our FIN and after the peer closed, byte-exact', async (t) => {
  await inDaemonCgroup({}, async (d, cgroup) => {
    const client = { host: '127.0.0.1', bytes: 4 * MiB, conns: 2, halfClose: true, cgroup };
    const { result, moved } = await measured(d, { host: '127.0.0.1', mode: 'hashback', replyBytes: 4 * MiB, cgroup }, client);
    assertIntegrity(t, result.client, result.server, { bytesPerConn: 4 * MiB });
    for (const c of result.client.conns) t.is(c.bytesInAfterFin, 32 + 4 * MiB, 'the whole reply came after our FIN');
    t.is(moved.sockets_inserted, 4n);
    t.is(moved.msgs_passed, 0n);
    await assertMapsDrain(t, d);
  });
});

privileged('excluded ports are never inserted', async (t) => {
  // The port must be known before the daemon starts: pick one, then listen on
  // it. Below the ephemeral range, so that no client's own port can take it.
  const [port] = await chooseFreePorts(1);
  await inDaemonCgroup({ excludePorts: [port] }, async (d, cgroup) => {
    const before = counters(d);
    const server = await startServer({ host: '127.0.0.1', port, mode: 'echo', cgroup });
    try {
      const client = await runClient({ host: '127.0.0.1', port, bytes: MiB, cgroup });
      assertIntegrity(t, client, await server.results(1), { bytesPerConn: MiB, echo: true });
    } finally {
      await server.stop();
    }
    const moved = delta(before, counters(d));
    assertNeverInserted(t, moved);
    t.true(moved.skipped_port >= 1n, 'the client saw an excluded port');
  });
});

privileged('a client paired by mistake (same port listening in the cgroup elsewhere) leaves the map before plain data lands', async (t) => {
  // Pod B listens on the wildcard inside the cgroup, so the port is known to
  // the listener table for every namespace; pod C serves the same port from
  // outside the cgroup. A client connecting to C is inserted, its server
  // never pairs, and the first plain segment must take the client out again
  // before it is queued, or FIONREAD would read 0 on the client.
  const [port] = await chooseFreePorts(1);
  const bytes = 32 * 1024;
  await withPodNetwork({ pods: 3 }, (net) =>
    inDaemonCgroup({ localCidrs: POD_CIDRS }, async (d, cgroup) => {
      const [a, b, c] = net.pods;
      const decoy = await startServer({ host: '0.0.0.0', port, mode: 'echo', cgroup, netns: b.ns });
      const real = await startServer({ host: '0.0.0.0', port, mode: 'fionread-check', bytes, netns: c.ns });
      try {
        const before = counters(d);
        const client = await runClient({ host: c.ipv4, port, bytes, conns: 4, mode: 'fionread-check', cgroup, netns: a.ns });
        const server = await real.results(4);
        const moved = delta(before, counters(d));
        assertIntegrity(t, client, server, { echo: true });
        assertFionreadExact(t, [...(await real.fionread(4)), ...client.fionread], 8);
        t.is(moved.sockets_inserted, 4n, 'the clients were inserted (the decoy listener matched)');
        t.is(moved.sockets_removed, 4n, 'and every one left the map again');
        t.is(moved.pair_fallback, 4n);
        t.is(moved.bytes_redirected, 0n);
        t.is(readPendingCount(d.pinRoot), 0n, 'each fallback took its connection off the pending count');
      } finally {
        await Promise.all([decoy.stop(), real.stop()]);
      }
    }),
  );
});
