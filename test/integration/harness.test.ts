/*
 * Proves the integration harness itself on plain TCP (no BPF, no daemon): if
 * these pass, a failure in a sockaccel test is sockaccel's, not the harness's.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { cgroupOfPid, findCgroup2Root, listScratchCgroups, removeScratchCgroup, withScratchCgroup } from '../helpers/cgroup';
import { RUN_TAG } from '../helpers/names';
import { listTestNetns, withNetns, withPodNetwork } from '../helpers/netns';
import type { ClientReport, ServerConnReport } from '../helpers/peer-protocol';
import { missingPrivilege, privilegedTest } from '../helpers/privilege';
import {
  assertFionreadExact,
  assertIntegrity,
  exchange,
  fionreadCheck,
  integrityProblems,
  startServer,
  type ClientOptions,
  type ServerOptions,
} from '../helpers/traffic';

const privileged = privilegedTest(test);
const MiB = 1024 * 1024;

/** Echo `bytes` per connection from client to server and back, then check every byte. */
async function echoIntact(
  t: ExecutionContext,
  server: Omit<ServerOptions, 'port'>,
  client: Omit<ClientOptions, 'port'>,
): Promise<ClientReport> {
  const result = await exchange({ server: { ...server, mode: 'echo' }, client });
  assertIntegrity(t, result.client, result.server, { bytesPerConn: client.bytes, echo: true });
  t.is(result.client.conns.length, client.conns ?? 1);
  return result.client;
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

privileged('8 MiB each way over 127.0.0.1, in a scratch cgroup', async (t) => {
  await withScratchCgroup(async (cg) => {
    await echoIntact(t, { cgroup: cg.path, host: '127.0.0.1' }, { cgroup: cg.path, host: '127.0.0.1', bytes: 8 * MiB, conns: 2 });
  });
});

privileged('8 MiB each way over ::1', async (t) => {
  await withScratchCgroup(async (cg) => {
    await echoIntact(t, { cgroup: cg.path, host: '::1' }, { cgroup: cg.path, host: '::1', bytes: 8 * MiB });
  });
});

privileged('IPv4 client to a dual-stack :: server', async (t) => {
  await withScratchCgroup(async (cg) => {
    const client = await echoIntact(t, { cgroup: cg.path, host: '::' }, { cgroup: cg.path, host: '127.0.0.1', bytes: 2 * MiB });
    // The server sees ::ffff:127.0.0.1; matching worked only because both sides unmap it.
    t.regex(client.conns[0]!.local, /^127\.0\.0\.1:\d+$/);
  });
});

privileged('pod to pod across two namespaces through the bridge, IPv4 and IPv6', async (t) => {
  await withPodNetwork({ pods: 2 }, async ({ pods: [server, client] }) => {
    await withScratchCgroup(async (cg) => {
      for (const [serverAddress, clientAddress] of [[server!.ipv4, client!.ipv4], [server!.ipv6, client!.ipv6]] as const) {
        const report = await echoIntact(
          t,
          { cgroup: cg.path, netns: server!.ns, host: '::' },
          { cgroup: cg.path, netns: client!.ns, host: serverAddress, bytes: 8 * MiB },
        );
        // Sourced from the client pod's own address: the bytes crossed the bridge.
        t.true(report.conns[0]!.local.includes(clientAddress), `${report.conns[0]!.local} should be from ${clientAddress}`);
      }
    });
  });
});

privileged('pod to a non-local peer routed through the node namespace', async (t) => {
  await withPodNetwork({ pods: 1 }, async ({ pods: [pod], remote }) => {
    await withScratchCgroup(async (cg) => {
      for (const host of [remote.ipv4, remote.ipv6]) {
        // Only the pod is in the cgroup: the remote end is outside the local set.
        await echoIntact(t, { netns: remote.ns, host: '::' }, { cgroup: cg.path, netns: pod!.ns, host, bytes: MiB });
      }
    });
  });
});

privileged('200 concurrent connections, each with its own payload', async (t) => {
  await withScratchCgroup(async (cg) => {
    await echoIntact(
      t,
      { cgroup: cg.path, host: '127.0.0.1' },
      { cgroup: cg.path, host: '127.0.0.1', bytes: 64 * 1024, chunk: 16 * 1024, conns: 200 },
    );
  });
});

privileged('half-close: the whole response arrives after the client FIN', async (t) => {
  await withScratchCgroup(async (cg) => {
    const replyBytes = MiB;
    const result = await exchange({
      server: { cgroup: cg.path, host: '127.0.0.1', mode: 'hashback', replyBytes },
      client: { cgroup: cg.path, host: '127.0.0.1', bytes: 4 * MiB, conns: 2, halfClose: true },
    });
    assertIntegrity(t, result.client, result.server, { bytesPerConn: 4 * MiB });
    for (const conn of result.client.conns) {
      t.is(conn.bytesIn, 32 + replyBytes, 'digest + reply');
      t.is(conn.bytesInAfterFin, conn.bytesIn, 'nothing may arrive before our FIN');
    }
  });
});

privileged('first write in the same tick as connect()', async (t) => {
  await withScratchCgroup(async (cg) => {
    await echoIntact(
      t,
      { cgroup: cg.path, host: '127.0.0.1' },
      { cgroup: cg.path, host: '127.0.0.1', bytes: MiB, chunk: 1000, conns: 4, firstWriteImmediate: true },
    );
  });
});

privileged('small writes with pauses between them', async (t) => {
  await withScratchCgroup(async (cg) => {
    await echoIntact(
      t,
      { cgroup: cg.path, host: '127.0.0.1' },
      { cgroup: cg.path, host: '127.0.0.1', bytes: 3000, chunk: 100, pauseMs: 2, conns: 2 },
    );
  });
});

privileged('FIONREAD equals the queued bytes on both ends, loopback and pods', async (t) => {
  await withScratchCgroup(async (cg) => {
    const loopback = await fionreadCheck({
      server: { cgroup: cg.path, host: '127.0.0.1' },
      client: { cgroup: cg.path, host: '127.0.0.1' },
      conns: 2,
    });
    assertFionreadExact(t, loopback.fionread, 4);
    assertIntegrity(t, loopback.client, loopback.server, { echo: true });

    await withPodNetwork({ pods: 2 }, async ({ pods: [server, client] }) => {
      const pods = await fionreadCheck({
        server: { cgroup: cg.path, netns: server!.ns, host: '::' },
        client: { cgroup: cg.path, netns: client!.ns, host: server!.ipv6 },
        bytes: 40_000,
      });
      assertFionreadExact(t, pods.fionread, 2);
      assertIntegrity(t, pods.client, pods.server, { echo: true, bytesPerConn: 40_000 });
    });
  });
});

privileged('processes start inside the requested cgroup and network namespace', async (t) => {
  await withNetns(['placement'], async ([ns]) => {
    await withScratchCgroup(async (cg) => {
      const server = await startServer({ cgroup: cg.path, netns: ns!, host: '127.0.0.1' });
      t.teardown(server.stop);
      t.is(cgroupOfPid(server.pid), cg.path);
      t.is(statSync(`/proc/${server.pid}/ns/net`).ino, statSync(`/run/netns/${ns}`).ino);
      await server.stop();
      t.false(isAlive(server.pid));
    });
  });
});

privileged('cleanup runs when the test body throws, and is idempotent', async (t) => {
  // A process we did not spawn into the cgroup: it must be moved out, not killed.
  const bystander = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => {
    bystander.kill('SIGKILL');
  });
  const bystanderCgroup = cgroupOfPid(bystander.pid!);
  let cgroupPath = '';
  let serverPid = 0;
  await t.throwsAsync(
    withScratchCgroup(async (cg) => {
      cgroupPath = cg.path;
      cg.addPid(bystander.pid!);
      serverPid = (await startServer({ cgroup: cg.path, host: '127.0.0.1' })).pid;
      throw new Error('test body failed');
    }),
    { message: 'test body failed' },
  );
  t.false(existsSync(cgroupPath), 'cgroup removed');
  t.false(isAlive(serverPid), 'our server killed');
  t.true(isAlive(bystander.pid!), 'bystander left running');
  t.is(cgroupOfPid(bystander.pid!), bystanderCgroup, 'bystander moved back');
  await removeScratchCgroup(cgroupPath);

  let namespaces: string[] = [];
  let cleanup: () => Promise<void> = async () => undefined;
  await t.throwsAsync(
    withPodNetwork({ pods: 1 }, async (network) => {
      namespaces = [network.node.ns, network.remote.ns, ...network.pods.map((p) => p.ns)];
      cleanup = network.cleanup;
      throw new Error('test body failed');
    }),
    { message: 'test body failed' },
  );
  t.is(namespaces.length, 3);
  t.deepEqual(listTestNetns().filter((ns) => namespaces.includes(ns)), []);
  await cleanup();
});

