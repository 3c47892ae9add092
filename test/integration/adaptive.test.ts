/*
 * The adaptive policy on the real kernel: services whose connections lose
 * from the redirect (one request per connection, streams of small writes)
 * are learned and left on plain TCP; services that gain stay accelerated; a
 * decision flips back when the traffic changes; overrides win; the learned
 * state stays bounded. Every exchange is checked byte for byte, whichever
 * path it took; the counters say which path that was.
 *
 * The calibration is pinned here (the defaults are one machine's
 * measurements), so the verdicts do not depend on the CPU that runs the test.
 */
import net from 'node:net';
import path from 'node:path';
import test, { type ExecutionContext, type TestFn } from 'ava';
import { withScratchCgroup } from '../helpers/cgroup';
import { withDaemon, type RunningDaemon } from '../helpers/daemon';
import { withPodNetwork } from '../helpers/netns';
import { DEFAULT_POD_SUBNET4 } from '../../src/fixtures/netns';
import { counters, delta, type Counters } from '../helpers/accelerated';
import { TEST_CALIBRATION_FLAGS } from '../helpers/calibration';
import { EVIDENCE_MESSAGES } from '../../src/adaptive/policy';
import { loadgenExchange } from '../helpers/loadgen';
import { privilegedTest } from '../helpers/privilege';
import { JsonLineProcess } from '../helpers/process';
import { assertIntegrity, runClient, startServer, stopping } from '../helpers/traffic';
import { waitFor, scaled } from '../helpers/wait-for';
import { mapPinPath, withPinnedFd } from '../../src/kernel/pins';
import { readDecisions, readServices, type Decision, type ServiceEntry } from '../../src/kernel/services';

// One daemon per test and 2 vCPUs: one at a time.
const privileged = privilegedTest(test.serial as unknown as TestFn);
const HOST = '127.0.0.1';
const POD_CIDRS = [DEFAULT_POD_SUBNET4];

/**
 * Fast learning and a fixed calibration. The half-life is an hour, so that
 * nothing decays within a test: evidence is then a count of connections and
 * messages, whatever the machine's speed. (With seconds, a slow machine's
 * messages fade as fast as they come: at a 2 s half-life a stream slower than
 * ~350 messages a second never adds up to 1000.)
 */
const LEARN = {
  'adaptive-interval-ms': 100,
  'adaptive-min-connections': 10,
  'adaptive-half-life-seconds': 3600,
  'adaptive-explore-permille': 0,
  ...TEST_CALIBRATION_FLAGS,
};

function args(over: Record<string, number | string> = {}): string[] {
  return Object.entries({ ...LEARN, ...over }).map(([k, v]) => `--${k}=${v}`);
}

/** A port nobody listens on right now: the tests' services need fixed ports. */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, HOST, resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

function serviceOn(d: RunningDaemon, port: number): ServiceEntry | undefined {
  return withPinnedFd(mapPinPath(d.pinRoot, 'sa_services'), readServices).find((s) => s.key.port === port);
}

function decisionOn(d: RunningDaemon, port: number): Decision | undefined {
  const all = withPinnedFd(mapPinPath(d.pinRoot, 'sa_decisions'), readDecisions);
  return [...all.values()].find((e) => e.key.port === port)?.decision;
}

function waitForVerdict(d: RunningDaemon, port: number, verdict: Decision['verdict']): Promise<Decision> {
  return waitFor(`a "${verdict}" decision for port ${port}`, () => {
    const dec = decisionOn(d, port);
    return dec?.verdict === verdict && dec;
  }, { timeoutMs: 20_000, failIf: d.process.exitedReport });
}

/** `conns` one-request connections (64 B each way, one connection each), byte-exact; returns the counter movement. */
async function oneShots(t: ExecutionContext, d: RunningDaemon, cgroup: string, port: number, conns: number, seed: string): Promise<Counters> {
  const before = counters(d);
  const server = await startServer({ host: HOST, port, cgroup });
  await stopping([server], async () => {
    const client = await runClient({ host: HOST, port, bytes: 64, chunk: 64, conns, cgroup, seed });
    assertIntegrity(t, client, await server.results(conns, 30_000), { bytesPerConn: 64, echo: true });
  });
  return delta(before, counters(d));
}

/**
 * Sends that are evidence on their own in one connection (EVIDENCE_MESSAGES,
 * with room to spare): a count, so that a slow machine sends as much, later.
 */
const EVIDENCE_SENDS = 1.5 * EVIDENCE_MESSAGES;

