/*
 * sockaccel.service under a real systemd (booted with systemd-nspawn, see
 * test/helpers/nspawn.ts): installed by scripts/install.sh, READY/STATUS/
 * WATCHDOG notifications, restart under a live stream, stop, a start that
 * fails, and scripts/uninstall.sh. One container for the whole file, tests
 * in order; the container, its cgroups and every pin go afterwards.
 *
 * Traffic runs on the host, in a cgroup below the container's: the daemon
 * inside attaches to the container's cgroup root, and the container shares
 * the host's network namespace. The pins are read from the host too, through
 * the bpffs directory the container has at /sys/fs/bpf.
 */
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { readStatus, type StatusReport } from '../../src/cli/status';
import { withLongStream } from '../helpers/long-stream';
import { bootContainer, missingNspawn, REPO_IN_CONTAINER, type Container } from '../helpers/nspawn';
import { missingPrivilege } from '../helpers/privilege';
import { assertIntegrity, exchange } from '../helpers/traffic';
import { waitFor } from '../helpers/wait-for';

const problem = missingPrivilege() ?? missingNspawn();
const CI = process.env.CI === 'true';
// Under CI a missing tool or privilege fails (below), it never skips.
const systemdTest = problem === undefined || CI ? test.serial : test.serial.skip;
if (problem !== undefined && CI) {
  test('the systemd tests can run here', (t) => {
    t.fail(`missing under CI: ${problem}`);
  });
}

const UNIT = 'sockaccel.service';
const DROP_IN_DIR = '/etc/systemd/system/sockaccel.service.d';
const SUMMARY = /^(\d+) sockets accelerated, (\d+) bytes redirected, \d+ inserts failed \(map full\)$/;
const LOOPBACK = '127.0.0.1';

let container: Container | undefined;
let shutdown: (() => Promise<void>) | undefined;

test.before(async () => {
  if (problem !== undefined && !CI) return;
  ({ container, shutdown } = await bootContainer());
});

test.after.always(async () => {
  await shutdown?.();
});

function booted(): Container {
  if (!container) throw new Error('the container did not boot (see the before hook)');
  return container;
}

/** The daemon's pin root (/sys/fs/bpf/sockaccel inside), as the host sees it. */
const pinRoot = (): string => path.join(booted().bpffsDir, 'sockaccel');
const hostStatus = (): StatusReport => readStatus(pinRoot());
const counter = (name: string): bigint => BigInt(hostStatus().counters[name] ?? 'NaN');

/** A leaf cgroup below the container's root for host-side peers: the daemon inside sees their sockets. */
function peerCgroup(): string {
  const dir = path.join(booted().cgroupRoot, 'sockaccel-test-peers');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

async function show(...properties: string[]): Promise<Record<string, string>> {
  return booted().show(UNIT, properties);
}

/** Writes a drop-in for the unit (empty text removes it) and reloads systemd. */
async function dropIn(name: string, text: string): Promise<void> {
  const file = `${DROP_IN_DIR}/${name}.conf`;
  await booted().sh(text === '' ? `rm -f ${file}` : `mkdir -p ${DROP_IN_DIR} && printf '%s' '${text}' > ${file}`);
  await booted().sh('systemctl daemon-reload');
}

type Journal = { msg?: string; time?: number; reusedMaps?: string[] }[];

/** The daemon's JSON log lines for this unit's current invocation. */
async function daemonLog(): Promise<Journal> {
  const id = (await show('InvocationID')).InvocationID;
  const out = await booted().sh(`journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=${id}`);
  return out
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Journal[number]);
}

/** "Mon 2026-11-23 18:01:06.123456 UTC" (systemctl --timestamp=us+utc) in microseconds since the epoch. */
function unixMicros(text: string): number {
  const m = /(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)\.(\d{6}) UTC/.exec(text);
  if (!m) throw new Error(`not a us+utc timestamp: ${text}`);
  return Date.parse(`${m[1]}T${m[2]}Z`) * 1000 + Number(m[3]);
}

