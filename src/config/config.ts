// The daemon's configuration: one convict schema, layered defaults < JSON
// file < SOCKACCEL_* environment < command-line flags, validated strictly and
// handed out as a frozen plain object.
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import convict from 'convict';
import { checkCidr } from './cidr';
import { ConfigError } from '../common/errors';
import { LOG_LEVELS, type LogLevel } from '../common/log';
import { suggest } from '../cli/suggest';
import { MESH_NAMES, type MeshName } from '../daemon/mesh';
import { AUTO } from '../daemon/pod-addresses';
import { parseListenAddress } from '../metrics/address';

export interface SockaccelConfig {
  readonly config: string;
  readonly cgroupPath: string;
  readonly pinRoot: string;
  readonly localCidrs: readonly string[];
  readonly includePorts: readonly number[];
  readonly excludePorts: readonly number[];
  readonly mapSize: number;
  readonly logLevel: LogLevel;
  readonly statusIntervalMs: number;
  readonly objectDir: string;
  readonly metricsEnabled: boolean;
  readonly metricsAddress: string;
  readonly mesh: MeshName;
  readonly meshProxyUid: number;
  readonly meshOutboundPort: number;
  readonly meshInboundPort: number;
  readonly meshExcludedPorts: readonly number[];
  readonly acceleratePlain: boolean;
  readonly fionreadHazard: FionreadHazardPolicy;
  readonly adaptive: boolean;
  readonly adaptiveExplorePermille: number;
  readonly adaptiveHalfLifeSeconds: number;
  readonly adaptiveMinConnections: number;
  readonly adaptiveIntervalMs: number;
  readonly adaptiveMaxServices: number;
  /** "PORT=accelerate" or "PORT=plain" entries; parsePortOverrides() reads them. */
  readonly adaptiveOverrides: readonly string[];
  readonly adaptiveConnectionCostNs: number;
  readonly adaptiveTurnSavingNs: number;
  readonly adaptiveBurstMessageCostNs: number;
  readonly adaptiveByteSavingPs: number;
}

/** What `run` does on a kernel whose FIONREAD does not count redirected bytes. */
export const FIONREAD_HAZARD_POLICIES = ['refuse', 'accept'] as const;
export type FionreadHazardPolicy = (typeof FIONREAD_HAZARD_POLICIES)[number];

export type ConfigKey = keyof SockaccelConfig;

// A type alias, not an interface: convict's SchemaObj has an index signature,
// which only type aliases satisfy implicitly.
type Setting<T> = {
  doc: string;
  /** A format registered below, or the allowed values. */
  format: string | string[];
  /** The accepted values in words, for --help and the README. */
  formatDoc: string;
  default: T;
  env: string;
  arg: string;
  /** Bounds for the 'bounded-int' format. */
  min?: number;
  max?: number;
};

// Environment and flag values arrive as strings. Convert only what is plainly
// an integer, and leave anything else as typed so the error message shows it.
function toInteger(text: string): number | string {
  const trimmed = text.trim();
  return /^[+-]?\d+$/.test(trimmed) ? Number(trimmed) : text;
}

