/*
 * Sidecar acceleration: app A -> sidecar A -> sidecar B -> app B across two
 * pod namespaces with istio-init's iptables rules in place, NAT on two of
 * the three hops. Every byte is checked end to end, the sidecars must still
 * read the right original destination, and the counters must show all three
 * hops paired and redirected.
 */
import test, { type ExecutionContext, type TestFn } from 'ava';
import { formatEndpoint } from '../../src/kernel/bpf-layout';
import { readPairs } from '../../src/kernel/pairs';
import { withScratchCgroup } from '../helpers/cgroup';
import { withDaemon, type RunningDaemon } from '../helpers/daemon';
import { assertChainIntegrity, ISTIO, sidecarAccepts, sidecarErrors, withMesh, type Mesh } from '../helpers/mesh';
import { privilegedTest } from '../helpers/privilege';
import { runClient, startServer, withHeldClient, type ClientOptions } from '../helpers/traffic';
import { waitFor } from '../helpers/wait-for';

const privileged = privilegedTest(test.serial as unknown as TestFn);
const MiB = 1024 * 1024;
const APP_PORT = 8080;
const EXCLUDED_PORT = 9090;
const POD_CIDRS = ['10.213.0.0/24', 'fd00:5a::/64'];
const MESH_DAEMON = { localCidrs: POD_CIDRS, mesh: 'istio', meshExcludedPorts: [EXCLUDED_PORT] };

type Counters = Record<string, bigint>;
const counters = (d: RunningDaemon): Counters =>
  Object.fromEntries(Object.entries(d.status().counters).map(([k, v]) => [k, BigInt(v)]));
const delta = (a: Counters, b: Counters): Counters => Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0n)]));

/** Runs app A -> app B through both sidecars, `conns` connections of `bytes`. */
async function chain(mesh: Mesh, cgroup: string | undefined, port: number, client: Partial<ClientOptions> & { bytes: number }) {
  const [a, b] = mesh.pods;
  const server = await startServer({ host: '0.0.0.0', port, mode: 'echo', cgroup, netns: b.ns });
  try {
    const report = await runClient({ host: b.ipv4, port, cgroup, netns: a.ns, ...client });
    return { client: report, server: await server.results(report.conns.length) };
  } finally {
    await server.stop();
  }
}

function assertOriginalDestinations(t: ExecutionContext, mesh: Mesh, port: number, conns: number): void {
  const [a, b] = mesh.pods;
  const want = `${b.ipv4}:${port}`;
  const outbound = sidecarAccepts(a).filter((x) => x.port === ISTIO.outbound);
  const inbound = sidecarAccepts(b).filter((x) => x.port === ISTIO.inbound);
  t.is(outbound.length, conns, 'sidecar A took every outbound connection');
  t.is(inbound.length, conns, 'sidecar B took every inbound connection');
  for (const x of [...outbound, ...inbound]) t.is(x.origDst, want, 'SO_ORIGINAL_DST is the app\'s destination');
  t.deepEqual([...sidecarErrors(a), ...sidecarErrors(b)], []);
}

privileged('the mesh fixture itself: byte-exact through both sidecars with the right original destination, no sockaccel', async (t) => {
  await withMesh({ pods: 2 }, async (mesh) => {
    const { client, server } = await chain(mesh, undefined, APP_PORT, { bytes: 2 * MiB, conns: 2 });
    assertChainIntegrity(t, client, server, 2 * MiB);
    assertOriginalDestinations(t, mesh, APP_PORT, 2);
  });
});