async function probeConnection(t: ExecutionContext, seed: string): Promise<bigint> {
  const inserted = counter('sockets_inserted');
  const cgroup = peerCgroup();
  const result = await exchange({
    server: { cgroup, host: LOOPBACK, mode: 'echo' },
    client: { cgroup, host: LOOPBACK, bytes: 128 * 1024, seed },
  });
  assertIntegrity(t, result.client, result.server, { echo: true });
  return counter('sockets_inserted') - inserted;
}

systemdTest('install.sh installs and starts the service; it is active only once READY, with a STATUS summary', async (t) => {
  const c = booted();
  // Faster STATUS= refreshes than the 5 s default, so the test sees one.
  await dropIn('status-interval', '[Service]\nEnvironment=SOCKACCEL_STATUS_INTERVAL_MS=300\n');
  const install = await c.exec(['bash', `${REPO_IN_CONTAINER}/scripts/install.sh`], 120_000);
  t.is(install.code, 0, `${install.stdout}\n${install.stderr}`);
  t.regex(install.stdout, /wrote the default \/etc\/sockaccel\/config\.json/);
  t.regex(install.stdout, /sockaccel\.service enabled and running: \d+ sockets accelerated/);

  const state = await show('ActiveState', 'SubState', 'UnitFileState', 'Type', 'NotifyAccess', 'WatchdogUSec', 'StatusText', 'NRestarts', 'ActiveEnterTimestamp');
  t.like(state, { ActiveState: 'active', SubState: 'running', UnitFileState: 'enabled', Type: 'notify', NotifyAccess: 'main', WatchdogUSec: '20s', NRestarts: '0' });
  t.regex(state.StatusText!, SUMMARY);
  // The daemon logs "ready" right before READY=1; systemd entered "active" after that.
  const log = await daemonLog();
  const ready = log.find((e) => e.msg === 'ready');
  t.truthy(ready, 'the daemon logged ready');
  // Its `ip monitor` child (behind setpriv --pdeathsig) runs inside the unit's sandbox.
  t.deepEqual(log.filter((e) => /^ip monitor (exited|unavailable)/.test(e.msg ?? '')), [], 'ip monitor started and stays up');
  const activeAtUs = unixMicros(await c.sh(`systemctl show ${UNIT} -P ActiveEnterTimestamp --timestamp=us+utc`));
  t.true(ready!.time! * 1000 <= activeAtUs, `ready logged at ${ready!.time} ms, unit active at ${activeAtUs / 1000} ms`);
  const status = hostStatus();
  t.is(status.sockopsMode, 'accepting', 'pinned and attached by the time the unit is active');
  t.not(status.links.sockops, null);

  // STATUS= follows the counters.
  t.is(await probeConnection(t, 'status'), 2n, 'connections in the container cgroup are accelerated');
  await waitFor('STATUS= to count redirected bytes', async () => Number(SUMMARY.exec((await show('StatusText')).StatusText ?? '')?.[2] ?? 0) > 0);

  const verify = await c.exec(['systemd-analyze', 'verify', `/etc/systemd/system/${UNIT}`]);
  t.is(verify.code, 0, verify.stderr);
  t.is(verify.stdout + verify.stderr, '', 'systemd-analyze verify is clean');
  const security = await c.exec(['systemd-analyze', 'security', UNIT, '--no-pager']);
  const exposure = /Overall exposure level for sockaccel\.service: ([\d.]+)/.exec(security.stdout);
  t.truthy(exposure, security.stdout);
  t.log(`systemd-analyze security: ${exposure![1]}`);
  t.true(Number(exposure![1]) <= 2.5, `exposure ${exposure![1]} rose above 2.5`);

  // Rerunning install.sh (an upgrade) keeps the config and hands over to a new process.
  await c.sh(`sed -i 's/"logLevel": "info"/"logLevel": "debug"/' /etc/sockaccel/config.json`);
  const oldPid = (await show('MainPID')).MainPID;
  const again = await c.exec(['bash', `${REPO_IN_CONTAINER}/scripts/install.sh`], 120_000);
  t.is(again.code, 0, `${again.stdout}\n${again.stderr}`);
  t.regex(again.stdout, /keeping the existing \/etc\/sockaccel\/config\.json/);
  t.regex(await c.sh('cat /etc/sockaccel/config.json'), /"logLevel": "debug"/);
  t.not((await show('MainPID')).MainPID, oldPid);
  t.true(((await daemonLog()).find((e) => e.msg === 'ready')?.reusedMaps?.length ?? 0) > 0, 'the new process reused the pinned maps');
});

