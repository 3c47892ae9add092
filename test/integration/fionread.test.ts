/*
 * The FIONREAD probes against the real kernel: a real accelerated pair in a
 * scratch sockhash (what `run` checks before it attaches anything), that it
 * leaves nothing behind, that it still measures when a running sockaccel
 * has taken its connection, and what `run` decides on this kernel.
 *
 * The expected verdict comes from the kernel table: rows that work count
 * redirected bytes (6.12, 6.18); 6.1 and 5.10 were measured blind. In a
 * kernel VM (scripts/kernel-vm.sh) the same file checks the refusing side.
 */
import os from 'node:os';
import path from 'node:path';
import test, { type TestFn } from 'ava';
import * as bpf from '../../src/kernel/libbpf';
import { PAIRED_PROBE_BYTES, PROBE_OBJECT, PROBE_PROGRAM, probePaired } from '../../src/kernel/fionread';
import { DEFAULT_OBJECT_DIR } from '../../src/kernel/bpf-object';
import { loadedSkMsgPrograms } from '../../src/doctor/neighbours';
import { kernelRow } from '../../src/doctor/kernel-table';
import { parseKernelVersion } from '../../src/kernel/version';
import type { DoctorReport } from '../../src/doctor/check';
import { sockopsProgramIds, withScratchCgroup } from '../helpers/cgroup';
import { removePinRoot, TEST_PIN_PREFIX, withDaemon } from '../helpers/daemon';
import { runCli } from '../helpers/cli';
import { placedArgv } from '../helpers/process';
import { uniqueName } from '../helpers/names';
import { waitFor } from '../helpers/wait-for';
import { privilegedTest } from '../helpers/privilege';

const privileged = privilegedTest(test.serial as unknown as TestFn);

const ROW = kernelRow(parseKernelVersion(os.release())!).status;
const COUNTS = ROW === 'ok';
const EXPECTED = COUNTS ? 'counted' : 'blind';


const probePrograms = () => new Set(loadedSkMsgPrograms().filter((p) => p.name === PROBE_PROGRAM.slice(0, 15)).map((p) => p.id));

privileged(`a real accelerated pair: every byte redirected and read back on both ends, FIONREAD ${EXPECTED} on ${os.release()}`, async (t) => {
  const verdict = await probePaired(DEFAULT_OBJECT_DIR);
  t.is(verdict.kind, EXPECTED, JSON.stringify(verdict));
  const m = verdict.measurement!;
  t.is(m.via, 'probe map');
  t.is(m.bytes, PAIRED_PROBE_BYTES);
  for (const [name, end] of Object.entries({ server: m.server, client: m.client })) {
    t.true(end.redirected, `${name}: the bytes bypassed TCP`);
    t.is(end.read, PAIRED_PROBE_BYTES, `${name}: every byte arrived`);
    if (COUNTS) t.is(end.fionread, PAIRED_PROBE_BYTES, `${name}: FIONREAD counts them`);
  }
});

privileged('the probe leaves no program, map or socket behind', async (t) => {
  const before = probePrograms();
  // The lookup by name must see the probe's program while it is loaded, or the wait below proves nothing.
  const obj = bpf.bpfObjectOpenFile(path.join(DEFAULT_OBJECT_DIR, PROBE_OBJECT));
  try {
    bpf.bpfObjectLoad(obj);
    const id = bpf.progInfo(bpf.bpfProgramFd(bpf.bpfObjectFindProgramByName(obj, PROBE_PROGRAM))).id;
    t.true(probePrograms().has(id));
  } finally {
    bpf.bpfObjectClose(obj);
  }
  await probePaired(DEFAULT_OBJECT_DIR);
  // The sockets' psocks drop their program reference after an RCU grace period.
  await waitFor('the probe program to be freed', () => [...probePrograms()].every((id) => before.has(id)), { timeoutMs: 30_000 });
});

