/*
 * The adaptive policy on the real kernel (issue 10): the daemon learns each
 * service from the shape its connections have in the kernel, leaves the ones
 * that lose on plain TCP and keeps accelerating the ones that gain. Every
 * batch of traffic is checked byte for byte (SHA-256 both ways), whichever
 * path its connections took; the counters show which one that was.
 */
import net from 'node:net';
import test, { type ExecutionContext, type TestFn } from 'ava';
import { withScratchCgroup } from '../helpers/cgroup';
import { withDaemon, type RunningDaemon } from '../helpers/daemon';
import { withNetns } from '../helpers/netns';
import { privilegedTest } from '../helpers/privilege';
import { assertIntegrity, runClient, startServer, stopping, type ClientOptions, type ServerHandle } from '../helpers/traffic';
import { waitFor } from '../helpers/wait-for';
import type { ServiceRow } from '../../src/adaptive/report';

// One daemon per test and 2 vCPUs: run this file's tests one at a time.
const privileged = privilegedTest(test.serial as unknown as TestFn);
const KiB = 1024;

/** Fast learning for tests: a decision within a few rounds of 50 ms. */
const LEARN_FAST = ['--adaptive-interval-ms=50', '--adaptive-min-connections=10'];

type Counters = Record<string, bigint>;
const counters = (d: RunningDaemon): Counters => Object.fromEntries(Object.entries(d.status().counters).map(([k, v]) => [k, BigInt(v)]));
const delta = (a: Counters, b: Counters): Counters => Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0n)]));

/** The status row of the service behind `host:port` (any client namespace). */
function serviceRow(d: RunningDaemon, host: string, port: number): ServiceRow | undefined {
  return d.status().adaptive.services.find((r) => r.service === `${host}:${port}` || r.service.startsWith(`${host}:${port}@`));
}

function waitForState(d: RunningDaemon, host: string, port: number, state: string, reason?: string): Promise<ServiceRow> {
  return waitFor(`${host}:${port} to be ${state}${reason ? ` (${reason})` : ''}`, () => {
    const row = serviceRow(d, host, port);
    return row?.state === state && (reason === undefined || row.reason === reason) && row;
  });
}

let batchNo = 0;

/**
 * Runs one client against `server` and checks its connections byte for byte
 * against the server's reports for them (the server also holds earlier
 * batches'). Returns what the counters moved by meanwhile.
 */
async function batch(t: ExecutionContext, d: RunningDaemon, server: ServerHandle, served: { n: number }, client: Omit<ClientOptions, 'port' | 'seed'>, echo: boolean): Promise<Counters> {
  const before = counters(d);
  const report = await runClient({ ...client, port: server.port, seed: `batch${++batchNo}` });
  served.n += report.conns.length;
  const locals = new Set(report.conns.map((c) => c.local));
  const mine = (await server.results(served.n)).filter((r) => locals.has(r.remote));
  assertIntegrity(t, report, mine, { echo, bytesPerConn: client.bytes });
  return delta(before, counters(d));
}

/** A request and a response per connection: 2 turns, the psock setup costs more than they save. */
const oneShot = (cgroup: string, conns = 30): Omit<ClientOptions, 'port' | 'seed'> => ({ host: '127.0.0.1', bytes: 64, chunk: 64, conns, cgroup });
/** Many request/response round trips per connection. */
const keepAlive = (cgroup: string, conns = 3, trips = 400): Omit<ClientOptions, 'port' | 'seed'> => ({
  host: '127.0.0.1',
  bytes: 64 * trips,
  chunk: 64,
  pauseMs: 1,
  conns,
  cgroup,
});

privileged('a one-shot service is learned and left plain; its next connections stay on plain TCP, intact', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: [...LEARN_FAST, '--adaptive-explore-permille=0'] }, async (d) => {
      const server = await startServer({ host: '127.0.0.1', mode: 'echo', cgroup: cg.path });
      await stopping([server], async () => {
        const served = { n: 0 };
        const learning = await batch(t, d, server, served, oneShot(cg.path), true);
        t.is(learning.sockets_inserted, 60n, 'while learning, every connection is accelerated');
        const row = await waitForState(d, '127.0.0.1', server.port, 'plain', 'short-connections');
        t.is(row.serverPort, server.port);
        t.true(row.turnsPerConn! >= 1.9 && row.turnsPerConn! <= 2.1, `turns per connection ${row.turnsPerConn}`);
        t.regex(row.why, /^short connections: loses /);
        t.log(`${row.service}: ${row.why}`);

        const after = await batch(t, d, server, served, oneShot(cg.path), true);
        t.is(after.skipped_adaptive, 30n, 'every new connection was left plain');
        t.is(after.sockets_inserted, 0n);
        t.is(after.msgs_redirected, 0n);
        t.is(serviceRow(d, '127.0.0.1', server.port)?.connsPlain, 30);
      });
      const log = d.process.events.find((e) => (e as { msg?: string }).msg === 'service decision changed') as Record<string, unknown> | undefined;
      t.like(log, { level: 30, component: 'adaptive', from: 'learning', to: 'plain (short-connections)', reason: 'short-connections' });
      t.regex(String(log?.why), /turns per connection save .*setup costs/);
    }),
  );
});