/** One loadgen connection for 300 ms and at least `minSends` sends, byte-exact; returns the counter movement. */
async function loadgenRun(d: RunningDaemon, cgroup: string, port: number, mode: 'rr' | 'stream', size: number, minSends?: number) {
  const before = counters(d);
  const run = await loadgenExchange({ mode, size, host: HOST, port, cgroup, durationMs: 300, minSends });
  return { run, moved: delta(before, counters(d)) };
}

privileged('a one-shot service is learned and left on plain TCP; its later connections are never inserted, byte-exact', async (t) => {
  await withScratchCgroup(async (cg) => {
    const port = await freePort();
    await withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: args() }, async (d) => {
      const learning = await oneShots(t, d, cg.path, port, 20, 'warm');
      t.is(learning.sockets_inserted, 40n, 'accelerated while nothing is known');
      const dec = await waitForVerdict(d, port, 'plain');
      t.is(dec.reason, 'short-connections');
      t.true(dec.savedNsPerConn < 0, `the estimate says each connection loses (${dec.savedNsPerConn} ns)`);

      const after = await oneShots(t, d, cg.path, port, 20, 'after');
      t.is(after.sockets_inserted, 0n, 'no end of any later connection entered a map');
      t.is(after.skipped_adaptive, 20n, 'every later connection was left plain by the decision');
      t.is(after.bytes_redirected, 0n);
      t.true((serviceOn(d, port)?.counters.connsPlain ?? 0n) >= 20n, 'the service counts the connections it left plain');
    });
  });
});

privileged('a service that streams small writes is learned and left on plain TCP, byte-exact', async (t) => {
  await withScratchCgroup(async (cg) => {
    const port = await freePort();
    await withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: args() }, async (d) => {
      const first = await loadgenRun(d, cg.path, port, 'stream', 1024, EVIDENCE_SENDS);
      t.is(first.moved.sockets_inserted, 2n, 'the first stream was accelerated');
      const dec = await waitForVerdict(d, port, 'plain');
      t.is(dec.reason, 'small-writes');

      const next = await loadgenRun(d, cg.path, port, 'stream', 1024);
      t.is(next.moved.sockets_inserted, 0n, 'the next stream was never inserted');
      t.is(next.moved.skipped_adaptive, 1n);
      t.is(next.moved.bytes_redirected, 0n, 'every byte went over plain TCP (and loadgen checked every one)');
    });
  });
});

privileged('the same small-write stream between two pods (across their veths, where it gains) stays accelerated, byte-exact', async (t) => {
  await withPodNetwork({ pods: 2 }, (net) =>
    withScratchCgroup(async (cg) => {
      const [client, server] = net.pods;
      const port = await freePort();
      await withDaemon({ cgroup: cg.path, localCidrs: POD_CIDRS, extraArgs: args() }, async (d) => {
        const run = (): Promise<Counters> => {
          const before = counters(d);
          const exchange = { mode: 'stream' as const, size: 1024, host: server.ipv4, port, cgroup: cg.path, netns: client.ns, durationMs: 300, minSends: EVIDENCE_SENDS };
          return loadgenExchange({ ...exchange, server: { netns: server.ns, listen: '0.0.0.0' } }).then(() => delta(before, counters(d)));
        };
        t.is((await run()).sockets_inserted, 2n, 'the first stream was accelerated');
        const dec = await waitFor('the pod-to-pod service to be decided', () => decisionOn(d, port), { failIf: d.process.exitedReport });
        t.like(dec, { verdict: 'accelerate', reason: 'gains' });
        t.is(serviceOn(d, port)?.counters.crossNetns, true, 'the service knows its connections cross namespaces');
        const next = await run();
        t.is(next.sockets_inserted, 2n, 'the next stream is accelerated too');
        t.is(next.bytes_passed, 0n);
      });
    }),
  );
});

privileged('a keep-alive request/response service stays accelerated, byte-exact', async (t) => {
  await withScratchCgroup(async (cg) => {
    const port = await freePort();
    await withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: args() }, async (d) => {
      const { run, moved } = await loadgenRun(d, cg.path, port, 'rr', 64, EVIDENCE_SENDS);
      t.is(moved.sockets_inserted, 2n, 'both ends paired');
      t.is(moved.msgs_passed, 0n, 'nothing over plain TCP');
      t.true(run.client.mode === 'rr' && moved.bytes_redirected >= 2n * 64n * BigInt(run.client.messages), 'every request and response redirected');
      const dec = await waitFor('the keep-alive service to be decided', () => decisionOn(d, port), { failIf: d.process.exitedReport });
      t.is(dec.verdict, 'accelerate');
      t.is(dec.reason, 'gains');
      t.true(dec.savedNsPerConn > 0);
    });
  });
});

