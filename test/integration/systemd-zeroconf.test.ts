/*
 * The zero-configuration promise under a real systemd: a simulated
 * Kubernetes node (a network namespace with pods on a bridge, two of them
 * meshed the Istio way, two plain) boots the test container as its own
 * network namespace (nspawn --network-namespace-path), sockaccel is
 * installed, its configuration file is removed, and `systemctl enable --now
 * sockaccel` alone must accelerate the pod-to-pod and the sidecar traffic
 * that needed localCidrs and mesh set before. Traffic runs from the host, in
 * a cgroup below the container's (as in systemd.test.ts), in the pods'
 * namespaces; pins are read from the host through the container's bpffs.
 */
import fs from 'node:fs';
import path from 'node:path';
import test, { type TestFn } from 'ava';
import { readStatus, type StatusReport } from '../../src/cli/status';
import { applyIstioInit } from '../../src/fixtures/mesh-fixture';
import { APP_PORT, assertAccelerated, assertChainAccelerated, type Observed } from '../helpers/accelerated';
import { runThenCleanUp } from '../helpers/cleanup';
import { startSidecar } from '../helpers/mesh';
import { withPodNetwork } from '../helpers/netns';
import { bootContainer, missingNspawn } from '../helpers/nspawn';
import { missingPrivilege } from '../helpers/privilege';
import type { JsonLineProcess } from '../helpers/process';
import { startServer, type ServerHandle } from '../helpers/traffic';
import { REPO_IN_CONTAINER } from '../helpers/nspawn';

const problem = missingPrivilege() ?? missingNspawn();
const CI = process.env.CI === 'true';
// Under CI a missing tool or privilege fails (below), it never skips.
const systemdTest = (problem === undefined || CI ? test.serial : test.serial.skip) as TestFn;
if (problem !== undefined && CI) {
  test('the systemd zero-configuration test can run here', (t) => {
    t.fail(`missing under CI: ${problem}`);
  });
}

systemdTest('systemctl enable --now with no configuration file accelerates pod-to-pod and sidecar traffic on a simulated node', async (t) => {
  await withPodNetwork({ pods: 4 }, async (net) => {
    const { container: c, shutdown } = await bootContainer({ netns: net.node.ns });
    const processes: (JsonLineProcess | ServerHandle)[] = [];
    await runThenCleanUp(async () => {
      const install = await c.exec(['bash', `${REPO_IN_CONTAINER}/scripts/install.sh`], 180_000);
      t.is(install.code, 0, `${install.stdout}\n${install.stderr}`);
      await c.sh('systemctl disable --now sockaccel && rm /etc/sockaccel/config.json');
      await c.sh('systemctl enable --now sockaccel', 60_000);
      t.is((await c.show('sockaccel.service', ['ActiveState'])).ActiveState, 'active');

      const pinRoot = path.join(c.bpffsDir, 'sockaccel');
      const d: Observed = { pinRoot, status: (): StatusReport => readStatus(pinRoot) };
      const local = d.status().localEndpoints;
      t.true(local.includes('10.213.0.0/24'), `the pod bridge's subnet was found with no configuration (${local.join(' ')})`);
      const status = await c.sh('sockaccel status');
      t.regex(status, /10\.213\.0\.0\/24 +\(subnet 10\.213\.0\.0\/24 of bridge br0/, 'status names where it came from');

      // Below the container's cgroup root: the daemon inside attaches there.
      const cgroup = path.join(c.cgroupRoot, 'sockaccel-test-pods');
      fs.mkdirSync(cgroup, { recursive: true });
      const [a, b, plainClient, plainServer] = net.pods;

      // Plain pods: pod-to-pod over the bridge.
      const server = await startServer({ host: '::', mode: 'echo', cgroup, netns: plainServer.ns });
      processes.push(server);
      await assertAccelerated(t, d, server, { host: plainServer.ipv4, netns: plainClient.ns, cgroup }, 'pod to pod');

      // Meshed pods: istio-init and a sidecar as UID 1337 in each, detected from their listen().
      const app = await startServer({ host: '0.0.0.0', port: APP_PORT, mode: 'echo', cgroup, netns: b.ns });
      processes.push(app);
      for (const pod of [a, b]) {
        await applyIstioInit(pod.ns);
        processes.push(await startSidecar(pod, cgroup));
      }
      t.deepEqual(Object.values(d.status().meshNamespaces), ['istio', 'istio'], 'both sidecars detected, as Istio');
      await assertChainAccelerated(t, d, cgroup, a, b, app, 'A -> B through both sidecars');
    }, async () => {
      await Promise.all(processes.map((p) => ('kill' in p ? p.kill() : p.stop())));
      await shutdown();
    });
  });
});
