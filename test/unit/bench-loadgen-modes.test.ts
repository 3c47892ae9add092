/*
 * The load generator's connection-per-request modes (crr, mixed) on plain
 * loopback TCP, no privilege: byte-exact in both directions, counts that
 * match at both ends, a fixed server port reused run after run (the bench's
 * one port per case), --max-conns, and a wrong request or response caught.
 */
import net from 'node:net';
import test from 'ava';
import { integrityProblems, LOADGEN_BINARY, runLoadgen, type RunSpec } from '../../src/bench/loadgen';
import { ProcessGroup } from '../../src/bench/processes';
import { chooseFreePorts } from '../../src/bench/ports';

const tcp = (mode: RunSpec['mode'], port: number, extra: Partial<RunSpec> = {}): RunSpec => ({
  mode,
  size: 64,
  port,
  warmupMs: 0,
  durationMs: 150,
  verify: 'sampled',
  server: { listen: { tcp: '127.0.0.1' }, placement: {} },
  client: { connect: { tcp: '127.0.0.1' }, placement: {} },
  ...extra,
});

test.serial('crr and mixed: intact, counted at both ends, on one fixed port run after run', async (t) => {
  const group = new ProcessGroup();
  const [port] = await chooseFreePorts(1);
  try {
    for (const mode of ['crr', 'mixed', 'crr', 'mixed', 'rr'] as const) {
      const run = await runLoadgen(group, tcp(mode, port!), `${mode} on ${port}`);
      t.deepEqual(integrityProblems(run, 'sampled'), [], mode);
      if (run.client.mode === 'stream' || run.client.mode === 'connrate') throw new Error('unexpected result');
      t.true(run.client.transactions > 0, mode);
      t.true(run.client.latencyNs.p99 >= run.client.latencyNs.p50, mode);
      if (mode === 'crr') t.is(run.client.connections, run.client.messages);
      // mixed: one persistent connection, then a fresh one for every odd message.
      if (mode === 'mixed') t.is(run.client.connections, 1 + Math.floor(run.client.messages / 2));
    }
  } finally {
    await group.killAll();
  }
});

test.serial('--max-conns ends a warm-up at that many connections', async (t) => {
  const group = new ProcessGroup();
  const [port] = await chooseFreePorts(1);
  try {
    for (const mode of ['crr', 'mixed', 'connrate'] as const) {
      const run = await runLoadgen(group, tcp(mode, port!, { durationMs: 5000, maxConns: 25 }), `${mode} max 25`);
      t.deepEqual(integrityProblems(run, 'sampled'), [], mode);
      t.is((run.client as { connections: number }).connections, 25, mode);
      t.is(run.serverSummary.accepted, 25, mode);
    }
  } finally {
    await group.killAll();
  }
});

/** A server that answers every request with the request itself (wrong: responses come from another pattern offset). */
async function echoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

test.serial('a crr client that gets its own request back reports message 0 as bad', async (t) => {
  const group = new ProcessGroup();
  const echo = await echoServer();
  try {
    const client = group.spawn('loadgen client (echo)', [
      LOADGEN_BINARY, 'client', '--mode', 'crr', '--size', '64', '--host', '127.0.0.1', '--port', String(echo.port), '--duration-ms', '100',
    ], {});
    const result = await client.waitFor((l) => l.event === 'result', 10_000, 'its result');
    t.like(result, { mode: 'crr', integrity: { ok: false, firstBadMessage: 0, problem: 'wrong response' } });
  } finally {
    await group.killAll();
    await echo.close();
  }
});

test.serial('a crr server counts a request that differs from the pattern', async (t) => {
  const group = new ProcessGroup();
  const [port] = await chooseFreePorts(1);
  try {
    const server = group.spawn('loadgen server (bad request)', [LOADGEN_BINARY, 'server', '--mode', 'crr', '--size', '64', '--host', '127.0.0.1', '--port', String(port)], {});
    await server.waitFor((l) => l.event === 'listening', 10_000, 'it to listen');
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(port!, '127.0.0.1', () => s.write(Buffer.alloc(64, 7)));
      s.on('close', () => resolve());
      s.on('error', reject);
      s.resume();
    });
    server.signal('SIGTERM');
    const summary = await server.waitFor((l) => l.event === 'summary', 10_000, 'its summary');
    t.like(summary, { accepted: 1, messages: 0, badMessages: 1, failures: 1 });
  } finally {
    await group.killAll();
  }
});