privileged('a decision flips back when the service starts to gain (explored connections keep the learning going)', async (t) => {
  await withScratchCgroup(async (cg) => {
    const port = await freePort();
    await withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: args({ 'adaptive-explore-permille': 300 }) }, async (d) => {
      await oneShots(t, d, cg.path, port, 20, 'one-shot');
      await waitForVerdict(d, port, 'plain');

      // Same port, now keep-alive traffic: explored connections show the gain.
      // FLIP_SENDS requests are enough in one explored connection: their turns
      // save more than the 20 one-shot setups cost (with the test calibration,
      // 100 × 2 × 6 µs against 20 × (30 − 2 × 6) µs).
      const FLIP_SENDS = 100;
      let runs = 0;
      await waitFor('the decision to flip back to accelerate', async () => {
        runs++;
        await loadgenRun(d, cg.path, port, 'rr', 64, FLIP_SENDS);
        return decisionOn(d, port)?.verdict === 'accelerate';
      }, { timeoutMs: 60_000, failIf: d.process.exitedReport });
      t.log(`flipped after ${runs} keep-alive connections`);
      const { moved } = await loadgenRun(d, cg.path, port, 'rr', 64);
      t.is(moved.sockets_inserted, 2n, 'the next connection is accelerated again');
      t.is(moved.msgs_passed, 0n);
    });
  });
});

privileged('per-port overrides win over the decision, both ways', async (t) => {
  await withScratchCgroup(async (cg) => {
    const forcedOn = await freePort();
    const forcedOff = await freePort();
    const overrides = `${forcedOn}=accelerate,${forcedOff}=plain`;
    await withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: [...args(), `--adaptive-overrides=${overrides}`] }, async (d) => {
      await oneShots(t, d, cg.path, forcedOn, 20, 'one');
      // Long enough for the learner to have seen them: its own tick, several times over.
      await waitFor('the learner to see the forced service', () => (serviceOn(d, forcedOn)?.counters.connsClosed ?? 0n) >= 20n);
      const later = await oneShots(t, d, cg.path, forcedOn, 20, 'two');
      t.is(later.sockets_inserted, 40n, 'forced on: still accelerated although each connection loses');
      t.is(later.skipped_adaptive, 0n);

      const { moved } = await loadgenRun(d, cg.path, forcedOff, 'rr', 64);
      t.is(moved.sockets_inserted, 0n, 'forced off: a winning shape stays plain');
      t.is(moved.bytes_redirected, 0n);
    });
  });
});

const MANY_SERVICES = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'many-services.js');

privileged('the learned state stays bounded when thousands of services come and go', async (t) => {
  await withScratchCgroup(async (cg) => {
    const max = 64;
    await withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: args({ 'adaptive-max-services': max, 'adaptive-min-connections': 1 }) }, async (d) => {
      const churn = new JsonLineProcess('many services', [process.execPath, MANY_SERVICES, '--host', HOST, '--count', '2000'], { cgroup: cg.path });
      const status = await churn.exitWithin(scaled(120_000));
      const done = (churn.events as unknown as { event: string; bad?: string[] }[]).find((e) => e.event === 'done');
      t.is(status.code, 0, churn.failureReport('the churn failed'));
      t.deepEqual(done?.bad, [], 'every service echoed byte for byte');

      const services = withPinnedFd(mapPinPath(d.pinRoot, 'sa_services'), readServices);
      t.true(services.length <= max, `${services.length} services recorded, at most ${max}`);
      // The learner catches up, then its decisions are bounded too.
      await waitFor('the learner to decide on what it holds', () => withPinnedFd(mapPinPath(d.pinRoot, 'sa_decisions'), readDecisions).size > 0);
      const decisions = withPinnedFd(mapPinPath(d.pinRoot, 'sa_decisions'), readDecisions);
      t.true(decisions.size <= max, `${decisions.size} decisions, at most ${max}`);

      // Still working: a new service after the churn learns and stays byte-exact.
      const port = await freePort();
      const moved = await oneShots(t, d, cg.path, port, 5, 'after-churn');
      t.is(moved.sockets_inserted, 10n);
      // ...and is decided, although the churn filled the decisions map: the
      // decisions of services evicted longest ago make room.
      await waitForVerdict(d, port, 'plain');
      t.true(withPinnedFd(mapPinPath(d.pinRoot, 'sa_decisions'), readDecisions).size <= max);
      t.is(d.process.exitedReport(), undefined, 'the daemon is still running');
    });
  });
});