systemdTest('a daemon whose event loop is blocked misses its watchdog pings and is restarted', async (t) => {
  await dropIn('watchdog', '[Service]\nEnvironment=SOCKACCEL_TEST_HOOKS=1\nWatchdogSec=2s\n');
  await booted().sh(`systemctl restart ${UNIT}`);
  const before = await show('MainPID', 'NRestarts', 'ActiveEnterTimestampMonotonic', 'WatchdogUSec');
  t.is(before.WatchdogUSec, '2s');
  // Pings keep a healthy daemon alive: systemd records a ping later than the
  // limit after activation, when an unpinged watchdog would have fired.
  const limitUs = 2_000_000;
  await waitFor('a watchdog ping past the first limit', async () => {
    const now = await show('WatchdogTimestampMonotonic', 'MainPID');
    if (now.MainPID !== before.MainPID) throw new Error(`MainPID changed from ${before.MainPID} to ${now.MainPID}`);
    return Number(now.WatchdogTimestampMonotonic) > Number(before.ActiveEnterTimestampMonotonic) + limitUs;
  });
  t.like(await show('MainPID', 'NRestarts', 'ActiveState'), { MainPID: before.MainPID, NRestarts: before.NRestarts, ActiveState: 'active' });

  await booted().sh(`systemctl kill --kill-whom=main --signal=SIGUSR2 ${UNIT}`);
  await waitFor('the watchdog restart', async () => {
    const now = await show('NRestarts', 'ActiveState', 'MainPID');
    return Number(now.NRestarts) === Number(before.NRestarts) + 1 && now.ActiveState === 'active' && now.MainPID !== before.MainPID;
  });
  const journal = await booted().sh(`journalctl --no-pager -o cat -u ${UNIT} | grep -i watchdog || true`);
  t.regex(journal, /Watchdog timeout \(limit 2s\)/);
  t.is(hostStatus().sockopsMode, 'accepting');
  await dropIn('watchdog', '');
  await booted().sh(`systemctl restart ${UNIT}`);
});

systemdTest('systemctl restart under a live stream keeps it byte-exact and accelerated', async (t) => {
  await withLongStream({ cgroup: peerCgroup(), host: LOOPBACK }, async (stream) => {
    await waitFor('the stream to be accelerated', () => hostStatus().sockets.clients + hostStatus().sockets.servers === 2, { failIf: stream.client.process.exitedReport });
    const before = { mainPid: (await show('MainPID')).MainPID, link: hostStatus().links.sockops!, passed: counter('msgs_passed') };
    for (let i = 0; i < 2; i++) {
      const redirected = counter('msgs_redirected');
      await booted().sh(`systemctl restart ${UNIT}`);
      await waitFor('the stream to keep redirecting', () => counter('msgs_redirected') > redirected + 20n, { failIf: stream.client.process.exitedReport });
    }
    const after = hostStatus();
    t.not((await show('MainPID')).MainPID, before.mainPid);
    t.is(after.links.sockops!.id, before.link.id, 'the same link, updated in place');
    t.not(after.links.sockops!.progId, before.link.progId, 'running the new process\'s program');
    t.is(after.sockets.clients + after.sockets.servers, 2, 'the stream stayed in the maps');
    t.is(counter('msgs_passed'), before.passed, 'nothing went over plain TCP');
    const result = await stream.finish();
    assertIntegrity(t, result.client, result.server, { echo: true });
  });
});

