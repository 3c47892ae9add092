/*
 * Listeners that existed before the daemon started: the ones in the attached
 * cgroup are registered at start (the listeners_iter iterator), so their
 * clients are accelerated without a server restart; the ones outside are not.
 * Every byte checked (SHA-256 both ways) beside the counters.
 */
import test, { type TestFn } from 'ava';
import { withScratchCgroup } from '../helpers/cgroup';
import { withDaemon, type RunningDaemon } from '../helpers/daemon';
import { privilegedTest } from '../helpers/privilege';
import { assertIntegrity, runClient, startServer, type ServerHandle } from '../helpers/traffic';

const privileged = privilegedTest(test.serial as unknown as TestFn);
const MiB = 1024 * 1024;

function counters(d: RunningDaemon): Record<string, bigint> {
  return Object.fromEntries(Object.entries(d.status().counters).map(([k, v]) => [k, BigInt(v)]));
}

async function stopping<T>(servers: ServerHandle[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

privileged('listeners in the cgroup before the start are registered; those outside are not', async (t) => {
  await withScratchCgroup(async (cg) => {
    // Both listening before the daemon exists: no TCP_LISTEN_CB saw them.
    const inside = await startServer({ host: '::', mode: 'echo', cgroup: cg.path });
    const outside = await startServer({ host: '127.0.0.1', mode: 'echo' });
    await stopping([inside, outside], () =>
      withDaemon({ cgroup: cg.path }, async (d) => {
        const seeded = (d.process.events as { msg?: string; found?: number; added?: number }[]).find(
          (e) => e.msg === 'registered listeners that existed before the start',
        );
        t.truthy(seeded, 'the daemon logged the seeding');
        t.true((seeded?.found ?? 0) >= 1 && (seeded?.added ?? 0) >= 1, 'the server in the cgroup was registered');

        const bytes = 2 * MiB;
        let before = counters(d);
        const client = await runClient({ host: '127.0.0.1', port: inside.port, bytes, cgroup: cg.path });
        assertIntegrity(t, client, await inside.results(1), { bytesPerConn: bytes, echo: true });
        let after = counters(d);
        t.is(after.sockets_inserted - before.sockets_inserted, 2n, 'both ends of the connection inserted');
        t.is(after.pair_fallback - before.pair_fallback, 0n, 'no fallback to plain TCP');
        t.is(after.bytes_redirected - before.bytes_redirected, BigInt(2 * bytes), 'every byte of both directions redirected');

        before = counters(d);
        const plain = await runClient({ host: '127.0.0.1', port: outside.port, bytes, cgroup: cg.path });
        assertIntegrity(t, plain, await outside.results(1), { bytesPerConn: bytes, echo: true });
        after = counters(d);
        t.is(after.sockets_inserted - before.sockets_inserted, 0n, 'the client of the server outside was not inserted');
        t.is(after.bytes_redirected - before.bytes_redirected, 0n, 'nothing redirected');
        t.true(after.skipped_no_listener - before.skipped_no_listener >= 1n, 'the client found no listener');
      }),
    );
  });
});
