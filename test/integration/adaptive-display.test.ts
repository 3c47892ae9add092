/*
 * What an operator sees of the adaptive policy (the policy itself is
 * adaptive.test.ts): `sockaccel status` (text and --json) lists each learned
 * service with its shape, decision and why; `sockaccel conns` gives each
 * connection's service, messages, turns and the service's decision; the
 * daemon logs each decision as it changes. Real kernel, traffic byte-exact.
 */
import test, { type TestFn } from 'ava';
import type { ConnRow } from '../../src/conns';
import type { StatusReport } from '../../src/cli/status';
import { withScratchCgroup } from '../helpers/cgroup';
import { runCli } from '../helpers/cli';
import { withDaemon } from '../helpers/daemon';
import { privilegedTest } from '../helpers/privilege';
import { assertIntegrity, runClient, startServer, stopping, withHeldClient } from '../helpers/traffic';
import { waitFor } from '../helpers/wait-for';

const privileged = privilegedTest(test.serial as unknown as TestFn);
const HOST = '127.0.0.1';
// An hour's half-life: the evidence is counts, whatever the machine's speed (see adaptive.test.ts).
const LEARN = ['--adaptive-interval-ms=50', '--adaptive-min-connections=10', '--adaptive-explore-permille=20', '--adaptive-half-life-seconds=3600'];

async function cli<T>(args: string[]): Promise<{ text: string; json?: T }> {
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`sockaccel ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return { text: r.stdout, json: args.includes('--json') ? (JSON.parse(r.stdout) as T) : undefined };
}

privileged('status, conns and the log show each learned service: shape, decision and why', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path, adaptive: true, extraArgs: LEARN }, async (d) => {
      const pin = `--pin-root=${d.pinRoot}`;
      const oneShot = await startServer({ host: HOST, mode: 'echo', cgroup: cg.path });
      const keepAlive = await startServer({ host: HOST, mode: 'echo', cgroup: cg.path });
      await stopping([oneShot, keepAlive], async () => {
        const shots = await runClient({ host: HOST, port: oneShot.port, bytes: 64, chunk: 64, conns: 30, cgroup: cg.path, seed: 'shots' });
        assertIntegrity(t, shots, await oneShot.results(30), { echo: true, bytesPerConn: 64 });
        const trips = await runClient({ host: HOST, port: keepAlive.port, bytes: 64 * 600, chunk: 64, pauseMs: 1, conns: 2, cgroup: cg.path, seed: 'trips' });
        assertIntegrity(t, trips, await keepAlive.results(2), { echo: true, bytesPerConn: 64 * 600 });

        const report = await waitFor('both services decided in `status --json`', async () => {
          const { json } = await cli<StatusReport>(['status', '--json', pin]);
          return json!.adaptive.services.filter((r) => r.state !== 'learning').length === 2 && json!;
        });
        t.is(report.adaptive.enabled, true);
        const shotRow = report.adaptive.services.find((r) => r.serverPort === oneShot.port)!;
        const tripRow = report.adaptive.services.find((r) => r.serverPort === keepAlive.port)!;
        t.like(shotRow, { service: `${HOST}:${oneShot.port}@netns ${shotRow.service.split('@netns ')[1]}`, connsAccelerated: 30, connsClosed: 30, state: 'plain', reason: 'short-connections', explorePermille: 20 });
        t.true(shotRow.turnsPerConn! >= 1.9 && shotRow.turnsPerConn! <= 2.1, `one-shot turns per connection: ${shotRow.turnsPerConn}`);
        t.regex(shotRow.why, /^short connections: loses \d+(\.\d)? µs per connection \(over \d+ connections\); 2% still accelerated to keep learning$/);
        t.like(tripRow, { state: 'accelerate', reason: 'gains', connsClosed: 2 });
        t.true(tripRow.turnsPerConn! > 500, `keep-alive turns per connection: ${tripRow.turnsPerConn}`);
        // 64 B writes; the echo server now and then answers two requests read together
        t.true(tripRow.avgWriteBytes! >= 64 && tripRow.avgWriteBytes! < 96, `average write ${tripRow.avgWriteBytes}`);
        t.regex(tripRow.why, /^saves .* per connection \(over 2 connections\)$/);

        const { text } = await cli(['status', pin]);
        t.regex(text, /^adaptive policy +on: 2 services \(1 plain, 0 learning\)$/m);
        t.regex(text, new RegExp(`\\n {2}${HOST.replace(/\./g, '\\.')}:${oneShot.port}@netns \\d+ +${oneShot.port} +30/0 +2\\.0 +1\\.0 +64 B .* plain \\(short-connections\\) +short connections: loses`));

        // A live keep-alive connection in `conns`: its service, its shape so far, the service's decision.
        await withHeldClient({ host: HOST, port: keepAlive.port, stream: true, chunk: 64, pauseMs: 2, cgroup: cg.path, seed: 'live' }, async (live) => {
          await live.holding();
          const [row] = await waitFor('the live connection with some turns in `conns --json`', async () => {
            const rows = (await cli<ConnRow[]>(['conns', '--json', pin])).json!.filter((r) => r.destination === `${HOST}:${keepAlive.port}`);
            return rows.length === 1 && rows[0].turns[0] >= 10 && rows;
          });
          t.is(row.service, tripRow.service);
          t.is(row.decision, 'accelerate (gains)');
          t.true(row.msgs[0] >= row.turns[0] && row.msgs[1] >= row.turns[1], `msgs ${row.msgs}, turns ${row.turns}`);
          const table = (await cli(['conns', pin])).text;
          t.regex(table, /SERVICE +MSGS C>S\/S>C +TURNS C>S\/S>C +DECISION/);
          t.regex(table, / accelerate \(gains\) /);
          const report = await live.release();
          assertIntegrity(t, report, (await keepAlive.results(3)).filter((r) => r.remote === report.conns[0].local), { echo: true });
        });
      });
      const changes = d.process.events.filter((e) => (e as { msg?: string }).msg === 'service decision changed') as Record<string, unknown>[];
      t.deepEqual(
        changes.map((c) => `${c.service} ${c.from} -> ${c.to}`).sort(),
        [`${HOST}:${keepAlive.port}`, `${HOST}:${oneShot.port}`]
          .map((s) => changes.find((c) => String(c.service).startsWith(`${s}@`)))
          .map((c) => `${c?.service} learning -> ${c?.to}`)
          .sort(),
      );
      for (const c of changes) {
        t.like(c, { level: 30, component: 'adaptive' });
        t.regex(String(c.why), /turns per connection save .*; setup costs .*: (saves|loses) /);
      }
    }),
  );
});