function toList(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function intRange(min: number, max: number): Pick<Setting<number>, 'format' | 'formatDoc' | 'min' | 'max'> {
  return { format: 'bounded-int', formatDoc: `integer ${min}..${max}`, min, max };
}

// convict runs these on the merged values and prefixes each thrown message
// with the key; a coerce function converts string input (env, flags, or a
// string in the file) before that.
convict.addFormats({
  'config-path': {
    validate(value: unknown) {
      if (typeof value !== 'string' || value === '') throw new Error('must be a non-empty file path');
    },
  },
  'absolute-path': {
    validate(value: unknown) {
      if (typeof value !== 'string' || !isAbsolute(value)) throw new Error('must be an absolute path');
    },
  },
  'absolute-path-or-empty': {
    validate(value: unknown) {
      if (value !== '' && (typeof value !== 'string' || !isAbsolute(value))) {
        throw new Error('must be an absolute path, or empty for the default');
      }
    },
  },
  'bounded-int': {
    // convict passes the key's schema entry, which carries the bounds.
    validate(value: unknown, schema: convict.SchemaObj) {
      const { min = -Infinity, max = Infinity } = schema as Setting<number>;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
        throw new Error(`must be an integer in ${min}..${max}`);
      }
    },
    coerce: toInteger,
  },
  boolean: {
    validate(value: unknown) {
      if (typeof value !== 'boolean') throw new Error('must be true or false');
    },
    coerce: (text: string) => (text === 'true' ? true : text === 'false' ? false : text),
  },
  'cidr-list': {
    validate(value: unknown) {
      if (!Array.isArray(value)) throw new Error('must be a list of CIDRs (a JSON array, or comma-separated)');
      for (const cidr of value) {
        if (typeof cidr !== 'string') throw new Error(`${JSON.stringify(cidr)} is not a CIDR string`);
        if (cidr !== AUTO) checkCidr(cidr);
      }
    },
    coerce: toList,
  },
  'listen-address': {
    validate(value: unknown) {
      if (typeof value !== 'string') throw new Error('must be host:port');
      parseListenAddress(value);
    },
  },
  'port-override-list': {
    validate(value: unknown) {
      if (!Array.isArray(value)) throw new Error('must be a list of "PORT=accelerate" or "PORT=plain" (a JSON array, or comma-separated)');
      parsePortOverrides(value);
    },
    coerce: toList,
  },
  'port-list': {
    validate(value: unknown) {
      if (!Array.isArray(value)) throw new Error('must be a list of ports (a JSON array, or comma-separated)');
      for (const port of value) {
        if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
          throw new Error(`port ${JSON.stringify(port)} is not an integer in 1..65535`);
        }
      }
    },
    coerce: (text: string) => toList(text).map(toInteger),
  },
});

const DEFAULT_CONFIG_FILE = '/etc/sockaccel/config.json';

export const PORT_OVERRIDE_VERDICTS = ['accelerate', 'plain'] as const;
export type PortOverrideVerdict = (typeof PORT_OVERRIDE_VERDICTS)[number];

/** adaptiveOverrides split by verdict, ports ascending. */
export interface PortOverrides {
  /** Always accelerated when they pair: the adaptive decision is not read (the sockops program's force_ports). */
  readonly accelerate: readonly number[];
  /** Never accelerated: added to the exclude_ports bitmap. */
  readonly plain: readonly number[];
}

/**
 * Reads "PORT=accelerate|plain" entries; throws (a plain Error, which convict
 * prefixes with the key) on a malformed entry or a port given twice.
 */
export function parsePortOverrides(entries: readonly unknown[]): PortOverrides {
  const seen = new Map<number, string>();
  const out: Record<PortOverrideVerdict, number[]> = { accelerate: [], plain: [] };
  for (const entry of entries) {
    const m = typeof entry === 'string' ? /^\s*(\d{1,5})\s*=\s*([a-z]+)\s*$/.exec(entry) : null;
    const port = m ? Number(m[1]) : NaN;
    const verdict = m?.[2] as PortOverrideVerdict | undefined;
    if (!m || !(PORT_OVERRIDE_VERDICTS as readonly string[]).includes(verdict!)) {
      throw new Error(`${JSON.stringify(entry)} is not "PORT=accelerate" or "PORT=plain"`);
    }
    if (port < 1 || port > 65535) throw new Error(`${JSON.stringify(entry)}: port ${port} is not in 1..65535`);
    const earlier = seen.get(port);
    if (earlier !== undefined) throw new Error(`port ${port} is overridden twice (${JSON.stringify(earlier)} and ${JSON.stringify(entry)})`);
    seen.set(port, entry as string);
    out[verdict!].push(port);
  }
  return { accelerate: out.accelerate.sort((a, b) => a - b), plain: out.plain.sort((a, b) => a - b) };
}

