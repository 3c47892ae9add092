import test from 'ava';
import { judgePaired, type EndReading, type PairedMeasurement } from '../../src/kernel/fionread';
import { fionreadGate } from '../../src/daemon/fionread-gate';
import { fionreadPairedCheck } from '../../src/doctor/fionread';
import { KernelHazardError } from '../../src/common/errors';
import { KERNEL_TABLE, kernelRow, kernelRowCheck } from '../../src/doctor/kernel-table';
import { atLeast, parseKernelVersion } from '../../src/kernel/version';

const BYTES = 32768;
const end = (fionread: number, over: Partial<EndReading> = {}): EndReading => ({ fionread, read: BYTES, redirected: true, ...over });
const pair = (server: EndReading, client: EndReading): PairedMeasurement => ({ bytes: BYTES, server, client, via: 'probe map' });

// What the probe measured: 6.12 and 6.18 (counted), Debian's 6.1 (blind on both ends).
const COUNTED = pair(end(BYTES), end(BYTES));
const BLIND_6_1 = pair(end(0), end(0));

test('judgePaired: counted only when both ends show every byte; blind when the bytes were there but FIONREAD showed fewer', (t) => {
  t.is(judgePaired(COUNTED).kind, 'counted');
  t.is(judgePaired(BLIND_6_1).kind, 'blind');
  t.is(judgePaired(pair(end(BYTES), end(0))).kind, 'blind', 'one blind end is enough');
  t.is(judgePaired(pair(end(4096), end(BYTES))).kind, 'blind', 'a partial count too');
});

test('judgePaired: a probe that did not build the situation is inconclusive, never counted', (t) => {
  const plain = judgePaired(pair(end(BYTES, { redirected: false }), end(BYTES)));
  t.is(plain.kind, 'inconclusive');
  t.regex(plain.kind === 'inconclusive' ? plain.reason : '', /plain TCP/);
  const short = judgePaired(pair(end(0, { read: 100 }), end(0)));
  t.is(short.kind, 'inconclusive');
  t.regex(short.kind === 'inconclusive' ? short.reason : '', /100 and 32768 of 32768 bytes arrived/);
});

test('gate: a kernel that counts starts; blind or inconclusive refuses by default with exit 71 naming the opt-in', (t) => {
  t.is(fionreadGate(judgePaired(COUNTED), 'refuse', '6.12.117').level, 'info');
  for (const verdict of [judgePaired(BLIND_6_1), { kind: 'inconclusive' as const, reason: 'the probe failed: EPERM' }]) {
    const err = t.throws(() => fionreadGate(verdict, 'refuse', '6.1.0-57-amd64'), { instanceOf: KernelHazardError });
    t.is(err?.exitCode, 71);
    t.is(err?.code, 'ERR_KERNEL_HAZARD');
    t.regex(err?.message ?? '', /^refusing to accelerate: /);
    t.regex(err?.message ?? '', /6\.1\.0-57-amd64/);
    t.regex(err?.hint ?? '', /nothing was attached/);
    t.regex(err?.hint ?? '', /fionreadHazard: "accept".*SOCKACCEL_FIONREAD_HAZARD=accept.*--fionread-hazard=accept/);
  }
  const blind = t.throws(() => fionreadGate(judgePaired(BLIND_6_1), 'refuse', '6.1.0-57-amd64'));
  t.regex(blind?.message ?? '', /FIONREAD 0 on the server and 0 on the client while 32768 redirected bytes waited on each/);
  t.regex(blind?.message ?? '', /stall/);
});

test('gate: with the opt-in a blind kernel starts, with a warning that says what was accepted', (t) => {
  const outcome = fionreadGate(judgePaired(BLIND_6_1), 'accept', '6.1.0-57-amd64');
  t.is(outcome.level, 'warn');
  t.regex(outcome.message, /does not count redirected bytes/);
  t.regex(outcome.message, /Accelerating anyway, as fionreadHazard is "accept"/);
  t.regex(outcome.message, /excludePorts/);
});

test('doctor shows the daemon\'s decision: pass where it counts, fail (refuse) or warn (accept) where it does not', (t) => {
  t.is(fionreadPairedCheck(judgePaired(COUNTED), 'refuse', '6.18.44').status, 'pass');
  const refused = fionreadPairedCheck(judgePaired(BLIND_6_1), 'refuse', '6.1.0-57-amd64');
  t.is(refused.status, 'fail');
  t.regex(refused.detail, /`sockaccel run` refuses to start here \(exit 71\)/);
  t.regex(refused.fix ?? '', /fionread-hazard=accept/);
  const accepted = fionreadPairedCheck(judgePaired(BLIND_6_1), 'accept', '6.1.0-57-amd64');
  t.is(accepted.status, 'warn');
  t.regex(accepted.fix ?? '', /excludePorts/);
});

test('kernel table: every tested kernel falls in its own row, and rows are in version order', (t) => {
  for (const row of KERNEL_TABLE) {
    for (const tested of row.tested) t.is(kernelRow(parseKernelVersion(tested)!), row, tested);
  }
  for (let i = 1; i < KERNEL_TABLE.length; i++) {
    const [before, row] = [KERNEL_TABLE[i - 1], KERNEL_TABLE[i]];
    t.true(atLeast(parseKernelVersion(row.from)!, before.from) && !atLeast(parseKernelVersion(before.from)!, row.from), row.from);
  }
});

test('kernel table: doctor names the row, says whether this exact kernel was tested, and grades it', (t) => {
  const exact = kernelRowCheck(parseKernelVersion('6.1.0-57-amd64'), '6.1.0-57-amd64');
  t.is(exact.status, 'warn');
  t.regex(exact.detail, /^6\.1\.0-57-amd64 is in the row "5\.15 to 6\.11"; this exact kernel was tested: /);
  const untested = kernelRowCheck(parseKernelVersion('6.6.30'), '6.6.30');
  t.is(untested.status, 'warn');
  t.regex(untested.detail, /not tested itself: the live checks here decide/);
  t.is(kernelRowCheck(parseKernelVersion('6.12.5'), '6.12.5').status, 'pass');
  const host = kernelRowCheck(parseKernelVersion('6.18.44-fc-v669'), '6.18.44-fc-v669');
  t.is(host.status, 'pass');
  t.regex(host.detail, /this exact kernel was tested/, 'a local build of a tested release counts as tested');
  t.regex(kernelRowCheck(parseKernelVersion('6.18.4'), '6.18.4').detail, /not tested itself/, 'but not another release with the same prefix');
  const old = kernelRowCheck(parseKernelVersion('5.10.0-46-amd64'), '5.10.0-46-amd64');
  t.is(old.status, 'fail');
  t.regex(old.detail, /exit 69/);
  t.is(kernelRowCheck(null, 'weird').status, 'fail');
});
