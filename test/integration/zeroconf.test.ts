/*
 * Zero configuration on a simulated Kubernetes node: the node is a network
 * namespace, the daemon runs inside it (nsenter --net, so its routes and
 * `ip monitor` are the node's) with no configuration at all, started after
 * the pods and their servers are up. Pods are wired bridge-style (a /24 on a
 * bridge) or Calico-style (a veth and a /32 route each); mesh pods carry
 * istio-init's rules and a sidecar stand-in as UID 1337. Every connection is
 * checked byte for byte, with its live pair looked up while it runs.
 */
import test, { type TestFn } from 'ava';
import { addRoutedPod, createNetns as createNamedNetns, deleteAllNetns, deleteNetns, enableForwarding } from '../../src/fixtures/netns';
import { withScratchCgroup } from '../helpers/cgroup';
import { withDaemon, type DaemonOptions } from '../helpers/daemon';
import { withPodNetwork } from '../helpers/netns';
import { uniqueName } from '../helpers/names';
import { onlyCaps, privilegedTest } from '../helpers/privilege';
import { startServer, stopping } from '../helpers/traffic';
import { APP_PORT, assertAccelerated, assertChainAccelerated, assertPlain } from '../helpers/accelerated';
import { runThenCleanUp } from '../helpers/cleanup';
import { runCli } from '../helpers/cli';
import { waitFor } from '../helpers/wait-for';
import { startSidecar } from '../helpers/mesh';
import { applyIstioInit } from '../../src/fixtures/mesh-fixture';
import type { JsonLineProcess } from '../helpers/process';


const privileged = privilegedTest(test.serial as unknown as TestFn);

/**
 * The daemon as the node runs it: inside the node's namespace, with only
 * the service's capabilities (no CAP_SYS_ADMIN: it cannot enter the pods'
 * namespaces), nothing configured but where to attach and pin.
 */
const onNode = (node: string, cgroup: string): DaemonOptions => ({
  cgroup,
  wrapper: ['nsenter', `--net=/run/netns/${node}`, ...onlyCaps(['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON'])],
});

privileged('bridge-style node: pod-to-pod traffic is accelerated without configuration, over IPv4 and IPv6; the remote stays plain', async (t) => {
  await withScratchCgroup((cg) =>
    withPodNetwork({ pods: 2 }, async (net) => {
      const [a, b] = net.pods;
      const server4 = await startServer({ host: '::', mode: 'echo', cgroup: cg.path, netns: a.ns });
      const server6 = await startServer({ host: '::', mode: 'echo', cgroup: cg.path, netns: a.ns });
      const remote = await startServer({ host: '::', mode: 'echo', netns: net.remote.ns });
      await stopping([server4, server6, remote], () =>
        withDaemon(onNode(net.node.ns, cg.path), async (d) => {
          const local = d.status().localEndpoints;
          t.true(local.includes('10.213.0.0/24') && local.includes('fd00:5a::/64'), `the bridge's subnets were found (${local.join(' ')})`);
          t.false(local.includes('10.214.0.0/24'), 'the veth link to the remote is not a pod subnet');

          const pair4 = await assertAccelerated(t, d, server4, { host: a.ipv4, netns: b.ns, cgroup: cg.path }, 'pod B -> pod A, IPv4');
          t.not(pair4.client.netns, pair4.server.netns);
          await assertAccelerated(t, d, server6, { host: a.ipv6, netns: b.ns, cgroup: cg.path }, 'pod B -> pod A, IPv6');

          const moved = await assertPlain(t, d, remote, { host: net.remote.ipv4, netns: b.ns, cgroup: cg.path }, 'pod B -> the remote');
          t.true(moved.skipped_not_local >= 1n, 'the remote is not local');
          t.is(moved.mesh_candidates, 0n, 'a node without a mesh inserts nothing on a mesh\'s account');
          t.deepEqual(d.status().meshNamespaces, {}, 'no sidecar detected');

          const status = await runCli(['status', '--json', `--pin-root=${d.pinRoot}`]);
          const sources = (JSON.parse(status.stdout) as { localEndpointSources: Record<string, string> }).localEndpointSources;
          t.is(sources['10.213.0.0/24'], 'subnet 10.213.0.0/24 of bridge br0 (all ports veths)', 'status says where it came from');

          const doctor = await runCli(['doctor', '--json', `--pin-root=${d.pinRoot}`, `--cgroup-path=${cg.path}`], { prefix: ['nsenter', `--net=/run/netns/${net.node.ns}`] });
          const check = (JSON.parse(doctor.stdout) as { checks: { id: string; status: string; detail: string }[] }).checks.find((c) => c.id === 'network.local_endpoints');
          t.is(check?.status, 'pass');
          t.regex(check?.detail ?? '', /10\.213\.0\.0\/24 from subnet 10\.213\.0\.0\/24 of bridge br0/, 'doctor names the bridge');
        }),
      );
    }),
  );
});

