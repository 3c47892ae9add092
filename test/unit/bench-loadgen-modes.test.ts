/*
 * The load generator's connection-per-request modes (crr, mixed) on plain
 * loopback TCP, no privilege: byte-exact in both directions, counts that
 * match at both ends, a fixed server port reused run after run (the bench's
 * one port per case), --max-conns, --min-sends, a wrong request or response
 * caught, and two runs taking turns (--turn).
 */
import net from 'node:net';
import test from 'ava';
import { integrityProblems, LOADGEN_BINARY, runLoadgen, runLoadgenTurns, turnUnits, TURN_EVERY, type RunSpec } from '../../src/bench/loadgen';
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

test.serial('--min-sends goes on past the duration until that many requests or writes were sent', async (t) => {
  const group = new ProcessGroup();
  const [port] = await chooseFreePorts(1);
  try {
    for (const mode of ['rr', 'crr', 'stream'] as const) {
      const run = await runLoadgen(group, tcp(mode, port!, { durationMs: 0, minSends: 700 }), `${mode} min 700`);
      t.deepEqual(integrityProblems(run, 'sampled'), [], mode);
      const sent = run.client.mode === 'stream' ? run.client.writes : run.client.mode === 'connrate' ? 0 : run.client.messages;
      t.true(sent >= 700, `${mode}: ${sent} sends`);
    }
    const refused = group.spawn('loadgen (connrate min-sends)', [LOADGEN_BINARY, 'client', '--mode', 'connrate', '--host', '127.0.0.1', '--port', '1', '--min-sends', '5'], {});
    t.regex(String((await refused.waitFor((l) => l.event === 'error', 10_000, 'its error')).message), /--min-sends/);
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

test.serial('two runs take turns: both intact, each hands over every TURN_EVERY units and waits out the other', async (t) => {
  const group = new ProcessGroup();
  const ports = await chooseFreePorts(2);
  try {
    for (const mode of ['crr', 'connrate', 'mixed', 'rr'] as const) {
      const runs = await runLoadgenTurns(group, [tcp(mode, ports[0]!, { durationMs: 200 }), tcp(mode, ports[1]!, { durationMs: 200 })], [`${mode} a`, `${mode} b`]);
      for (const run of runs) {
        t.deepEqual(integrityProblems(run, 'sampled'), [], mode);
        t.true(run.turns!.passes >= 1, `${mode}: handed over`);
        // A hand-over every TURN_EVERY units while the partner lasts, none after.
        t.true(run.turns!.passes <= Math.floor(turnUnits(run) / TURN_EVERY), `${mode}: ${run.turns!.passes} hand-overs for ${turnUnits(run)} units`);
        t.true(run.turns!.pausedNs > 0, `${mode}: waited for its partner`);
      }
      // Strict alternation: neither runs two turns in a row while the other lasts.
      t.true(Math.abs(runs[0].turns!.passes - runs[1].turns!.passes) <= 1, `${mode}: ${runs[0].turns!.passes} vs ${runs[1].turns!.passes} hand-overs`);
    }
  } finally {
    await group.killAll();
  }
});

test.serial('a run whose partner is done goes on alone to the end of its own time', async (t) => {
  const group = new ProcessGroup();
  const ports = await chooseFreePorts(2);
  try {
    // The second stops after 300 connections; the first, with no limit, must not wait for it forever.
    const [first, second] = await runLoadgenTurns(group, [tcp('crr', ports[0]!, { durationMs: 300 }), tcp('crr', ports[1]!, { durationMs: 300, maxConns: 300 })], ['long', 'short']);
    for (const run of [first, second]) t.deepEqual(integrityProblems(run, 'sampled'), []);
    t.is((second.client as { connections: number }).connections, 300);
    t.true(first.turns!.passes <= Math.ceil(300 / TURN_EVERY) + 1, `${first.turns!.passes} hand-overs`);
    t.true(turnUnits(first) > 300, 'went on after its partner ended');
  } finally {
    await group.killAll();
  }
});

test('loadgen refuses to take turns where a turn has no meaning', async (t) => {
  const group = new ProcessGroup();
  try {
    for (const argv of [
      ['client', '--mode', 'stream', '--host', '127.0.0.1', '--port', '1', '--turn', '/tmp', '--turn-every', '4'],
      ['client', '--mode', 'crr', '--host', '127.0.0.1', '--port', '1', '--turn', '/tmp'],
    ]) {
      const p = group.spawn('loadgen (bad turn)', [LOADGEN_BINARY, ...argv], {});
      const err = await p.waitFor((l) => l.event === 'error', 10_000, 'its error');
      t.regex(String(err.message), /--turn/);
    }
  } finally {
    await group.killAll();
  }
});
