/*
 * Commands run without the privilege they need, while a daemon is running:
 * each must exit 77 (ERR_PRIVILEGE) and say what was refused, never that
 * nothing is pinned or that sockaccel is not running (the pin directory is
 * root-only, so to anyone else it looks empty), and must leave the daemon
 * and its pins exactly as they were. Two callers: an unprivileged user, and
 * root with no capabilities at all (a restricted unit or container).
 */
import test, { type ExecutionContext, type TestFn } from 'ava';
import type { DoctorReport } from '../../src/doctor/check';
import { withScratchCgroup } from '../helpers/cgroup';
import { runCli, type CliResult } from '../helpers/cli';
import { TEST_PIN_PREFIX, withDaemon, type RunningDaemon } from '../helpers/daemon';
import { uniqueName } from '../helpers/names';
import { privilegedTest } from '../helpers/privilege';
import { withTestUser } from '../helpers/test-user';

const privileged = privilegedTest(test.serial as unknown as TestFn);
const EXIT_PRIVILEGE = 77;
/** Root with every capability set emptied, as under a unit's empty CapabilityBoundingSet. */
const ROOT_WITHOUT_CAPS = ['setpriv', '--bounding-set=-all', '--inh-caps=-all', '--ambient-caps=-all', '--no-new-privs', '--'];
/** What must never be said about a daemon that is running. */
const NOT_RUNNING = /nothing pinned|not running|start the daemon/i;

function assertPrivilegeError(t: ExecutionContext, r: CliResult, what: string, refused: RegExp): void {
  t.is(r.code, EXIT_PRIVILEGE, `${what}: exit 77\n${r.stderr}`);
  t.regex(r.stderr, /^sockaccel: \S/, `${what}: our error format\n${r.stderr}`);
  t.regex(r.stderr, refused, `${what}: names what was refused\n${r.stderr}`);
  t.regex(r.stderr, /^hint: run (it )?as root/m, `${what}: says what to do\n${r.stderr}`);
  t.notRegex(r.stderr, NOT_RUNNING, `${what}: never "not running"\n${r.stderr}`);
  t.notRegex(r.stderr, /^\s+at .+[(:]\d+/m, `${what}: no stack trace\n${r.stderr}`);
}

/** The daemon still runs, accepting, with every pin it had. */
function assertDaemonUntouched(t: ExecutionContext, d: RunningDaemon, what: string): void {
  t.notThrows(() => process.kill(d.process.pid, 0), `${what}: the daemon still runs`);
  t.is(d.status().sockopsMode, 'accepting', `${what}: still accelerating new connections`);
}

async function doctorAs(prefix: readonly string[], d: RunningDaemon, cgroup: string): Promise<{ r: CliResult; report: DoctorReport }> {
  const r = await runCli(['doctor', '--json', `--pin-root=${d.pinRoot}`, `--cgroup-path=${cgroup}`], { prefix });
  return { r, report: JSON.parse(r.stdout) as DoctorReport };
}

privileged('an unprivileged user gets exit 77 and the reason from every command that needs root, never "not running"', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path }, (d) =>
      withTestUser(async (user) => {
        const config = [`--pin-root=${d.pinRoot}`, `--cgroup-path=${cg.path}`];
        const pinsRefused = new RegExp(`not permitted to read sockaccel's pins under ${d.pinRoot} \\(EACCES on ${d.pinRoot}(/\\w+)?\\), so whether the daemon is running cannot be told`);
        const lockRefused = /needs root: it cannot take its instance lock \/run\/sockaccel\/\w+\.lock \(EACCES\)/;
        const cases: [string[], RegExp][] = [
          [['status', ...config], pinsRefused],
          [['status', '--json', ...config], pinsRefused],
          [['conns', ...config], pinsRefused],
          [['conns', '--json', '--port=80', ...config], pinsRefused],
          [['purge', '--wait-seconds=0', ...config], lockRefused],
          [['purge', '--force', ...config], lockRefused],
          [['run', ...config], lockRefused],
          [['bench', '--quick', ...config], /bench .*(must run as root|needs root)/],
        ];
        for (const [argv, refused] of cases) {
          const r = await runCli(argv, { prefix: user.asUser });
          assertPrivilegeError(t, r, `as a user: sockaccel ${argv[0]}`, refused);
          t.is(r.stdout, '', `as a user: sockaccel ${argv.join(' ')}: nothing on stdout`);
          assertDaemonUntouched(t, d, `after sockaccel ${argv[0]} as a user`);
        }

        const { r, report } = await doctorAs(user.asUser, d, cg.path);
        t.is(r.code, EXIT_PRIVILEGE, r.stderr);
        t.false(report.complete);
        t.regex(r.stderr, /doctor lacks the privilege for env\.privileges, pins\.present\b.*run it as root/);
        const pins = report.checks.find((c) => c.id === 'pins.present');
        t.like(pins, { status: 'fail', missingPrivilege: true }, JSON.stringify(pins));
        t.regex(pins?.detail ?? '', pinsRefused);
        t.notRegex(JSON.stringify(report), NOT_RUNNING, 'no check says sockaccel is not running');
        assertDaemonUntouched(t, d, 'after doctor as a user');
      }),
    ),
  );
});

privileged('root without capabilities: status and doctor exit 77 naming the refused call; a missing pin root is still "nothing pinned"', async (t) => {
  await withScratchCgroup((cg) =>
    withDaemon({ cgroup: cg.path }, async (d) => {
      const config = [`--pin-root=${d.pinRoot}`, `--cgroup-path=${cg.path}`];
      const status = await runCli(['status', ...config], { prefix: ROOT_WITHOUT_CAPS });
      t.is(status.code, EXIT_PRIVILEGE, status.stderr);
      // Root reaches the pins (its own files); looking the program up by id takes CAP_SYS_ADMIN.
      t.regex(status.stderr, /not permitted to read sockaccel's pins under .*\(bpf_prog_get_fd_by_id\(id \d+\): EPERM/);
      t.regex(status.stderr, /^hint: this root process lacks a capability/m);
      t.notRegex(status.stderr, NOT_RUNNING);

      const { r, report } = await doctorAs(ROOT_WITHOUT_CAPS, d, cg.path);
      t.is(r.code, EXIT_PRIVILEGE, r.stderr);
      t.like(report.checks.find((c) => c.id === 'env.privileges'), { status: 'fail', missingPrivilege: true });
      t.like(report.checks.find((c) => c.id === 'pins.present'), { status: 'pass' });
      assertDaemonUntouched(t, d, 'after status and doctor without capabilities');

      // The other side of the distinction: really nothing there is still said so, with exit 72.
      const absent = await runCli(['status', `--pin-root=${TEST_PIN_PREFIX}${uniqueName('absent')}`], { prefix: ROOT_WITHOUT_CAPS });
      t.is(absent.code, 72, absent.stderr);
      t.regex(absent.stderr, /^sockaccel: nothing pinned under /);
    }),
  );
});