privileged('all three hops of app -> sidecar -> sidecar -> app are paired and redirected, byte-exact', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path, ...MESH_DAEMON }, (d) =>
      withMesh({ pods: 2, cgroup: cg.path }, async (mesh) => {
        const [a, b] = mesh.pods;
        const before = counters(d);
        // A first connection held open through the chain until released, to look at its live pairs.
        const server = await startServer({ host: '0.0.0.0', port: APP_PORT, mode: 'echo', cgroup: cg.path, netns: b.ns });
        try {
          await withHeldClient({ host: b.ipv4, port: APP_PORT, bytes: MiB, cgroup: cg.path, netns: a.ns }, async (held) => {
            await held.holding();
            // The sidecars open hops 2 and 3 as the bytes travel: wait for all three.
            const live = await waitFor('three paired hops', () => {
              const paired = readPairs(d.pinRoot).filter((c) => c.state === 'paired');
              return paired.length >= 3 && paired;
            });
            const hops = live.map((c) => `${formatEndpoint(c.dst.ip, c.dst.port)} => ${formatEndpoint(c.server.ip, c.server.port)}`).sort();
            t.deepEqual(
              hops,
              [`${b.ipv4}:${APP_PORT} => 127.0.0.1:${ISTIO.outbound}`, `${b.ipv4}:${APP_PORT} => ${b.ipv4}:${APP_PORT}`, `${b.ipv4}:${APP_PORT} => ${b.ipv4}:${ISTIO.inbound}`].sort(),
              'hop 1 (to sidecar A via REDIRECT), hop 2 (to sidecar B via REDIRECT), hop 3 (to app B) are paired',
            );
            t.deepEqual(live.map((c) => c.server.uid === ISTIO.proxyUid || c.client.uid === ISTIO.proxyUid), [true, true, true]);
            const report = await held.release();
            assertChainIntegrity(t, report, await server.results(1), MiB);
          });
        } finally {
          await server.stop();
        }

        const big = await chain(mesh, cg.path, APP_PORT, { bytes: 4 * MiB, conns: 2 });
        assertChainIntegrity(t, big.client, big.server, 4 * MiB);
        assertOriginalDestinations(t, mesh, APP_PORT, 3);

        const moved = delta(before, counters(d));
        t.is(moved.sockets_inserted, 3n * 3n * 2n, 'both ends of 3 hops of 3 connections inserted');
        t.is(moved.pair_fallback, 0n);
        t.is(moved.msgs_passed, 0n, 'nothing went over plain TCP');
        t.is(moved.bytes_redirected, BigInt(3 * 2 * (MiB + 2 * 4 * MiB)), 'every hop, both directions, every byte');
        t.is(a.ns !== b.ns, true);
      }),
    ),
  );
});

privileged('excluded ports and the proxy\'s own traffic to a non-local peer are never inserted', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path, ...MESH_DAEMON }, (d) =>
      withMesh({ pods: 2, cgroup: cg.path }, async (mesh) => {
        let before = counters(d);
        const excluded = await chain(mesh, cg.path, EXCLUDED_PORT, { bytes: MiB });
        assertChainIntegrity(t, excluded.client, excluded.server, MiB);
        let moved = delta(before, counters(d));
        t.is(moved.sockets_inserted, 0n, 'no hop of an excluded port inserted');
        t.true(moved.skipped_port >= 3n, 'each hop saw the excluded port');

        // The proxy (uid 1337) talking to a peer outside the node: iptables
        // leaves it alone, and so must sockaccel.
        const remote = mesh.net.remote;
        const server = await startServer({ host: '0.0.0.0', port: APP_PORT, mode: 'echo', netns: remote.ns });
        try {
          before = counters(d);
          const client = await runClient({ host: remote.ipv4, port: APP_PORT, bytes: MiB, cgroup: cg.path, netns: mesh.pods[0].ns, uid: ISTIO.proxyUid });
          t.is(client.conns[0].bytesIn, MiB);
          t.is(client.conns[0].sha256In, client.conns[0].sha256Out);
          moved = delta(before, counters(d));
          t.is(moved.sockets_inserted, 0n, 'the proxy\'s connection to a remote peer was not inserted');
          t.true(moved.skipped_not_local >= 1n);
        } finally {
          await server.stop();
        }
      }),
    ),
  );
});

privileged('churn: 1,000 short connections through the chain, all byte-exact, maps empty afterwards', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path, ...MESH_DAEMON }, (d) =>
      withMesh({ pods: 2, cgroup: cg.path }, async (mesh) => {
        const before = counters(d);
        for (let round = 0; round < 5; round++) {
          const r = await chain(mesh, cg.path, APP_PORT, { bytes: 4096, chunk: 1024, conns: 200, seed: `churn-${round}` });
          assertChainIntegrity(t, r.client, r.server, 4096);
        }
        const moved = delta(before, counters(d));
        t.true(moved.sockets_inserted >= 5400n, `nearly every hop accelerated (${moved.sockets_inserted} of 6000 sockets)`);
        // Closed sockets leave the maps as their close is processed: wait for all of them.
        await waitFor('empty sockhashes and pairing table', () => {
          const { sockets } = d.status();
          const pairs = readPairs(d.pinRoot).length;
          if (sockets.clients + sockets.servers + pairs > 0) throw new Error(`${sockets.clients} clients, ${sockets.servers} servers, ${pairs} pairs left`);
          return true;
        });
        const drained = delta(before, counters(d));
        t.is(drained.sockets_inserted, drained.sockets_removed, 'every inserted socket was removed');
      }),
    ),
  );
});
