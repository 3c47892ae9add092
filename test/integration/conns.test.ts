/*
 * `sockaccel conns` on live connections: pod to pod across namespaces and
 * loopback on the host, one client run by an unprivileged user. Every row
 * must match what the two ends themselves report, and the filters must pick
 * the right ones.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type TestFn } from 'ava';
import type { ConnRow } from '../../src/conns';
import { withScratchCgroup } from '../helpers/cgroup';
import { runCli } from '../helpers/cli';
import { TEST_PIN_PREFIX, withDaemon } from '../helpers/daemon';
import { uniqueName } from '../helpers/names';
import { withPodNetwork } from '../helpers/netns';
import { privilegedTest } from '../helpers/privilege';
import { JsonLineProcess } from '../helpers/process';
import { withTestUser } from '../helpers/test-user';
import { assertIntegrity, startServer, withHeldClient } from '../helpers/traffic';
import { waitFor } from '../helpers/wait-for';
import { heldShapeSlots, readPairs } from '../../src/kernel/pairs';

const privileged = privilegedTest(test.serial as unknown as TestFn);
const POD_CIDRS = ['10.213.0.0/24', 'fd00:5a::/64'];

const conns = (args: string[]) => runCli(['conns', ...args]);

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
            // Every client holds its connections open until released below:
            // they are up for as long as this test looks, however slow the machine.
            const held = { bytes: 64 * 1024, chunk: 4096 };
            const podClient = { ...held, host: b.ipv4, port: podServer.port, conns: 2, seed: 'pods', cgroup: cg.path, netns: a.ns };
            const userClient = { ...held, host: '127.0.0.1', port: hostServer.port, seed: 'user', cgroup: cg.path, uid: user.uid, gid: user.gid };
            await withHeldClient(podClient, (podClients) =>
              withHeldClient(userClient, async (userClients) => {
                const podLocals = (await podClients.holding()).sort();
                const [userLocal] = await userClients.holding();

                const rows = await waitFor('3 accelerated connections', async () => {
                  const all = await connsJson(d.pinRoot);
                  return all.length === 3 && all;
                });
                const pods = rows.filter((r) => r.destination === `${b.ipv4}:${podServer.port}`);
                t.deepEqual(pods.map((r) => r.client).sort(), podLocals, 'each pod connection once, by its client endpoint');
                for (const r of pods) {
                  t.regex(r.client, new RegExp(`^${a.ipv4.replace(/\./g, '\\.')}:\\d+$`));
                  t.is(r.server, `${b.ipv4}:${podServer.port}`, 'no NAT: accepted where it connected');
                  t.is(r.clientNetns, a.ns, 'the client namespace by its ip-netns name');
                  t.is(r.serverNetns, b.ns);
                  t.is(r.clientUid, 0);
                  t.is(r.serverUid, 0);
                }
                // Byte counts come from a socket walk per namespace: the pods'
                // sockets live in theirs, not ours (a missed walk would read 0).
                // Every held connection sent its bytes and got their echo: exact counts.
                const podBytes = await waitFor('the pod connections to count every redirected byte both ways', async () => {
                  const now = (await connsJson(d.pinRoot, `--port=${podServer.port}`)).filter((r) => r.destination === `${b.ipv4}:${podServer.port}`);
                  return now.length === 2 && now.every((r) => r.bytesClientToServer === held.bytes && r.bytesServerToClient === held.bytes) && now;
                });
                t.is(podBytes.length, 2);
                for (const r of podBytes) {
                  // the service is where the client connected; the shape is the sk_msg programs' count
                  t.is(r.service, `${b.ipv4}:${podServer.port}`);
                  t.true(r.msgs[0] >= 1 && r.msgs[1] >= 1 && r.turns[0] >= 1 && r.turns[1] >= 1, `msgs ${r.msgs}, turns ${r.turns}`);
                  t.is(r.decision, 'learning');
                }
                // Each paired connection counts its shape in a slot of its own (no hashing per message).
                const slots = readPairs(d.pinRoot).filter((c) => c.state === 'paired').map((c) => c.shapeSlot);
                t.is(slots.length, 3);
                t.true(slots.every((s) => s !== null), 'every paired connection holds a shape slot');
                t.is(new Set(slots.map((s) => s!.index)).size, 3, 'three different slots');
                const [host] = rows.filter((r) => r.destination === `127.0.0.1:${hostServer.port}`);
                t.is(host?.client, userLocal);
                t.is(host?.clientNetns, 'host');
                t.is(host?.serverNetns, 'host');
                t.is(host?.clientUid, user.uid, 'the owner of the client socket');
                for (const r of rows) {
                  // >= 0: a connection read within a millisecond of its handshake is 0 ms old
                  t.true(r.ageSeconds >= 0 && r.ageSeconds < (Date.now() - started) / 1000, `age ${r.ageSeconds}`);
                  const since = Date.parse(r.since);
                  t.true(since >= started - 1000 && since <= Date.now(), `since ${r.since}`);
                }

                t.deepEqual((await connsJson(d.pinRoot, `--port=${podServer.port}`)).map((r) => r.client).sort(), podLocals);
                t.deepEqual((await connsJson(d.pinRoot, `--addr=${a.ipv4}`)).length, 2);
                t.deepEqual((await connsJson(d.pinRoot, '--addr=127.0.0.1')).map((r) => r.client), [userLocal]);
                t.deepEqual(await connsJson(d.pinRoot, '--addr=127.0.0.1', `--port=${podServer.port}`), []);
                const text = await conns([`--pin-root=${d.pinRoot}`, `--port=${hostServer.port}`]);
                t.regex(text.stdout, /^CLIENT +DESTINATION +SERVER +NETNS \(CLIENT\/SERVER\) +UID \(C\/S\) +BYTES C>S +BYTES S>C +SERVICE +MSGS C>S\/S>C +TURNS C>S\/S>C +DECISION +AGE +SINCE\n/);
                t.regex(text.stdout, new RegExp(`${userLocal.replace(/\./g, '\\.')} +127\\.0\\.0\\.1:${hostServer.port} .* host/host +${user.uid}/0 `));
                t.regex(text.stdout, /\n1 accelerated connection\n$/);

                // Released, the ends agree with conns about who they are, and every byte arrived intact.
                const podReport = await podClients.release();
                t.deepEqual(podReport.conns.map((c) => c.local).sort(), podLocals);
                assertIntegrity(t, podReport, await podServer.results(2), { bytesPerConn: held.bytes, echo: true });
                const userReport = await userClients.release();
                assertIntegrity(t, userReport, await hostServer.results(1), { bytesPerConn: held.bytes, echo: true });
              }),
            );
          } finally {
            await Promise.all([podServer.stop(), hostServer.stop()]);
          }
          const left = await waitFor('closed connections to leave the list', async () => {
            const now = await connsJson(d.pinRoot);
            return now.length === 0 && now;
          });
          t.deepEqual(left, []);
          // Closing frees every slot, or a busy node would run out of them.
          t.deepEqual(heldShapeSlots(d.pinRoot), [], 'no shape slot still owned');
        }),
      ),
    ),
  );
});

// One loopback connection inside the cgroup: the client sends C2S bytes once
// the server has accepted (so the connection pairs before its first byte),
// the server answers with S2C, then both stay open until killed.
const C2S = 1024 * 1024;
const S2C = 256 * 1024;
const KNOWN_TRAFFIC = `
const net = require('node:net');
const client = { sock: null };
const server = net.createServer((s) => {
  let got = 0;
  s.on('data', (d) => { got += d.length; if (got === ${C2S}) s.write(Buffer.alloc(${S2C}, 2)); });
  client.sock.write(Buffer.alloc(${C2S}, 1));
});
server.listen(0, '127.0.0.1', () => {
  let got = 0;
  client.sock = net.connect(server.address().port, '127.0.0.1');
  client.sock.on('data', (d) => {
    got += d.length;
    if (got === ${S2C}) console.log(JSON.stringify({ event: 'ready', local: client.sock.localAddress + ':' + client.sock.localPort }));
  });
});`;

privileged('conns shows the bytes redirected in each direction of a live connection', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path }, async (d) => {
      const traffic = new JsonLineProcess('known traffic', [process.execPath, '-e', KNOWN_TRAFFIC], { cgroup: cg.path });
      try {
        type Ready = { event?: string; local: string };
        const ready = await traffic.waitUntil((events) => (events as unknown as Ready[]).find((e) => e.event === 'ready'), 20_000, 'the traffic to be exchanged');
        const started = process.hrtime.bigint();
        const rows = await connsJson(d.pinRoot);
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        t.log(`conns with bytes: ${ms.toFixed(0)} ms (CLI start included)`);
        const row = rows.find((r) => r.client === ready.local);
        t.like(row, { bytesClientToServer: C2S, bytesServerToClient: S2C }, JSON.stringify(rows));
        const text = await conns([`--pin-root=${d.pinRoot}`]);
        t.regex(text.stdout, new RegExp(`${ready.local.replace(/\./g, '\\.')} .* ${C2S} +${S2C} +\\d`));
        t.is(text.stderr, '', 'no "bytes unavailable" note');

        // Without the iterator object (as without CAP_PERFMON or on an old
        // kernel): the connection is still listed, its bytes are not.
        const noIter = fs.mkdtempSync(path.join(os.tmpdir(), 'sa-noiter-'));
        try {
          const r = await conns([`--pin-root=${d.pinRoot}`, `--object-dir=${noIter}`, '--json']);
          t.is(r.code, 0, r.stderr);
          t.like((JSON.parse(r.stdout) as ConnRow[]).find((x) => x.client === ready.local), { bytesClientToServer: null, bytesServerToClient: null });
          t.regex(r.stderr, /^sockaccel: bytes per connection unavailable: bpf_object__open_file\(.*conns_iter\.bpf\.o\): ENOENT/);
        } finally {
          fs.rmSync(noIter, { recursive: true, force: true });
        }
      } finally {
        await traffic.kill();
      }
    }),
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
