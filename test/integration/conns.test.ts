/*
 * `sockaccel conns` on live connections: pod to pod across namespaces and
 * loopback on the host, one client run by an unprivileged user. Every row
 * must match what the two ends themselves report, and the filters must pick
 * the right ones.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type TestFn } from 'ava';
import type { ConnRow } from '../../src/conns';
import { withScratchCgroup } from '../helpers/cgroup';
import { TEST_PIN_PREFIX, withDaemon } from '../helpers/daemon';
import { uniqueName } from '../helpers/names';
import { withPodNetwork } from '../helpers/netns';
import { privilegedTest } from '../helpers/privilege';
import { JsonLineProcess } from '../helpers/process';
import { withTestUser } from '../helpers/test-user';
import { assertIntegrity, runClient, startServer } from '../helpers/traffic';

const privileged = privilegedTest(test.serial as unknown as TestFn);
const REPO = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(REPO, 'dist', 'src', 'cli.js');
const POD_CIDRS = ['10.213.0.0/24', 'fd00:5a::/64'];

function conns(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'conns', ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });
}

async function connsJson(pinRoot: string, ...args: string[]): Promise<ConnRow[]> {
  const r = await conns([`--pin-root=${pinRoot}`, '--json', ...args]);
  if (r.code !== 0) throw new Error(`conns failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ConnRow[];
}

privileged('conns shows each accelerated connection once: both ends, namespaces, owners, age; --port and --addr filter', async (t) => {
  const started = Date.now();
  await withTestUser((user) =>
    withPodNetwork({ pods: 2 }, (podNet) =>
      withScratchCgroup((cg) =>
        withDaemon({ cgroup: cg.path, localCidrs: POD_CIDRS }, async (d) => {
          const [a, b] = podNet.pods;
          const podServer = await startServer({ host: '0.0.0.0', mode: 'echo', cgroup: cg.path, netns: b.ns });
          const hostServer = await startServer({ host: '127.0.0.1', mode: 'echo', cgroup: cg.path });
          try {
            // Slow streams (about 3 s), so the connections are up while we look.
            const slow = { bytes: 384 * 1024, chunk: 4096, pauseMs: 30 };
            const podClients = runClient({ ...slow, host: b.ipv4, port: podServer.port, conns: 2, seed: 'pods', cgroup: cg.path, netns: a.ns });
            const userClient = new JsonLineProcess(
              'client as test user',
              [...user.asUser, process.execPath, path.join(REPO, 'test', 'fixtures', 'peer.js'), 'client', '--host', '127.0.0.1', '--port', String(hostServer.port),
                '--bytes', String(slow.bytes), '--chunk', String(slow.chunk), '--pause-ms', String(slow.pauseMs), '--seed', 'user'],
              { cgroup: cg.path },
            );

            let rows: ConnRow[] = [];
            for (const deadline = Date.now() + 10_000; rows.length < 3 && Date.now() < deadline; await sleep(100)) rows = await connsJson(d.pinRoot);
            t.is(rows.length, 3, JSON.stringify(rows));

            const pods = rows.filter((r) => r.destination === `${b.ipv4}:${podServer.port}`);
            t.is(pods.length, 2);
            for (const r of pods) {
              t.regex(r.client, new RegExp(`^${a.ipv4.replace(/\./g, '\\.')}:\\d+$`));
              t.is(r.server, `${b.ipv4}:${podServer.port}`, 'no NAT: accepted where it connected');
              t.is(r.clientNetns, a.ns, 'the client namespace by its ip-netns name');
              t.is(r.serverNetns, b.ns);
              t.is(r.clientUid, 0);
              t.is(r.serverUid, 0);
            }
            const [host] = rows.filter((r) => r.destination === `127.0.0.1:${hostServer.port}`);
            t.is(host?.clientNetns, 'host');
            t.is(host?.serverNetns, 'host');
            t.is(host?.clientUid, user.uid, 'the owner of the client socket');
            for (const r of rows) {
              t.true(r.ageSeconds > 0 && r.ageSeconds < (Date.now() - started) / 1000, `age ${r.ageSeconds}`);
              const since = Date.parse(r.since);
              t.true(since >= started - 1000 && since <= Date.now(), `since ${r.since}`);
            }

            t.deepEqual((await connsJson(d.pinRoot, `--port=${podServer.port}`)).map((r) => r.client).sort(), pods.map((r) => r.client).sort());
            t.deepEqual((await connsJson(d.pinRoot, `--addr=${a.ipv4}`)).length, 2);
            t.deepEqual((await connsJson(d.pinRoot, '--addr=127.0.0.1')).map((r) => r.client), [host.client]);
            t.deepEqual(await connsJson(d.pinRoot, '--addr=127.0.0.1', `--port=${podServer.port}`), []);
            const text = await conns([`--pin-root=${d.pinRoot}`, `--port=${hostServer.port}`]);
            t.regex(text.stdout, /^CLIENT +DESTINATION +SERVER +NETNS \(CLIENT\/SERVER\) +UID \(C\/S\) +AGE +SINCE\n/);
            t.regex(text.stdout, new RegExp(`${host.client.replace(/\./g, '\\.')} +127\\.0\\.0\\.1:${hostServer.port} .* host/host +${user.uid}/0 `));
            t.regex(text.stdout, /\n1 accelerated connection\n$/);

            // The ends agree with conns about who they are.
            const podReport = await podClients;
            t.deepEqual(podReport.conns.map((c) => c.local).sort(), pods.map((r) => r.client).sort());
            assertIntegrity(t, podReport, await podServer.results(2), { bytesPerConn: slow.bytes, echo: true });
            t.is((await userClient.exitWithin(30_000)).code, 0);
            const done = userClient.events.find((e) => e.event === 'done');
            t.is(done?.event === 'done' ? done.conns[0].local : undefined, host.client);
          } finally {
            await Promise.all([podServer.stop(), hostServer.stop()]);
          }
          let left: ConnRow[] = [];
          for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(100)) if ((left = await connsJson(d.pinRoot)).length === 0) break;
          t.deepEqual(left, [], 'closed connections leave the list');
        }),
      ),
    ),
  );
});

privileged('conns without a daemon, or with a bad filter, fails clearly', async (t) => {
  const none = await conns([`--pin-root=${TEST_PIN_PREFIX}${uniqueName('none')}`]);
  t.is(none.code, 72);
  t.regex(none.stderr, /^sockaccel: nothing pinned under .*\nhint: start the daemon/);
  const badPort = await conns(['--port=http']);
  t.is(badPort.code, 64);
  t.regex(badPort.stderr, /--port must be a port number 1\.\.65535, not "http"/);
  const badAddr = await conns(['--addr=10.0.0.0/8']);
  t.is(badAddr.code, 64);
  t.regex(badAddr.stderr, /--addr must be an IPv4 or IPv6 address/);
});