systemdTest('systemctl stop drains within TimeoutStopSec: new connections plain, pins kept', async (t) => {
  const started = Date.now();
  await booted().sh(`systemctl stop ${UNIT}`, 30_000);
  const tookMs = Date.now() - started;
  const timeoutStop = (await show('TimeoutStopUSec')).TimeoutStopUSec;
  t.is(timeoutStop, '15s');
  t.true(tookMs < 15_000, `stop took ${tookMs} ms`);
  t.log(`systemctl stop took ${tookMs} ms`);
  t.like(await show('ActiveState', 'Result', 'ExecMainStatus'), { ActiveState: 'inactive', Result: 'success', ExecMainStatus: '0' });
  t.is(hostStatus().sockopsMode, 'draining', 'the maps and links stay, running the drain program');
  t.is(await probeConnection(t, 'after stop'), 0n, 'a new connection is plain TCP');
});

systemdTest('a start that fails before READY never becomes active and is not retried in a loop', async (t) => {
  await dropIn('broken', '[Service]\nEnvironment=SOCKACCEL_PIN_ROOT=/run/not-bpffs\n');
  const restarts = Number((await show('NRestarts')).NRestarts);
  const start = await booted().exec(['systemctl', 'start', UNIT]);
  t.not(start.code, 0);
  // systemd decides at the exit: a restart to come would show as activating/auto-restart;
  // failed/failed means none is scheduled (Restart=on-failure, but exit 72 is in RestartPreventExitStatus).
  t.like(await show('ActiveState', 'SubState', 'Result', 'ExecMainStatus', 'Restart'), { ActiveState: 'failed', SubState: 'failed', Result: 'exit-code', ExecMainStatus: '72', Restart: 'on-failure' });
  t.is(Number((await show('NRestarts')).NRestarts), restarts, 'RestartPreventExitStatus stops the loop');
  t.regex(await booted().sh(`journalctl --no-pager -o cat -u ${UNIT} -n 20`), /pinRoot \/run\/not-bpffs is not on a bpf filesystem/);
  await dropIn('broken', '');
  await booted().sh(`systemctl reset-failed ${UNIT} && systemctl start ${UNIT}`);
  t.is((await show('ActiveState')).ActiveState, 'active');
});

systemdTest('uninstall.sh waits for accelerated connections, refuses while they last, then removes everything', async (t) => {
  const c = booted();
  await withLongStream({ cgroup: peerCgroup(), host: LOOPBACK }, async (stream) => {
    await waitFor('the stream to be accelerated', () => hostStatus().sockets.clients + hostStatus().sockets.servers === 2, { failIf: stream.client.process.exitedReport });
    const refused = await c.exec(['bash', `${REPO_IN_CONTAINER}/scripts/uninstall.sh`, '--wait-seconds', '1'], 60_000);
    t.is(refused.code, 1, refused.stdout);
    t.regex(refused.stdout, /waiting up to 1 s for 2 accelerated sockets to close/);
    t.regex(refused.stderr, /2 accelerated sockets still use the maps/);
    t.regex(refused.stderr, /purge refused .*: pins, unit and command were left in place/);
    t.like(await show('ActiveState', 'UnitFileState'), { ActiveState: 'inactive', UnitFileState: 'disabled' });
    t.is(hostStatus().sockopsMode, 'draining');
    const result = await stream.finish();
    assertIntegrity(t, result.client, result.server, { echo: true });
  });

  const done = await c.exec(['bash', `${REPO_IN_CONTAINER}/scripts/uninstall.sh`, '--wait-seconds', '5'], 60_000);
  t.is(done.code, 0, `${done.stdout}\n${done.stderr}`);
  t.false(fs.existsSync(pinRoot()), 'every pin is gone');
  t.is((await show('LoadState')).LoadState, 'not-found');
  t.is(await c.sh('ls /usr/local/bin/sockaccel /opt/sockaccel /etc/systemd/system/sockaccel.service 2>/dev/null | wc -l'), '0\n');
  t.regex(await c.sh('cat /etc/sockaccel/config.json'), /"pinRoot"/, 'the config is kept');
  const again = await c.exec(['bash', `${REPO_IN_CONTAINER}/scripts/uninstall.sh`], 60_000);
  t.is(again.code, 0, `idempotent: ${again.stdout}\n${again.stderr}`);
});