// Pure checks of the comparison itself: no privilege needed.

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A client and server report for one intact echo connection carrying `payload`. */
function intactEcho(local: string, payload: Buffer): { client: ClientReport['conns'][number]; server: ServerConnReport } {
  const hash = sha256(payload);
  const n = payload.length;
  return {
    client: { local, bytesOut: n, sha256Out: hash, bytesIn: n, sha256In: hash, bytesInAfterFin: 0 },
    server: { remote: local, bytesIn: n, sha256In: hash, bytesOut: n, sha256Out: hash, fionreadSamples: [] },
  };
}

test('integrity check fails when a single byte differs', async (t) => {
  const payload = randomBytes(4096);
  const tampered = Buffer.from(payload);
  tampered[1234] = tampered[1234]! ^ 0x01;
  const { client, server } = intactEcho('127.0.0.1:40000', payload);
  const report: ClientReport = { conns: [client], fionread: [] };

  t.deepEqual(integrityProblems(report, [server], { echo: true, bytesPerConn: 4096 }), []);

  const corrupted = { ...server, sha256In: sha256(tampered) };
  const problems = integrityProblems(report, [corrupted]);
  t.is(problems.length, 1);
  t.regex(problems[0]!, /client→server: client sent 4096 bytes \(sha256 [0-9a-f]{64}\), server received 4096 bytes/);

  // And the assertion built on it really fails the test.
  const attempt = await t.try((tt) => assertIntegrity(tt, report, [corrupted]));
  const { passed, errors } = attempt;
  attempt.discard();
  t.false(passed);
  t.regex(errors.map((e) => e.message).join('\n'), /integrity check failed for 1 connections:\n.*client→server/);
});

