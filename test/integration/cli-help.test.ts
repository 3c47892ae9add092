/*
 * `--help` asks a question; it must never run the command. Every command is
 * asked for its usage three ways (`<cmd> --help`, `<cmd> -h`, `help <cmd>`),
 * as root and with the flags that would make it act (a scratch cgroup, a pin
 * root, bench's output directory), and must print exactly its usage and
 * leave all of them untouched: `run --help` once attached to the cgroup and
 * `bench --help` started a benchmark. Run as an unprivileged user as well,
 * the answer is the same (usage needs no privilege).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext, type TestFn } from 'ava';
import { COMMANDS, type CommandName } from '../../src/cli/cli-args';
import { formatUsage } from '../../src/cli/usage';
import { lockPath } from '../../src/daemon/instance-lock';
import { sockopsProgramIds, withScratchCgroup, type ScratchCgroup } from '../helpers/cgroup';
import { runCli } from '../helpers/cli';
import { removePinRoot, TEST_PIN_PREFIX } from '../helpers/daemon';
import { uniqueName } from '../helpers/names';
import { privilegedTest } from '../helpers/privilege';
import { withTestUser } from '../helpers/test-user';

const privileged = privilegedTest(test.serial as unknown as TestFn);
const NAMES = Object.keys(COMMANDS) as CommandName[];
// A command that wrongly runs would take far longer (bench: minutes; run: until stopped).
const TIMEOUT_MS = 30_000;


interface Scratch {
  readonly cg: ScratchCgroup;
  readonly pinRoot: string;
  readonly outDir: string;
}

/** The flags that would make `command` do something, all pointing at scratch places. */
function actingFlags(command: CommandName, s: Scratch): string[] {
  const config = [`--cgroup-path=${s.cg.path}`, `--pin-root=${s.pinRoot}`];
  if (command === 'help' || command === 'version') return [];
  return command === 'bench' ? [...config, `--out-dir=${s.outDir}`, '--quick'] : config;
}

/** What a command that ran would have left: programs on the cgroup, a pin root, a lock, bench output. */
function assertUntouched(t: ExecutionContext, s: Scratch, what: string): void {
  t.deepEqual(sockopsProgramIds(s.cg.path), [], `${what}: nothing attached to the cgroup`);
  t.false(fs.existsSync(s.pinRoot), `${what}: no pin root`);
  t.false(fs.existsSync(lockPath(s.pinRoot)), `${what}: no instance lock`);
  t.false(fs.existsSync(s.outDir), `${what}: no bench output`);
}

async function withScratch(fn: (s: Scratch) => Promise<void>): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-help-'));
  fs.chmodSync(tmp, 0o777); // the unprivileged user must be able to create outDir in it, were bench to run
  const pinRoot = TEST_PIN_PREFIX + uniqueName('help');
  try {
    await withScratchCgroup((cg) => fn({ cg, pinRoot, outDir: path.join(tmp, 'out') }));
  } finally {
    removePinRoot(pinRoot);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function assertUsageOnly(t: ExecutionContext, s: Scratch, command: CommandName, argv: string[], prefix: readonly string[] = []): Promise<void> {
  const what = `${prefix.length > 0 ? 'as a user: ' : ''}sockaccel ${argv.join(' ')}`;
  const r = await runCli(argv, { prefix, timeoutMs: TIMEOUT_MS });
  t.is(r.code, 0, `${what}: exit 0\n${r.stderr}`);
  t.is(r.stdout, `${formatUsage(command)}\n`, `${what}: the usage of ${command}, nothing else`);
  t.is(r.stderr, '', what);
  assertUntouched(t, s, what);
}

privileged('<command> --help, -h and help <command> print that usage and do nothing else', async (t) => {
  await withScratch(async (s) => {
    for (const command of NAMES) {
      const flags = actingFlags(command, s);
      await assertUsageOnly(t, s, command, [command, ...flags, '--help']);
      await assertUsageOnly(t, s, command, [command, '-h', ...flags]);
      await assertUsageOnly(t, s, command, ['help', command]);
    }
  });
});

privileged('the usage needs no privilege: the same answers for an unprivileged user', async (t) => {
  await withScratch((s) =>
    withTestUser(async (user) => {
      for (const command of NAMES) await assertUsageOnly(t, s, command, [command, ...actingFlags(command, s), '--help'], user.asUser);
    }),
  );
});

test.serial('sockaccel --help, -h and help print the overview of every command', async (t) => {
  const overview = `${formatUsage()}\n`;
  for (const argv of [['--help'], ['-h'], ['help']]) {
    const r = await runCli(argv, { timeoutMs: TIMEOUT_MS });
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, overview, argv.join(' '));
  }
  for (const command of NAMES) t.true(overview.includes(COMMANDS[command].summary), command);
});
