/*
 * Doctor and the daemon judge pinned maps with the same check
 * (BpfObject.pinnedMapDifferences): a pin the daemon would refuse, doctor
 * reports, and a pin the daemon reuses, doctor passes. Real pins: a stopped
 * daemon's, with one map swapped for one that differs in a single way.
 */
import fs from 'node:fs';
import test, { type TestFn } from 'ava';
import * as bpf from '../../src/kernel/libbpf';
import { close } from '../../src/kernel/libc';
import { mapPinPath, withPinnedFd } from '../../src/kernel/pins';
import { pinCompatibilityCheck } from '../../src/doctor/daemon-state';
import { withScratchCgroup } from '../helpers/cgroup';
import { daemonArgs, removePinRoot, startDaemon, TEST_PIN_PREFIX } from '../helpers/daemon';
import { runCli } from '../helpers/cli';
import { uniqueName } from '../helpers/names';
import { privilegedTest } from '../helpers/privilege';

const privileged = privilegedTest(test.serial as unknown as TestFn);

/** Replaces the pinned map at `pin` with a new map of its type, key and value size, and the given size and flags. */
function replacePinnedMap(pin: string, maxEntries: number, mapFlags: number): void {
  const info = withPinnedFd(pin, bpf.mapInfo);
  fs.rmSync(pin);
  const fd = bpf.bpfMapCreate(info.type, info.name, info.keySize, info.valueSize, maxEntries, { mapFlags });
  try {
    bpf.bpfObjPin(fd, pin);
    fs.chmodSync(pin, 0o600);
  } finally {
    close(fd);
  }
}

privileged('doctor and the daemon agree: a pin with other flags fails both, a pin of another size passes both', async (t) => {
  await withScratchCgroup(async (cg) => {
    const pinRoot = TEST_PIN_PREFIX + uniqueName('compat');
    try {
      const first = await startDaemon({ cgroup: cg.path, pinRoot });
      t.is((await first.stop()).code, 0);
      t.is(pinCompatibilityCheck(pinRoot).status, 'pass', 'the stopped daemon\'s own pins');

      const pairs = mapPinPath(pinRoot, 'sa_pairs');
      const size = withPinnedFd(pairs, bpf.mapInfo).maxEntries;

      // Other flags: the programs were verified against a preallocated hash.
      replacePinnedMap(pairs, size, bpf.BPF.F_NO_PREALLOC);
      const difference = `mapFlags ${bpf.BPF.F_NO_PREALLOC} (pinned) vs 0 (this build)`;
      const doctor = pinCompatibilityCheck(pinRoot);
      t.is(doctor.status, 'fail', doctor.detail);
      t.is(doctor.detail, `pairs ${difference}`);
      const refused = await runCli(daemonArgs({ cgroup: cg.path }, pinRoot), { timeoutMs: 60_000 });
      t.is(refused.code, 73, refused.stderr);
      t.true(refused.stderr.includes(`pinned map ${pairs} is incompatible with this build: ${difference}`), refused.stderr);

      // Another size only: reused as it is (with a warning), never resized.
      replacePinnedMap(pairs, 1024, 0);
      t.is(pinCompatibilityCheck(pinRoot).status, 'pass', 'a size difference is not a conflict');
      const second = await startDaemon({ cgroup: cg.path, pinRoot });
      try {
        const warned = (second.process.events as { msg?: string; map?: string; pinned?: number }[]).find((e) => e.map === 'sa_pairs' && /mapSize differs/.test(e.msg ?? ''));
        t.is(warned?.pinned, 1024, 'the daemon kept the pinned size and said so');
      } finally {
        t.is((await second.stop()).code, 0);
      }
    } finally {
      removePinRoot(pinRoot);
    }
  });
});
