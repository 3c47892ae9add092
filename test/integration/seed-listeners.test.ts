/*
 * Listeners that existed before the daemon started: the ones in the attached
 * cgroup are registered at start (the listeners_iter iterator), so their
 * clients are accelerated without a server restart, in whatever network
 * namespace they listen (a pod's); the ones outside the cgroup are not.
 * Every byte checked (SHA-256 both ways) beside the counters.
 */
import test, { type TestFn } from 'ava';
import { withScratchCgroup } from '../helpers/cgroup';
import { withDaemon, type RunningDaemon } from '../helpers/daemon';
import { onlyCaps, privilegedTest } from '../helpers/privilege';
import { assertIntegrity, runClient, startServer, stopping } from '../helpers/traffic';
import { withPodNetwork } from '../helpers/netns';
import { assertAccelerated } from '../helpers/accelerated';

const privileged = privilegedTest(test.serial as unknown as TestFn);
const MiB = 1024 * 1024;
/** systemd/sockaccel.service's CapabilityBoundingSet. */
const SERVICE_CAPS = ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON'];

function counters(d: RunningDaemon): Record<string, bigint> {
  return Object.fromEntries(Object.entries(d.status().counters).map(([k, v]) => [k, BigInt(v)]));
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

privileged('listeners in pod network namespaces before the start are registered: pod-to-pod and in-pod loopback clients are accelerated', async (t) => {
  await withScratchCgroup((cg) =>
    withPodNetwork({ pods: 2 }, async (net) => {
      const [a, b] = net.pods;
      // Pod A serves its pod address, pod B its loopback: both keys need pod-namespace walks.
      const podServer = await startServer({ host: '::', mode: 'echo', cgroup: cg.path, netns: a.ns });
      const loopServer = await startServer({ host: '127.0.0.1', mode: 'echo', cgroup: cg.path, netns: b.ns });
      await stopping([podServer, loopServer], () =>
        // With only the service's capabilities: no CAP_SYS_ADMIN, so no setns into the pods.
        withDaemon({ cgroup: cg.path, localCidrs: ['10.213.0.0/24', 'fd00:5a::/64'], wrapper: onlyCaps(SERVICE_CAPS) }, async (d) => {
          const seeded = (d.process.events as { msg?: string; found?: number; added?: number }[]).find(
            (e) => e.msg === 'registered listeners that existed before the start',
          );
          t.true((seeded?.added ?? 0) >= 2, 'both pod servers registered');

          const pod = await assertAccelerated(t, d, podServer, { host: a.ipv4, netns: b.ns, cgroup: cg.path }, 'pod B -> pod A');
          t.not(pod.client.netns, pod.server.netns, 'the pair spans two namespaces');
          const loop = await assertAccelerated(t, d, loopServer, { host: '127.0.0.1', netns: b.ns, cgroup: cg.path }, 'pod B -> its own loopback');
          t.is(loop.client.netns, loop.server.netns);
        }),
      );
    }),
  );
});