const SETTINGS: { [K in ConfigKey]: Setting<SockaccelConfig[K]> } = {
  config: {
    doc: 'JSON configuration file. May be absent at the default path; a file named by flag or environment must exist.',
    format: 'config-path',
    formatDoc: 'file path',
    default: DEFAULT_CONFIG_FILE,
    env: 'SOCKACCEL_CONFIG',
    arg: 'config',
  },
  cgroupPath: {
    doc: 'cgroup v2 directory whose sockets are accelerated; empty means the cgroup v2 root (found in /proc/self/mountinfo).',
    format: 'absolute-path-or-empty',
    formatDoc: 'absolute path, or empty',
    default: '',
    env: 'SOCKACCEL_CGROUP_PATH',
    arg: 'cgroup-path',
  },
  pinRoot: {
    doc: 'bpffs directory where the programs, links and maps are pinned.',
    format: 'absolute-path',
    formatDoc: 'absolute path',
    default: '/sys/fs/bpf/sockaccel',
    env: 'SOCKACCEL_PIN_ROOT',
    arg: 'pin-root',
  },
  localCidrs: {
    doc: "Prefixes whose addresses count as local endpoints, besides loopback and the host's own addresses; \"auto\" finds this node's pod addresses in the routing table and follows them (Calico-style veth routes, pod bridges, cilium_host). A list without \"auto\" turns that off.",
    format: 'cidr-list',
    formatDoc: 'list of "auto" and IPv4/IPv6 CIDRs, network address only (comma-separated in env and flags)',
    default: ['auto'],
    env: 'SOCKACCEL_LOCAL_CIDRS',
    arg: 'local-cidrs',
  },
  includePorts: {
    doc: 'Accelerate only connections whose server port is listed; empty means all ports.',
    format: 'port-list',
    formatDoc: 'list of ports 1..65535 (comma-separated in env and flags)',
    default: [],
    env: 'SOCKACCEL_INCLUDE_PORTS',
    arg: 'include-ports',
  },
  excludePorts: {
    doc: 'Never accelerate connections whose server port is listed.',
    format: 'port-list',
    formatDoc: 'list of ports 1..65535 (comma-separated in env and flags)',
    default: [],
    env: 'SOCKACCEL_EXCLUDE_PORTS',
    arg: 'exclude-ports',
  },
  mapSize: {
    doc: 'Capacity of the socket hash: how many sockets can be accelerated at once.',
    ...intRange(16, 1_048_576),
    default: 65535,
    env: 'SOCKACCEL_MAP_SIZE',
    arg: 'map-size',
  },
  logLevel: {
    doc: 'Least severe level that is logged.',
    format: [...LOG_LEVELS],
    formatDoc: `one of ${LOG_LEVELS.join(', ')}`,
    default: 'info',
    env: 'SOCKACCEL_LOG_LEVEL',
    arg: 'log-level',
  },
  statusIntervalMs: {
    doc: 'How often the daemon refreshes its status summary, in milliseconds.',
    ...intRange(100, 600_000),
    default: 5000,
    env: 'SOCKACCEL_STATUS_INTERVAL_MS',
    arg: 'status-interval-ms',
  },
  mesh: {
    doc: 'Service mesh whose sidecar hops to accelerate (app -> sidecar -> sidecar -> app); "auto" detects Istio, Linkerd and Kuma sidecars per pod (network namespace) from their listening sockets; a preset applies to every pod and fills the proxy settings below.',
    format: [...MESH_NAMES],
    formatDoc: `one of ${MESH_NAMES.join(', ')}`,
    default: 'auto',
    env: 'SOCKACCEL_MESH',
    arg: 'mesh',
  },
  meshProxyUid: {
    doc: "UID the mesh proxy runs as (Istio 1337, Linkerd 2102, Kuma 5678); -1 takes the preset's.",
    ...intRange(-1, 4_294_967_294),
    default: -1,
    env: 'SOCKACCEL_MESH_PROXY_UID',
    arg: 'mesh-proxy-uid',
  },
  meshOutboundPort: {
    doc: "Port the mesh redirects applications' outbound connections to (Istio 15001, Linkerd 4140); 0 takes the preset's.",
    ...intRange(0, 65535),
    default: 0,
    env: 'SOCKACCEL_MESH_OUTBOUND_PORT',
    arg: 'mesh-outbound-port',
  },
  meshInboundPort: {
    doc: "Port the mesh redirects a pod's inbound connections to (Istio 15006, Linkerd 4143); 0 takes the preset's.",
    ...intRange(0, 65535),
    default: 0,
    env: 'SOCKACCEL_MESH_INBOUND_PORT',
    arg: 'mesh-inbound-port',
  },
  meshExcludedPorts: {
    doc: "Destination ports never accelerated under the mesh, besides the preset's own (the proxy's admin and telemetry ports).",
    format: 'port-list',
    formatDoc: 'list of ports 1..65535 (comma-separated in env and flags)',
    default: [],
    env: 'SOCKACCEL_MESH_EXCLUDED_PORTS',
    arg: 'mesh-excluded-ports',
  },
  acceleratePlain: {
    doc: 'With a mesh: also accelerate connections where neither end is the proxy (plain pod-to-pod traffic).',
    format: 'boolean',
    formatDoc: 'true or false',
    default: true,
    env: 'SOCKACCEL_ACCELERATE_PLAIN',
    arg: 'accelerate-plain',
  },
  fionreadHazard: {
    doc:
      'What `run` does when its start-up probe finds that FIONREAD does not count redirected bytes (Linux 6.1), or cannot tell: ' +
      'refuse to start (exit 71), or accept and accelerate anyway, for operators who know no local server sizes its reads with FIONREAD.',
    format: [...FIONREAD_HAZARD_POLICIES],
    formatDoc: `one of ${FIONREAD_HAZARD_POLICIES.join(', ')}`,
    default: 'refuse',
    env: 'SOCKACCEL_FIONREAD_HAZARD',
    arg: 'fionread-hazard',
  },
  objectDir: {
    doc: 'Directory holding the compiled BPF objects (sockops.bpf.o, redirect.bpf.o, fionread_probe.bpf.o, and conns_iter.bpf.o for `sockaccel conns`); empty means the ones built with this daemon.',
    format: 'absolute-path-or-empty',
    formatDoc: 'absolute path, or empty',
    default: '',
    env: 'SOCKACCEL_OBJECT_DIR',
    arg: 'object-dir',
  },
  metricsEnabled: {
    doc: 'Serve Prometheus metrics on metricsAddress.',
    format: 'boolean',
    formatDoc: 'true or false',
    default: false,
    env: 'SOCKACCEL_METRICS_ENABLED',
    arg: 'metrics-enabled',
  },
  metricsAddress: {
    doc: 'Where the metrics endpoint listens (GET /metrics). Loopback by default: the counters say how busy local services are.',
    format: 'listen-address',
    formatDoc: 'IP:port, IPv6 in brackets ([::1]:9464)',
    default: '127.0.0.1:9464',
    env: 'SOCKACCEL_METRICS_ADDRESS',
    arg: 'metrics-address',
  },
  adaptive: {
    doc: 'Learn per service (where clients connect) whether acceleration gains, and leave the services that lose on plain TCP (short connections, streams of small writes); false accelerates everything that pairs.',
    format: 'boolean',
    formatDoc: 'true or false',
    default: true,
    env: 'SOCKACCEL_ADAPTIVE',
    arg: 'adaptive',
  },
  adaptiveExplorePermille: {
    doc: 'Largest share of a plain service\'s new connections still accelerated, in thousandths, so that the decision can flip back when its traffic changes; a busy service explores less, down to 1 (enough for 4 × adaptiveMinConnections explored connections per half-life); 0 turns exploring off.',
    ...intRange(0, 1000),
    default: 20,
    env: 'SOCKACCEL_ADAPTIVE_EXPLORE_PERMILLE',
    arg: 'adaptive-explore-permille',
  },
  adaptiveHalfLifeSeconds: {
    doc: 'Half-life of what is learned about a service, in seconds: older traffic weighs half as much after each; a service unseen for 10 half-lives is forgotten.',
    ...intRange(1, 86_400),
    default: 30,
    env: 'SOCKACCEL_ADAPTIVE_HALF_LIFE_SECONDS',
    arg: 'adaptive-half-life-seconds',
  },
  adaptiveMinConnections: {
    doc: 'Evidence before a service is decided: this many of its accelerated connections closed, or 1000 messages sent on them (both with the half-life applied). Until then, and for a new service, connections are accelerated.',
    ...intRange(1, 100_000),
    default: 20,
    env: 'SOCKACCEL_ADAPTIVE_MIN_CONNECTIONS',
    arg: 'adaptive-min-connections',
  },
  adaptiveIntervalMs: {
    doc: 'How often the daemon reads the per-service counters and revises its decisions, in milliseconds.',
    ...intRange(50, 60_000),
    default: 250,
    env: 'SOCKACCEL_ADAPTIVE_INTERVAL_MS',
    arg: 'adaptive-interval-ms',
  },
  adaptiveMaxServices: {
    doc: 'Capacity of the per-service statistics and decision maps: how many services are learned at once (least recently seen evicted first).',
    ...intRange(64, 1_048_576),
    default: 4096,
    env: 'SOCKACCEL_ADAPTIVE_MAX_SERVICES',
    arg: 'adaptive-max-services',
  },
  adaptiveOverrides: {
    doc: 'Per-port decisions that win over what is learned: "PORT=accelerate" always accelerates connections to that port (when they pair), "PORT=plain" never does. A port may appear once.',
    format: 'port-override-list',
    formatDoc: 'list of "PORT=accelerate" or "PORT=plain", ports 1..65535 (comma-separated in env and flags)',
    default: [],
    env: 'SOCKACCEL_ADAPTIVE_OVERRIDES',
    arg: 'adaptive-overrides',
  },
  adaptiveConnectionCostNs: {
    doc: 'Calibration: what accelerating one connection costs (psock setup and teardown), in nanoseconds; `sockaccel bench` measures it.',
    ...intRange(0, 100_000_000),
    default: 9090,
    env: 'SOCKACCEL_ADAPTIVE_CONNECTION_COST_NS',
    arg: 'adaptive-connection-cost-ns',
  },
  adaptiveTurnSavingNs: {
    doc: 'Calibration: what the redirect saves per turn (a send answering the peer: one loopback wake-up less), in nanoseconds.',
    ...intRange(0, 100_000_000),
    default: 989,
    env: 'SOCKACCEL_ADAPTIVE_TURN_SAVING_NS',
    arg: 'adaptive-turn-saving-ns',
  },
  adaptiveBurstMessageCostNs: {
    doc: 'Calibration: what the redirect costs per message that continues a burst (no coalescing, unlike loopback TCP), in nanoseconds.',
    ...intRange(0, 100_000_000),
    default: 2049,
    env: 'SOCKACCEL_ADAPTIVE_BURST_MESSAGE_COST_NS',
    arg: 'adaptive-burst-message-cost-ns',
  },
  adaptiveByteSavingPs: {
    doc: 'Calibration: what the redirect saves per byte (no TCP segmentation or checksums), in picoseconds.',
    ...intRange(0, 100_000_000),
    default: 377,
    env: 'SOCKACCEL_ADAPTIVE_BYTE_SAVING_PS',
    arg: 'adaptive-byte-saving-ps',
  },
};

