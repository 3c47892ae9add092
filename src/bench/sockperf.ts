/**
 * Cross-check against Debian's sockperf: `sockperf ping-pong --full-rtt` on
 * the same path, size and CPUs as a loadgen case. If loadgen and sockperf
 * disagree by more than the noise, one of them measures something else.
 */
import fs from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { EnvironmentError } from '../common/errors';
import type { Placement, ProcessGroup } from './processes';

export interface SockperfRtt {
  readonly p50Us: number;
  readonly p99Us: number;
  readonly meanUs: number;
}

/** Reads the summary sockperf prints (values in µs; --full-rtt makes them round trips). */
export function parseSockperfOutput(text: string): SockperfRtt {
  const value = (re: RegExp, what: string): number => {
    const m = re.exec(text);
    if (!m) throw new Error(`sockperf output has no ${what}:\n${text.slice(-1500)}`);
    return Number(m[1]);
  };
  return {
    p50Us: value(/percentile 50\.000 =\s*([\d.]+)/, 'p50'),
    p99Us: value(/percentile 99\.000 =\s*([\d.]+)/, 'p99'),
    meanUs: value(/avg-rtt=([\d.]+)/, 'avg-rtt'),
  };
}

/** A port that was free a moment ago (sockperf needs one named; loadgen takes port 0). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Polls until something accepts on host:port. */
async function waitListening(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host, port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`sockperf server did not listen on ${host}:${port} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

export async function runSockperf(
  group: ProcessGroup,
  opts: { host: string; size: number; seconds: number; server: Placement; client: Placement },
): Promise<SockperfRtt> {
  const port = await freePort(opts.host);
  const common = ['--tcp', '-i', opts.host, '-p', String(port)];
  const server = group.spawn('sockperf server', ['sockperf', 'server', ...common], opts.server, false);
  try {
    await waitListening(opts.host, port, 5_000);
    const client = group.spawn(
      'sockperf ping-pong',
      ['sockperf', 'ping-pong', ...common, '-m', String(opts.size), '-t', String(opts.seconds), '--full-rtt'],
      opts.client,
      false,
    );
    const status = await client.exited;
    if (status.code !== 0) throw new Error(client.explain('failed'));
    return parseSockperfOutput(client.text.join('\n'));
  } finally {
    await server.kill();
  }
}

export function checkSockperfInstalled(): void {
  const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':');
  if (!dirs.some((dir) => fs.existsSync(`${dir}/sockperf`))) {
    throw new EnvironmentError('sockperf is not installed (needed for the cross-check)', {
      hint: 'apt-get install sockperf (bash scripts/setup.sh installs it), or leave out --sockperf',
    });
  }
}