privileged('a stream of small writes is learned and left plain', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: [...LEARN_FAST, '--adaptive-explore-permille=0'] }, async (d) => {
      // sink: the server answers nothing; each connection is one burst of 1 KiB writes
      const server = await startServer({ host: '127.0.0.1', mode: 'sink', cgroup: cg.path });
      await stopping([server], async () => {
        const served = { n: 0 };
        const stream = { host: '127.0.0.1', bytes: 256 * KiB, chunk: KiB, conns: 12, cgroup: cg.path };
        await batch(t, d, server, served, stream, false);
        const row = await waitForState(d, '127.0.0.1', server.port, 'plain', 'small-writes');
        t.true(row.msgsPerTurn! > 10, `messages per turn ${row.msgsPerTurn}`);
        t.true(row.avgWriteBytes! <= 16 * KiB, `average write ${row.avgWriteBytes}`);
        t.log(`${row.service}: ${row.msgsPerTurn?.toFixed(1)} msgs/turn of ${row.avgWriteBytes?.toFixed(0)} B; ${row.why}`);
        const after = await batch(t, d, server, served, stream, false);
        t.is(after.skipped_adaptive, 12n);
        t.is(after.bytes_redirected, 0n);
      });
    }),
  );
});

privileged('a keep-alive service is decided accelerate and stays accelerated', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: LEARN_FAST }, async (d) => {
      const server = await startServer({ host: '127.0.0.1', mode: 'echo', cgroup: cg.path });
      await stopping([server], async () => {
        const served = { n: 0 };
        await batch(t, d, server, served, keepAlive(cg.path), true);
        const row = await waitForState(d, '127.0.0.1', server.port, 'accelerate', 'gains');
        t.true(row.turnsPerConn! > 100, `turns per connection ${row.turnsPerConn}`);
        t.log(`${row.service}: ${row.why}`);
        const after = await batch(t, d, server, served, keepAlive(cg.path), true);
        t.is(after.sockets_inserted, 6n, 'both ends of the 3 new connections');
        t.is(after.skipped_adaptive, 0n);
        t.is(after.msgs_passed, 0n);
        t.is(after.bytes_redirected, 2n * 3n * 64n * 400n);
      });
    }),
  );
});

privileged('the decision flips back when the traffic changes (explored connections, half-life)', async (t) => {
  // Half of a plain service's connections explored, a 1 s half-life: the old one-shot history fades fast.
  const args = ['--adaptive-interval-ms=50', '--adaptive-min-connections=5', '--adaptive-half-life-seconds=1', '--adaptive-explore-permille=500'];
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: args }, async (d) => {
      const server = await startServer({ host: '127.0.0.1', mode: 'echo', cgroup: cg.path });
      await stopping([server], async () => {
        const served = { n: 0 };
        await batch(t, d, server, served, oneShot(cg.path, 20), true);
        await waitForState(d, '127.0.0.1', server.port, 'plain', 'short-connections');
        // The service turns keep-alive: only the explored connections show it.
        let explored = 0n;
        const row = await waitFor(
          'the service to flip back to accelerate',
          async () => {
            const moved = await batch(t, d, server, served, keepAlive(cg.path, 4, 200), true);
            explored += moved.adaptive_explored;
            const now = serviceRow(d, '127.0.0.1', server.port);
            return now?.state === 'accelerate' && now;
          },
          { timeoutMs: 60_000, intervalMs: 0 },
        );
        t.is(row.reason, 'gains');
        t.true(explored > 0n, 'it learned from explored connections');
        const logs = d.process.events.filter((e) => (e as { msg?: string }).msg === 'service decision changed') as Record<string, unknown>[];
        t.deepEqual(logs.map((l) => `${l.from} -> ${l.to}`), ['learning -> plain (short-connections)', 'plain (short-connections) -> accelerate (gains)']);
      });
    }),
  );
});