const CONFIG_KEYS = Object.keys(SETTINGS) as ConfigKey[];
// `config` chooses the file, so it cannot be set inside one.
const FILE_KEYS = CONFIG_KEYS.filter((key) => key !== 'config');

export interface ConfigSchemaRow {
  readonly key: ConfigKey;
  readonly doc: string;
  readonly default: SockaccelConfig[ConfigKey];
  readonly env: string;
  readonly arg: string;
  /** The accepted values in words. */
  readonly format: string;
}

export function describeConfigSchema(): ConfigSchemaRow[] {
  return CONFIG_KEYS.map((key) => {
    const { doc, env, arg, formatDoc } = SETTINGS[key];
    return { key, doc, default: SETTINGS[key].default, env, arg, format: formatDoc };
  });
}

/**
 * convict reports one problem per line, "<key>: <reason>: value was <json>",
 * but leaves the value out when it is falsy (0, '', null); put it back so that
 * every message shows what was given.
 */
function invalidConfiguration(message: string, values: object): ConfigError {
  const lines = message.split('\n').map((line) => {
    const key = /^(\w+): /.exec(line)?.[1];
    if (key === undefined || !Object.hasOwn(values, key) || line.includes(': value was ')) return line;
    return `${line}: value was ${JSON.stringify((values as Record<string, unknown>)[key])}`;
  });
  return new ConfigError(
    lines.length === 1 ? `invalid configuration: ${lines[0]}` : `invalid configuration:\n  ${lines.join('\n  ')}`,
  );
}

