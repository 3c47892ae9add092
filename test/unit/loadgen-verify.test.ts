/*
 * The load generator's stream check, against streams that lose, repeat or
 * reorder a block: the sampled check of measured runs must catch each of
 * them just like the full check of the integrity gate. Plain loopback TCP,
 * no privilege; the pattern is rebuilt here the way loadgen.c builds it.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import readline from 'node:readline';
import test from 'ava';
import { LOADGEN_BINARY } from '../../src/bench/loadgen';

const PATTERN_LEN = 1048573;
const MASK = (1n << 64n) - 1n;

/** loadgen.c's make_pattern(seed): splitmix64 words, little-endian. */
function pattern(seed: bigint): Buffer {
  const words = Math.ceil(PATTERN_LEN / 8);
  const out = Buffer.alloc(words * 8);
  let state = seed;
  for (let i = 0; i < words; i++) {
    state = (state + 0x9e3779b97f4a7c15n) & MASK;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
    out.writeBigUInt64LE(z ^ (z >> 31n), i * 8);
  }
  return out.subarray(0, PATTERN_LEN);
}

const PATTERN = pattern(1n);

/** Stream bytes [from, to) as loadgen's client sends them. */
function streamBytes(from: number, to: number): Buffer {
  const out = Buffer.alloc(to - from);
  for (let at = from; at < to; ) {
    const offset = at % PATTERN_LEN;
    const n = Math.min(to - at, PATTERN_LEN - offset);
    PATTERN.copy(out, at - from, offset, offset + n);
    at += n;
  }
  return out;
}

const TOTAL = 3 * 1024 * 1024;
const intact = () => streamBytes(0, TOTAL);
const cases: Record<string, () => Buffer> = {
  'a 4 KiB block lost': () => Buffer.concat([streamBytes(0, 1_000_000), streamBytes(1_004_096, TOTAL)]),
  'a 1 KiB block repeated': () => Buffer.concat([streamBytes(0, 2_000_000), streamBytes(1_998_976, TOTAL)]),
  'two 64 KiB blocks swapped': () => Buffer.concat([streamBytes(0, 65536), streamBytes(131072, 196608), streamBytes(65536, 131072), streamBytes(196608, TOTAL)]),
  'the last 100 bytes reordered': () => Buffer.concat([streamBytes(0, TOTAL - 100), streamBytes(TOTAL - 50, TOTAL), streamBytes(TOTAL - 100, TOTAL - 50)]),
};

interface ConnReport {
  event: string;
  bytesIn?: number;
  firstBadOffset?: number;
  verify?: string;
  port?: number;
}

/** Sends each payload on its own connection (in uneven writes) and returns the server's reports. */
async function serverReports(verify: 'full' | 'sampled', payloads: Buffer[]): Promise<ConnReport[]> {
  const server = spawn(LOADGEN_BINARY, ['server', '--mode', 'stream', '--verify', verify, '--host', '127.0.0.1', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: server.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<ConnReport> => {
    const { value, done } = await lines.next();
    if (done) throw new Error('loadgen server ended early');
    return JSON.parse(value as string) as ConnReport;
  };
  try {
    const { port } = await next();
    const reports: ConnReport[] = [];
    for (const payload of payloads) {
      const sock = net.connect(port!, '127.0.0.1');
      sock.setNoDelay(true);
      for (let at = 0, step = 1; at < payload.length; at += step, step = (step * 7 + 3) % 200_003) sock.write(payload.subarray(at, at + step));
      sock.end();
      sock.resume();
      reports.push(await next());
      sock.destroy();
    }
    return reports;
  } finally {
    server.kill('SIGTERM');
  }
}

for (const verify of ['full', 'sampled'] as const) {
  test(`--verify ${verify}: an intact stream passes; a lost, repeated or reordered block is caught`, async (t) => {
    const names = Object.keys(cases);
    const reports = await serverReports(verify, [intact(), ...names.map((n) => cases[n]!())]);
    t.like(reports[0], { event: 'conn', bytesIn: TOTAL, firstBadOffset: -1, verify });
    names.forEach((name, i) => {
      const r = reports[i + 1]!;
      t.is(r.verify, verify);
      t.true((r.firstBadOffset ?? -1) >= 0, `${name}: not caught (${JSON.stringify(r)})`);
    });
  });
}

test('--verify full catches a single changed byte', async (t) => {
  const payload = intact();
  payload[1_234_567] ^= 0x40;
  const [r] = await serverReports('full', [payload]);
  t.is(r?.firstBadOffset, 1_234_567);
});
