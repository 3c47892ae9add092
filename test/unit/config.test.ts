import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeConfigSchema, loadConfig, parsePortOverrides, type SockaccelConfig } from '../../src/config/config';
import { ConfigError } from '../../src/common/errors';

const DEFAULT_CONFIG_FILE = '/etc/sockaccel/config.json';

const DEFAULTS: SockaccelConfig = {
  config: DEFAULT_CONFIG_FILE,
  cgroupPath: '',
  pinRoot: '/sys/fs/bpf/sockaccel',
  localCidrs: ['auto'],
  includePorts: [],
  excludePorts: [],
  mapSize: 65535,
  logLevel: 'info',
  statusIntervalMs: 5000,
  mesh: 'auto',
  meshProxyUid: -1,
  meshOutboundPort: 0,
  meshInboundPort: 0,
  meshExcludedPorts: [],
  acceleratePlain: true,
  fionreadHazard: 'refuse',
  objectDir: '',
  metricsEnabled: false,
  metricsAddress: '127.0.0.1:9464',
  adaptive: true,
  adaptiveExplorePermille: 20,
  adaptiveHalfLifeSeconds: 30,
  adaptiveMinConnections: 20,
  adaptiveIntervalMs: 250,
  adaptiveMaxServices: 4096,
  adaptiveOverrides: [],
  adaptiveConnectionCostNs: 9090,
  adaptiveTurnSavingNs: 989,
  adaptiveBurstMessageCostNs: 2049,
  adaptiveByteSavingPs: 377,
};

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sockaccel-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `content` (an object is JSON-encoded) to a config file in a fresh temp dir. */
function configFile(t: ExecutionContext, content: string | object = {}): string {
  const file = path.join(tempDir(t), 'config.json');
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

interface Sources {
  file?: string | object;
  env?: NodeJS.ProcessEnv;
  argv?: string[];
}

/** loadConfig with an explicitly named temp config file, so a file at the default path never leaks in. */
function load(t: ExecutionContext, { file = {}, env = {}, argv = [] }: Sources = {}): SockaccelConfig {
  return loadConfig({ argv, env: { SOCKACCEL_CONFIG: configFile(t, file), ...env } });
}

// The one test that relies on the default path being absent; skipped on a
// machine where sockaccel is installed and configured.
(existsSync(DEFAULT_CONFIG_FILE) ? test.skip : test)('defaults load when no config file exists', (t) => {
  t.deepEqual(loadConfig({ argv: [], env: {} }), DEFAULTS);
});

test('a named empty file gives the defaults', (t) => {
  const file = configFile(t, '');
  t.deepEqual(loadConfig({ env: { SOCKACCEL_CONFIG: file } }), { ...DEFAULTS, config: file });
});

test('localCidrs takes "auto" beside CIDRs', (t) => {
  t.deepEqual(load(t, { env: { SOCKACCEL_LOCAL_CIDRS: 'auto,10.96.0.0/12' } }).localCidrs, ['auto', '10.96.0.0/12']);
  t.throws(() => load(t, { env: { SOCKACCEL_LOCAL_CIDRS: 'automatic' } }), { message: /localCidrs/ });
});

test('the file is read', (t) => {
  const config = load(t, {
    file: { mapSize: 1024, localCidrs: ['10.244.0.0/16', 'fd00::/64'], includePorts: [80, 443], logLevel: 'debug' },
  });
  t.is(config.mapSize, 1024);
  t.deepEqual(config.localCidrs, ['10.244.0.0/16', 'fd00::/64']);
  t.deepEqual(config.includePorts, [80, 443]);
  t.is(config.logLevel, 'debug');
  t.is(config.pinRoot, DEFAULTS.pinRoot);
});

test('the file can be named by --config', (t) => {
  const file = configFile(t, { pinRoot: '/sys/fs/bpf/other' });
  const config = loadConfig({ argv: [`--config=${file}`], env: {} });
  t.is(config.config, file);
  t.is(config.pinRoot, '/sys/fs/bpf/other');
});

test('env overrides the file', (t) => {
  const config = load(t, {
    file: { mapSize: 1024, logLevel: 'debug' },
    env: { SOCKACCEL_MAP_SIZE: '2048' },
  });
  t.is(config.mapSize, 2048);
  t.is(config.logLevel, 'debug');
});

test('args override env', (t) => {
  const config = load(t, {
    file: { mapSize: 1024 },
    env: { SOCKACCEL_MAP_SIZE: '2048', SOCKACCEL_PIN_ROOT: '/sys/fs/bpf/env' },
    argv: ['--map-size=4096', '--pin-root', '/sys/fs/bpf/arg'],
  });
  t.is(config.mapSize, 4096);
  t.is(config.pinRoot, '/sys/fs/bpf/arg');
});

test('lists from env and args are comma-separated', (t) => {
  const config = load(t, {
    env: {
      SOCKACCEL_LOCAL_CIDRS: '10.244.0.0/16, fd00::/64',
      SOCKACCEL_INCLUDE_PORTS: '80,443',
    },
    argv: ['--exclude-ports=22,2379'],
  });
  t.deepEqual(config.localCidrs, ['10.244.0.0/16', 'fd00::/64']);
  t.deepEqual(config.includePorts, [80, 443]);
  t.deepEqual(config.excludePorts, [22, 2379]);
});

test('an empty list variable means an empty list', (t) => {
  const config = load(t, { file: { localCidrs: ['10.0.0.0/8'] }, env: { SOCKACCEL_LOCAL_CIDRS: '' } });
  t.deepEqual(config.localCidrs, []);
});

test('the config object is frozen, lists included', (t) => {
  const config = load(t, { file: { localCidrs: ['10.0.0.0/8'] } });
  t.true(Object.isFrozen(config));
  t.true(Object.isFrozen(config.localCidrs));
  t.true(Object.isFrozen(config.includePorts));
  t.true(Object.isFrozen(config.excludePorts));
  t.throws(() => {
    (config as { mapSize: number }).mapSize = 1;
  }, { instanceOf: TypeError });
});

interface BadCase {
  name: string;
  sources: Sources;
  /** Strings the message must contain: the key and the offending value. */
  mentions: string[];
}

const BAD_VALUES: BadCase[] = [
  { name: 'not a CIDR', sources: { env: { SOCKACCEL_LOCAL_CIDRS: 'banana/8' } }, mentions: ['localCidrs', 'banana/8'] },
  { name: 'bad IPv4 address', sources: { file: { localCidrs: ['10.0.0.300/8'] } }, mentions: ['localCidrs', '10.0.0.300/8'] },
  { name: 'CIDR without prefix', sources: { argv: ['--local-cidrs=10.0.0.1'] }, mentions: ['localCidrs', '10.0.0.1', '10.0.0.1/32'] },
  {
    name: 'IPv4 host bits set',
    sources: { env: { SOCKACCEL_LOCAL_CIDRS: '10.0.0.1/8' } },
    mentions: ['localCidrs', '10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?'],
  },
  {
    name: 'IPv6 host bits set',
    sources: { env: { SOCKACCEL_LOCAL_CIDRS: '10.244.0.0/16,fd00::1/64' } },
    mentions: ['localCidrs', 'fd00::1/64 has host bits set; did you mean fd00::/64?'],
  },
  { name: 'IPv4 prefix too long', sources: { env: { SOCKACCEL_LOCAL_CIDRS: '10.0.0.0/33' } }, mentions: ['localCidrs', '10.0.0.0/33', '0..32'] },
  { name: 'IPv6 prefix too long', sources: { file: { localCidrs: ['fd00::/129'] } }, mentions: ['localCidrs', 'fd00::/129', '0..128'] },
  { name: 'CIDR that is not a string', sources: { file: { localCidrs: [10] } }, mentions: ['localCidrs', '10'] },
  { name: 'port 0', sources: { env: { SOCKACCEL_INCLUDE_PORTS: '0' } }, mentions: ['includePorts', 'port 0'] },
  { name: 'port 70000', sources: { argv: ['--exclude-ports=22,70000'] }, mentions: ['excludePorts', 'port 70000'] },
  { name: 'port that is not a number', sources: { env: { SOCKACCEL_EXCLUDE_PORTS: 'http' } }, mentions: ['excludePorts', '"http"'] },
  { name: 'fractional port', sources: { file: { includePorts: [80.5] } }, mentions: ['includePorts', '80.5'] },
  { name: 'ports that are not a list', sources: { file: { includePorts: 80 } }, mentions: ['includePorts', '80'] },
  {
    name: 'port in both lists',
    sources: { file: { includePorts: [80, 443] }, env: { SOCKACCEL_EXCLUDE_PORTS: '443' } },
    mentions: ['includePorts', 'excludePorts', '443'],
  },
  { name: 'mapSize too small', sources: { file: { mapSize: 8 } }, mentions: ['mapSize', '8', '16..1048576'] },
  { name: 'mapSize too large', sources: { env: { SOCKACCEL_MAP_SIZE: '2000000' } }, mentions: ['mapSize', '2000000'] },
  { name: 'mapSize 0 (a falsy value is still shown)', sources: { argv: ['--map-size=0'] }, mentions: ['mapSize', 'value was 0'] },
  { name: 'mapSize with junk', sources: { env: { SOCKACCEL_MAP_SIZE: '12abc' } }, mentions: ['mapSize', '"12abc"'] },
  { name: 'mapSize null in the file', sources: { file: { mapSize: null } }, mentions: ['mapSize', 'value was null'] },
  { name: 'statusIntervalMs too small', sources: { file: { statusIntervalMs: 99 } }, mentions: ['statusIntervalMs', '99'] },
  { name: 'bad log level', sources: { env: { SOCKACCEL_LOG_LEVEL: 'verbose' } }, mentions: ['logLevel', '"verbose"'] },
  { name: 'relative pin root', sources: { file: { pinRoot: 'bpf/sockaccel' } }, mentions: ['pinRoot', '"bpf/sockaccel"'] },
  { name: 'empty pin root', sources: { env: { SOCKACCEL_PIN_ROOT: '' } }, mentions: ['pinRoot', 'value was ""'] },
  { name: 'relative cgroup path', sources: { argv: ['--cgroup-path=sys/fs/cgroup'] }, mentions: ['cgroupPath', '"sys/fs/cgroup"'] },
  { name: 'adaptive not a boolean', sources: { env: { SOCKACCEL_ADAPTIVE: 'yes' } }, mentions: ['adaptive', '"yes"'] },
  { name: 'explore share above 1000', sources: { file: { adaptiveExplorePermille: 1001 } }, mentions: ['adaptiveExplorePermille', '1001', '0..1000'] },
  { name: 'half-life 0', sources: { argv: ['--adaptive-half-life-seconds=0'] }, mentions: ['adaptiveHalfLifeSeconds', 'value was 0'] },
  { name: 'interval too short', sources: { file: { adaptiveIntervalMs: 10 } }, mentions: ['adaptiveIntervalMs', '10', '50..60000'] },
  { name: 'too few services', sources: { env: { SOCKACCEL_ADAPTIVE_MAX_SERVICES: '63' } }, mentions: ['adaptiveMaxServices', '63'] },
  { name: 'negative calibration', sources: { file: { adaptiveConnectionCostNs: -1 } }, mentions: ['adaptiveConnectionCostNs', '-1'] },
  { name: 'override without a verdict', sources: { env: { SOCKACCEL_ADAPTIVE_OVERRIDES: '8080' } }, mentions: ['adaptiveOverrides', '"8080"', 'PORT=accelerate'] },
  { name: 'override with an unknown verdict', sources: { file: { adaptiveOverrides: ['8080=fast'] } }, mentions: ['adaptiveOverrides', '"8080=fast"'] },
  { name: 'override of port 0', sources: { argv: ['--adaptive-overrides=0=plain'] }, mentions: ['adaptiveOverrides', 'port 0'] },
  { name: 'override of port 70000', sources: { file: { adaptiveOverrides: ['70000=accelerate'] } }, mentions: ['adaptiveOverrides', 'port 70000'] },
  { name: 'override that is not a string', sources: { file: { adaptiveOverrides: [8080] } }, mentions: ['adaptiveOverrides', '8080'] },
  { name: 'overrides that are not a list', sources: { file: { adaptiveOverrides: { 8080: 'plain' } } }, mentions: ['adaptiveOverrides', '{"8080":"plain"}'] },
  {
    name: 'a port overridden twice',
    sources: { env: { SOCKACCEL_ADAPTIVE_OVERRIDES: '8080=plain,9090=plain,8080=accelerate' } },
    mentions: ['adaptiveOverrides', 'port 8080 is overridden twice'],
  },
  {
    name: 'a port both excluded and forced to accelerate',
    sources: { file: { excludePorts: [22, 8080], adaptiveOverrides: ['8080=accelerate'] } },
    mentions: ['adaptiveOverrides', 'excludePorts', '8080'],
  },
  {
    name: 'a port forced to accelerate outside includePorts',
    sources: { file: { includePorts: [80], adaptiveOverrides: ['8080=accelerate'] } },
    mentions: ['adaptiveOverrides', 'includePorts', '8080'],
  },
  { name: 'object value in the file', sources: { file: { mapSize: { size: 1 } } }, mentions: ['mapSize', '{"size":1}'] },
];

for (const { name, sources, mentions } of BAD_VALUES) {
  test(`rejected: ${name}`, (t) => {
    const err = t.throws(() => load(t, sources), { instanceOf: ConfigError });
    t.is(err?.code, 'ERR_CONFIG');
    t.is(err?.exitCode, 78);
    for (const text of mentions) t.true(err?.message.includes(text), `"${text}" missing from: ${err?.message}`);
  });
}

test('every invalid value is reported, one per line', (t) => {
  const err = t.throws(() => load(t, { file: { mapSize: 8 }, env: { SOCKACCEL_LOG_LEVEL: 'loud' } }), {
    instanceOf: ConfigError,
  });
  t.regex(err?.message ?? '', /^invalid configuration:\n {2}mapSize: .*\n {2}logLevel: .*"loud"$/);
});

test('an unknown key in the file is named, with its file and a suggestion', (t) => {
  const file = configFile(t, { mapsize: 1024 });
  const err = t.throws(() => loadConfig({ env: { SOCKACCEL_CONFIG: file } }), { instanceOf: ConfigError });
  t.is(err?.message, `unknown configuration key "mapsize" in ${file} (did you mean "mapSize"?)`);
  t.true(err?.hint?.includes('localCidrs'));
});

test('an unknown key without a near match gets no suggestion', (t) => {
  const file = configFile(t, { frobnicate: true });
  const err = t.throws(() => loadConfig({ env: { SOCKACCEL_CONFIG: file } }), { instanceOf: ConfigError });
  t.is(err?.message, `unknown configuration key "frobnicate" in ${file}`);
});

test('the file cannot set "config"', (t) => {
  const file = configFile(t, { config: '/elsewhere.json' });
  const err = t.throws(() => loadConfig({ env: { SOCKACCEL_CONFIG: file } }), { instanceOf: ConfigError });
  t.true(err?.message.includes('"config"'));
  t.true(err?.message.includes(file));
});

test('unparseable JSON names the file and the parse error', (t) => {
  const file = configFile(t, '{ "mapSize": 1024, }');
  const err = t.throws(() => loadConfig({ env: { SOCKACCEL_CONFIG: file } }), { instanceOf: ConfigError });
  t.true(err?.message.startsWith(`configuration file ${file} is not valid JSON: `));
  t.true(err?.cause instanceof SyntaxError);
});

test('a file that is not a JSON object is rejected', (t) => {
  const file = configFile(t, '["mapSize"]');
  const err = t.throws(() => loadConfig({ env: { SOCKACCEL_CONFIG: file } }), { instanceOf: ConfigError });
  t.true(err?.message.includes(file));
  t.true(err?.message.includes('["mapSize"]'));
});

test('a missing file named by env is an error', (t) => {
  const missing = path.join(tempDir(t), 'absent.json');
  const err = t.throws(() => loadConfig({ env: { SOCKACCEL_CONFIG: missing } }), { instanceOf: ConfigError });
  t.true(err?.message.includes(missing));
  t.true(err?.message.includes('ENOENT'));
  t.truthy(err?.hint);
});

test('a missing file named by --config is an error, even at the default path', (t) => {
  const missing = path.join(tempDir(t), 'absent.json');
  t.throws(() => loadConfig({ argv: [`--config=${missing}`], env: {} }), { instanceOf: ConfigError, message: /absent\.json/ });
  if (!existsSync(DEFAULT_CONFIG_FILE)) {
    t.throws(() => loadConfig({ argv: [`--config=${DEFAULT_CONFIG_FILE}`], env: {} }), {
      instanceOf: ConfigError,
      message: /\/etc\/sockaccel\/config\.json/,
    });
  }
});

test('an empty SOCKACCEL_CONFIG is rejected as a config value', (t) => {
  t.throws(() => loadConfig({ env: { SOCKACCEL_CONFIG: '' } }), {
    instanceOf: ConfigError,
    message: /config: .*value was ""/,
  });
});

test('the schema description covers every key with env, arg, doc and format', (t) => {
  const rows = describeConfigSchema();
  t.deepEqual(
    rows.map((row) => row.key),
    Object.keys(DEFAULTS),
  );
  for (const row of rows) {
    const snake = row.key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
    const kebab = row.key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    t.is(row.env, `SOCKACCEL_${snake}`);
    t.is(row.arg, kebab);
    t.true(row.doc.length > 10, row.key);
    t.true(row.format.length > 0, row.key);
    t.deepEqual(row.default, DEFAULTS[row.key], row.key);
  }
});

test('fionreadHazard: refuse by default, accept as the opt-in, anything else rejected naming the choices', (t) => {
  t.is(load(t).fionreadHazard, 'refuse');
  t.is(load(t, { file: { fionreadHazard: 'accept' } }).fionreadHazard, 'accept');
  t.is(load(t, { env: { SOCKACCEL_FIONREAD_HAZARD: 'accept' } }).fionreadHazard, 'accept');
  t.is(load(t, { argv: ['--fionread-hazard=accept'] }).fionreadHazard, 'accept');
  t.throws(() => load(t, { env: { SOCKACCEL_FIONREAD_HAZARD: 'ignore' } }), {
    instanceOf: ConfigError,
    message: /fionreadHazard: must be one of .*refuse.*accept.*value was "ignore"/,
  });
});

test('adaptive settings come from file, env and flags', (t) => {
  const config = load(t, {
    file: { adaptive: false, adaptiveHalfLifeSeconds: 60, adaptiveOverrides: ['8080=plain'] },
    env: { SOCKACCEL_ADAPTIVE_EXPLORE_PERMILLE: '0', SOCKACCEL_ADAPTIVE_TURN_SAVING_NS: '4500' },
    argv: ['--adaptive-min-connections=5', '--adaptive-overrides=6379=accelerate, 8080=plain'],
  });
  t.false(config.adaptive);
  t.is(config.adaptiveHalfLifeSeconds, 60);
  t.is(config.adaptiveExplorePermille, 0);
  t.is(config.adaptiveTurnSavingNs, 4500);
  t.is(config.adaptiveMinConnections, 5);
  t.deepEqual(config.adaptiveOverrides, ['6379=accelerate', '8080=plain']);
  t.true(Object.isFrozen(config.adaptiveOverrides));
});

test('a port excluded and overridden "plain" is fine (both say the same)', (t) => {
  const config = load(t, { file: { excludePorts: [8080], adaptiveOverrides: ['8080=plain'] } });
  t.deepEqual(config.adaptiveOverrides, ['8080=plain']);
});

test('parsePortOverrides splits the entries by verdict, ports ascending', (t) => {
  t.deepEqual(parsePortOverrides(['9090=plain', '443=accelerate', '80=plain', ' 6379 = accelerate ']), {
    accelerate: [443, 6379],
    plain: [80, 9090],
  });
  t.deepEqual(parsePortOverrides([]), { accelerate: [], plain: [] });
  t.throws(() => parsePortOverrides(['80=Plain']), { message: /"80=Plain" is not "PORT=accelerate" or "PORT=plain"/ });
  t.throws(() => parsePortOverrides(['80=plain=x']));
  t.throws(() => parsePortOverrides(['123456=plain']));
});