function validateStrictly<T extends object>(conf: convict.Config<T>): T {
  const values = conf.getProperties();
  try {
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    throw invalidConfiguration(err instanceof Error ? err.message : String(err), values);
  }
  return values;
}

interface ConfigFile {
  readonly path: string;
  /** Named by flag or environment rather than being the default, so it must exist. */
  readonly named: boolean;
}

function locateConfigFile(args: string[], env: NodeJS.ProcessEnv): ConfigFile {
  // A convict instance of just `config`, defaulting to null, tells whether the
  // flag or the variable was given at all (even naming the default path).
  const probe = convict<{ config: string | null }>(
    { config: { ...SETTINGS.config, default: null, nullable: true } },
    { args, env },
  );
  const { config } = validateStrictly(probe);
  return config === null ? { path: DEFAULT_CONFIG_FILE, named: false } : { path: config, named: true };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readConfigFile({ path, named }: ConfigFile): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (!named && (err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError(`cannot read configuration file ${path}: ${(err as Error).message}`, {
      cause: err,
      hint: named ? 'the file was named by --config or SOCKACCEL_CONFIG; create it, or name another' : undefined,
    });
  }
  // An empty file means "all defaults" (convict's own loader allows it too).
  if (text.trim() === '') return {};

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`configuration file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isPlainObject(parsed)) {
    throw new ConfigError(`configuration file ${path} must hold a JSON object, not ${JSON.stringify(parsed)}`);
  }

  for (const [key, value] of Object.entries(parsed)) {
    if (key === 'config') {
      throw new ConfigError(`configuration key "config" in ${path} has no effect`, {
        hint: 'choose the file with --config or SOCKACCEL_CONFIG instead',
      });
    }
    if (!(FILE_KEYS as string[]).includes(key)) {
      const near = suggest(key, FILE_KEYS);
      throw new ConfigError(
        `unknown configuration key "${key}" in ${path}${near === undefined ? '' : ` (did you mean "${near}"?)`}`,
        { hint: `valid keys: ${FILE_KEYS.join(', ')}` },
      );
    }
    // convict would descend into an object and report the key as "missing";
    // no setting takes an object, so say so plainly.
    if (isPlainObject(value)) {
      throw new ConfigError(`configuration key "${key}" in ${path} must not be an object: value was ${JSON.stringify(value)}`);
    }
  }
  return parsed;
}

function rejectPortOverlap({ includePorts, excludePorts, adaptiveOverrides }: SockaccelConfig): void {
  const both = includePorts.filter((port) => excludePorts.includes(port));
  if (both.length > 0) {
    throw new ConfigError(`invalid configuration: includePorts and excludePorts both contain ${both.join(', ')}`, {
      hint: 'a port is either included or excluded; remove it from one of the lists',
    });
  }
  // A forced acceleration the port filters forbid would silently do nothing.
  const forced = parsePortOverrides(adaptiveOverrides).accelerate;
  const excluded = forced.filter((port) => excludePorts.includes(port));
  if (excluded.length > 0) {
    throw new ConfigError(`invalid configuration: adaptiveOverrides forces ${excluded.join(', ')} to accelerate, but excludePorts excludes ${excluded.length === 1 ? 'it' : 'them'}`, {
      hint: 'remove the port from excludePorts, or make its override "PORT=plain"',
    });
  }
  const notIncluded = includePorts.length === 0 ? [] : forced.filter((port) => !includePorts.includes(port));
  if (notIncluded.length > 0) {
    throw new ConfigError(`invalid configuration: adaptiveOverrides forces ${notIncluded.join(', ')} to accelerate, but includePorts does not include ${notIncluded.length === 1 ? 'it' : 'them'}`, {
      hint: 'add the port to includePorts, or remove its override',
    });
  }
}

/**
 * Loads defaults, then the JSON file, then `env` (SOCKACCEL_*), then `argv`
 * (`--key=value` flags, normally from parseCommandLine's configArgv), each
 * overriding the one before. Throws ConfigError on anything invalid.
 *
 * `argv` defaults to none rather than process.argv: flags reach the config
 * only through the CLI layer, which rejects the unknown ones convict ignores.
 */
export function loadConfig({ argv = [], env = process.env }: { argv?: readonly string[]; env?: NodeJS.ProcessEnv } = {}): SockaccelConfig {
  const args = [...argv];
  const fileValues = readConfigFile(locateConfigFile(args, env));
  const conf = convict<SockaccelConfig>(SETTINGS, { args, env });
  conf.load(fileValues);
  const values = validateStrictly(conf);
  rejectPortOverlap(values);
  return Object.freeze({
    ...values,
    localCidrs: Object.freeze([...values.localCidrs]),
    includePorts: Object.freeze([...values.includePorts]),
    excludePorts: Object.freeze([...values.excludePorts]),
    adaptiveOverrides: Object.freeze([...values.adaptiveOverrides]),
  });
}