// The daemon cannot start below the minimum kernel.
if (ROW !== 'refused') {
  privileged('inside a cgroup a daemon accelerates, the probe measures through the daemon\'s redirect (doctor)', async (t) => {
    await withScratchCgroup((cg) =>
      withDaemon({ cgroup: cg.path }, async (d) => {
        const run = await runCli(['doctor', '--json', `--pin-root=${d.pinRoot}`, `--cgroup-path=${cg.path}`, '--fionread-hazard=accept'], {
          prefix: placedArgv([], { cgroup: cg.path }),
        });
        const report = JSON.parse(run.stdout) as DoctorReport;
        const paired = report.checks.find((c) => c.id === 'kernel.fionread_paired')!;
        t.is(paired.status, COUNTS ? 'pass' : 'warn', paired.detail);
        t.regex(paired.detail, /redirected by the sockmap program that had already taken the probe's connection/);
        const oneSided = report.checks.find((c) => c.id === 'kernel.fionread')!;
        t.regex(oneSided.detail, /^inconclusive: a running sockmap program/, 'the one-sided case needs bytes over TCP, and says so');
        t.true(d.counter('bytes_redirected') >= BigInt(2 * PAIRED_PROBE_BYTES), 'the daemon redirected the probe');
      }),
    );
  });
}

if (COUNTS) {
  privileged('run checks FIONREAD at the probe stage, before anything is attached, and starts', async (t) => {
    await withScratchCgroup((cg) =>
      withDaemon({ cgroup: cg.path, fionreadHazard: 'refuse' }, async (d) => {
        const msgs = (d.process.events as { msg?: string }[]).map((e) => e.msg ?? '');
        const probed = msgs.findIndex((m) => m.startsWith(`FIONREAD counts redirected bytes: FIONREAD ${PAIRED_PROBE_BYTES} on the server and ${PAIRED_PROBE_BYTES} on the client`));
        t.true(probed >= 0, msgs.join('\n'));
        t.true(probed < msgs.indexOf('data path attached'));
      }),
    );
  });
} else if (ROW === 'hazard') {
  privileged('run refuses with exit 71 and nothing attached, naming the opt-in; with the opt-in it starts and warns', async (t) => {
    await withScratchCgroup(async (cg) => {
      const pinRoot = TEST_PIN_PREFIX + uniqueName('fionread');
      try {
        // The default, named: a VM run may set SOCKACCEL_FIONREAD_HAZARD=accept for the other test files.
        const refused = await runCli(['run', `--cgroup-path=${cg.path}`, `--pin-root=${pinRoot}`, '--fionread-hazard=refuse'], { timeoutMs: 300_000 });
        t.is(refused.code, 71, refused.stderr);
        t.regex(refused.stderr, /refusing to accelerate: on this kernel .* FIONREAD does not count redirected bytes/);
        t.regex(refused.stderr, /--fionread-hazard=accept/);
        t.deepEqual(sockopsProgramIds(cg.path), [], 'nothing attached');
      } finally {
        removePinRoot(pinRoot);
      }
      await withDaemon({ cgroup: cg.path, fionreadHazard: 'accept' }, async (d) => {
        const msgs = (d.process.events as { msg?: string }[]).map((e) => e.msg ?? '');
        t.true(msgs.some((m) => /Accelerating anyway, as fionreadHazard is "accept"/.test(m)), msgs.join('\n'));
      });
    });
  });
}
 else {
  privileged('below the minimum kernel, run refuses at the probe stage with exit 69 naming the feature, nothing attached', async (t) => {
    await withScratchCgroup(async (cg) => {
      const pinRoot = TEST_PIN_PREFIX + uniqueName('fionread');
      try {
        const refused = await runCli(['run', `--cgroup-path=${cg.path}`, `--pin-root=${pinRoot}`], { timeoutMs: 300_000 });
        t.is(refused.code, 69, refused.stderr);
        t.regex(refused.stderr, /the running kernel does not support bpf_get_netns_cookie in sock_ops \(needs Linux 5\.15 or newer\)/);
        t.deepEqual(sockopsProgramIds(cg.path), [], 'nothing attached');
      } finally {
        removePinRoot(pinRoot);
      }
    });
  });
}