privileged('Calico-style node: pods routed through veths are accelerated; a pod added later is local within a second, a removed one leaves the set', async (t) => {
  const tag = uniqueName('sa-');
  const names = { node: `${tag}-node`, pods: [0, 1, 2].map((i) => `${tag}-cpod${i}`) };
  const ips = ['10.215.0.10', '10.215.0.11', '10.215.0.12'];
  await withScratchCgroup((cg) =>
    runThenCleanUp(async () => {
      await createNamedNetns(names.node);
      await enableForwarding(names.node);
      for (const i of [0, 1]) {
        await createNamedNetns(names.pods[i]);
        await addRoutedPod(names.node, names.pods[i], `cali${i}`, ips[i]);
      }
      const server = await startServer({ host: '0.0.0.0', mode: 'echo', cgroup: cg.path, netns: names.pods[0] });
      await stopping([server], () =>
        withDaemon(onNode(names.node, cg.path), async (d) => {
          const local = d.status().localEndpoints;
          t.true(local.includes(`${ips[0]}/32`) && local.includes(`${ips[1]}/32`), `the pod routes were found (${local.join(' ')})`);
          const pair = await assertAccelerated(t, d, server, { host: ips[0], netns: names.pods[1], cgroup: cg.path }, 'pod 1 -> pod 0');
          t.not(pair.client.netns, pair.server.netns);

          // A pod scheduled after the start.
          await createNamedNetns(names.pods[2]);
          await addRoutedPod(names.node, names.pods[2], 'cali2', ips[2]);
          const routed = Date.now();
          await waitFor('the new pod\'s address in the local set', () => d.status().localEndpoints.includes(`${ips[2]}/32`), { timeoutMs: 1_000, intervalMs: 10 });
          t.log(`new pod local after ${Date.now() - routed} ms`);
          const late = await startServer({ host: '0.0.0.0', mode: 'echo', cgroup: cg.path, netns: names.pods[2] });
          await stopping([late], () => assertAccelerated(t, d, late, { host: ips[2], netns: names.pods[0], cgroup: cg.path }, 'pod 0 -> the new pod 2'));

          // The pod goes: its veth, and with it its route.
          await deleteNetns(names.pods[2]);
          await waitFor('the removed pod\'s address to leave the local set', () => !d.status().localEndpoints.includes(`${ips[2]}/32`), { timeoutMs: 5_000 });
          t.true(d.status().localEndpoints.includes(`${ips[0]}/32`), 'the other pods stay');
        }),
      );
    }, () => deleteAllNetns([...names.pods, names.node])),
  );
});

privileged('mesh auto: sidecars are detected per pod; all three hops of the chain are paired; a pod without a sidecar inserts nothing for a non-local peer; a sidecar started later is detected', async (t) => {
  await withScratchCgroup((cg) =>
    withPodNetwork({ pods: 3 }, async (net) => {
      const [a, b, c] = net.pods;
      const sidecars: JsonLineProcess[] = [];
      const app = await startServer({ host: '0.0.0.0', port: APP_PORT, mode: 'echo', cgroup: cg.path, netns: b.ns });
      const remote = await startServer({ host: '0.0.0.0', mode: 'echo', netns: net.remote.ns });
      await runThenCleanUp(async () => {
        // Pods A and B are meshed before the daemon exists; pod C is not.
        for (const pod of [a, b]) {
          await applyIstioInit(pod.ns);
          sidecars.push(await startSidecar(pod, cg.path));
        }
        await withDaemon(onNode(net.node.ns, cg.path), async (d) => {
          const meshed = Object.values(d.status().meshNamespaces);
          t.deepEqual(meshed, ['istio', 'istio'], 'the two sidecars that predate the daemon were found, as Istio');

          await assertChainAccelerated(t, d, cg.path, a, b, app, 'A -> B');

          const plain = await assertPlain(t, d, remote, { host: net.remote.ipv4, netns: c.ns, cgroup: cg.path }, 'pod C (no sidecar) -> the remote');
          t.is(plain.mesh_candidates, 0n, 'no mesh candidate in a pod without a sidecar');
          t.true(plain.skipped_not_local >= 1n);

          // Pod C gets its sidecar now: TCP_LISTEN_CB sees it listen.
          await applyIstioInit(c.ns);
          sidecars.push(await startSidecar(c, cg.path));
          await waitFor('the new sidecar to be detected', () => Object.keys(d.status().meshNamespaces).length === 3);
          await assertChainAccelerated(t, d, cg.path, c, b, app, 'C -> B');
        });
      }, async () => {
        await Promise.all([...sidecars.map((s) => s.kill()), app.stop(), remote.stop()]);
      });
    }),
  );
});