/** A port nothing listens on now (bound and released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

privileged('an override wins over the decision: a forced port stays accelerated, a "plain" port is never accelerated', async (t) => {
  const forced = await freePort();
  const never = await freePort();
  const args = [...LEARN_FAST, '--adaptive-explore-permille=0', `--adaptive-overrides=${forced}=accelerate,${never}=plain`];
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: args }, async (d) => {
      const control = await startServer({ host: '127.0.0.1', mode: 'echo', cgroup: cg.path });
      const onForced = await startServer({ host: '127.0.0.1', port: forced, mode: 'echo', cgroup: cg.path });
      const onNever = await startServer({ host: '127.0.0.1', port: never, mode: 'echo', cgroup: cg.path });
      await stopping([control, onForced, onNever], async () => {
        const served = { control: { n: 0 }, forced: { n: 0 }, never: { n: 0 } };
        await batch(t, d, control, served.control, oneShot(cg.path), true);
        const forcedFirst = await batch(t, d, onForced, served.forced, oneShot(cg.path), true);
        t.is(forcedFirst.sockets_inserted, 60n);
        // The same traffic without an override is decided plain by now...
        await waitForState(d, '127.0.0.1', control.port, 'plain', 'short-connections');
        // ...and on the forced port it still is accelerated, every connection.
        const forcedAgain = await batch(t, d, onForced, served.forced, oneShot(cg.path), true);
        t.is(forcedAgain.sockets_inserted, 60n);
        t.is(forcedAgain.skipped_adaptive, 0n);
        t.is(serviceRow(d, '127.0.0.1', forced)?.state, 'learning', 'no decision written for an overridden port');
        // The "plain" override is an exclusion: never accelerated, not even while learning.
        const neverMoved = await batch(t, d, onNever, served.never, oneShot(cg.path), true);
        t.is(neverMoved.sockets_inserted, 0n);
        t.is(neverMoved.skipped_port, 30n);
      });
    }),
  );
});

privileged('statistics stay bounded when thousands of services come and go', async (t) => {
  const maxServices = 64;
  const args = ['--adaptive-interval-ms=50', '--adaptive-min-connections=1', `--adaptive-max-services=${maxServices}`];
  // A namespace of our own: its server listens on every loopback address (127.0.0.0/8) and nowhere else.
  await withNetns(['adaptive'], ([ns]) =>
    withScratchCgroup((cg) =>
      withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: args }, async (d) => {
        const server = await startServer({ host: '0.0.0.0', mode: 'echo', cgroup: cg.path, netns: ns });
        await stopping([server], async () => {
          const served = { n: 0 };
          const perBatch = 250;
          let most = 0;
          for (let b = 1; b <= 8; b++) {
            // 250 connections, each to its own address: 250 new services per batch, 2,000 in all.
            const moved = await batch(t, d, server, served, { host: `127.${b}.0.1`, hostSpread: perBatch, bytes: 64, chunk: 64, conns: perBatch, cgroup: cg.path, netns: ns }, true);
            t.is(moved.sockets_inserted + 2n * moved.skipped_adaptive, 2n * BigInt(perBatch), `batch ${b}: every connection accelerated or left plain`);
            const { services } = d.status().adaptive;
            most = Math.max(most, services.length);
            t.true(services.length <= 2 * maxServices, `batch ${b}: ${services.length} services shown`);
          }
          t.log(`${served.n} connections to ${served.n} services; at most ${most} services held (maps of ${maxServices})`);
          t.true(most > maxServices, 'the maps did fill');
          t.is(d.status().counters.services_full, '0');
          // Full maps still take new decisions: the services evicted longest ago give theirs up.
          // (Which decision depends on the churn: a service the LRU evicted while its
          // connection was open is recreated at the close without the setup it paid.)
          await waitFor('a service of the last batch to be decided', () =>
            d.status().adaptive.services.find((r) => r.service.startsWith('127.8.') && r.state !== 'learning'),
          );
          t.true(d.status().adaptive.services.filter((r) => r.state !== 'learning').length <= maxServices, 'no more decisions than the map holds');
        });
        t.deepEqual(d.process.events.filter((e) => (e as { level?: number }).level! >= 40), [], 'no warnings or errors logged');
      }),
    ),
  );
});