test('integrity check catches swapped, missing, extra and look-alike connections', (t) => {
  const a = intactEcho('10.213.0.11:40001', randomBytes(100));
  const b = intactEcho('10.213.0.11:40002', randomBytes(100));
  const report: ClientReport = { conns: [a.client, b.client], fionread: [] };

  // b's bytes delivered to a's socket and vice versa.
  const swapped = [
    { ...a.server, sha256In: b.server.sha256In },
    { ...b.server, sha256In: a.server.sha256In },
  ];
  t.is(integrityProblems(report, swapped).length, 2);
  t.regex(integrityProblems(report, [a.server]).join('\n'), /40002: the server reported no connection/);
  const stranger = { ...a.server, remote: '10.213.0.12:1' };
  t.regex(integrityProblems(report, [a.server, b.server, stranger]).join('\n'), /which the client did not make/);
  t.regex(integrityProblems(report, [a.server, b.server], { bytesPerConn: 101 }).join('\n'), /expected 101/);

  const twins: ClientReport = { conns: [a.client, { ...a.client, local: b.client.local }], fionread: [] };
  t.regex(integrityProblems(twins, [a.server, { ...a.server, remote: b.client.local }]).join('\n'), /identical payloads/);
});

test('findCgroup2Root reads the cgroup2 mount point from mountinfo', (t) => {
  const hybrid = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu',
    '41 31 0:38 /nested /mnt/cg2\\040nested rw,relatime - cgroup2 cgroup2 rw',
    '42 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 master:2 - cgroup2 cgroup2 rw',
  ].join('\n');
  t.is(findCgroup2Root(hybrid), '/sys/fs/cgroup/unified');
  t.is(findCgroup2Root('41 31 0:38 / /mnt/cg2\\040v2 rw - cgroup2 none rw\n'), '/mnt/cg2 v2');
  t.throws(() => findCgroup2Root('31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n'), { message: /no cgroup2 mount/ });
});

test.after.always('no scratch cgroup or namespace of this run is left behind', (t) => {
  if (missingPrivilege() !== undefined) {
    t.pass('nothing was created');
    return;
  }
  t.deepEqual(listScratchCgroups().filter((name) => name.includes(RUN_TAG)), []);
  t.deepEqual(listTestNetns().filter((name) => name.includes(RUN_TAG)), []);
});
