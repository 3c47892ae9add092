/*
 * The README's reference parts checked against the code they describe (as
 * fastify checks its errors document): the configuration table against the
 * convict schema, the exit-code table against EXIT_CODES, the command table
 * and every `sockaccel …` example against the CLI parser, and its references
 * (project variables, files, in-page links) against what exists.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { COMMANDS, parseCommandLine } from '../../src/cli/cli-args';
import { describeConfigSchema } from '../../src/config/config';
import { EXIT_CODES } from '../../src/common/errors';

const REPO = path.resolve(__dirname, '..', '..', '..');
const README = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
/** The README with fenced code blocks blanked (line numbers kept): a `# comment` in a shell block is no heading. */
const PROSE = README.split('\n')
  .reduce<{ fenced: boolean; lines: string[] }>(
    (acc, line) => {
      const fence = line.startsWith('```');
      acc.lines.push(fence || acc.fenced ? '' : line);
      return { fenced: fence ? !acc.fenced : acc.fenced, lines: acc.lines };
    },
    { fenced: false, lines: [] },
  )
  .lines.join('\n');
const SCHEMA = describeConfigSchema();

/** Cells of one table row: split on `|` outside code spans, escapes undone, trimmed. */
function splitRow(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let inCode = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '\\' && line[i + 1] === '|') {
      cell += '|';
      i++;
    } else if (c === '`') {
      inCode = !inCode;
      cell += c;
    } else if (c === '|' && !inCode) {
      cells.push(cell.trim());
      cell = '';
    } else {
      cell += c;
    }
  }
  cells.push(cell.trim());
  return cells.slice(1, -1); // the row's leading and trailing pipes
}

interface Table {
  readonly line: number;
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** Every table outside fenced code blocks, with the line it starts on. */
function parseTables(markdown: string): Table[] {
  const tables: Table[] = [];
  const lines = markdown.split('\n');
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith('```')) fenced = !fenced;
    if (fenced || !lines[i].startsWith('|') || !/^\|[\s:|-]+\|$/.test(lines[i + 1] ?? '')) continue;
    const start = i;
    const header = splitRow(lines[i]);
    const rows: string[][] = [];
    for (i += 2; i < lines.length && lines[i].startsWith('|'); i++) rows.push(splitRow(lines[i]));
    tables.push({ line: start + 1, header, rows });
  }
  return tables;
}

/** The README's section `heading` (a whole `## …` line's text), up to the next heading of that level or above. */
function section(heading: string): string {
  const lines = PROSE.split('\n');
  const start = lines.findIndex((l) => /^#+ /.test(l) && l.replace(/^#+ /, '') === heading);
  if (start < 0) throw new Error(`README has no section "${heading}"`);
  const level = /^#+/.exec(lines[start])![0].length;
  const end = lines.findIndex((l, i) => i > start && new RegExp(`^#{1,${level}} `).test(l));
  return lines.slice(start, end < 0 ? undefined : end).join('\n');
}

function tableIn(heading: string, firstColumn: string): Table {
  const table = parseTables(section(heading)).find((t) => t.header[0] === firstColumn);
  if (table === undefined) throw new Error(`README section "${heading}" has no table starting with "${firstColumn}"`);
  return table;
}

const unquote = (cell: string): string => cell.replace(/^`(.*)`$/, '$1');

test('the table parser splits on pipes outside code spans only', (t) => {
  t.deepEqual(splitRow('| `a \\| b` | `x || y` | c\\|d |'), ['`a | b`', '`x || y`', 'c|d']);
  const tables = parseTables('text\n\n| k | v |\n|---|---|\n| `a` | 1 |\n\n```\n| not | a |\n|---|---|\n```\n');
  t.deepEqual(tables, [{ line: 3, header: ['k', 'v'], rows: [['`a`', '1']] }]);
});

test('the configuration table has every key of the schema, with its variable, flag, default, values and meaning', (t) => {
  const table = tableIn('Configuration', 'key');
  t.deepEqual(table.header, ['key', 'env', 'flag', 'default', 'accepted values', 'meaning']);
  const documented = table.rows.map((row) => unquote(row[0]));
  t.deepEqual(documented, SCHEMA.map((row) => row.key), 'the same keys, in the schema\'s order');
  for (const row of table.rows) {
    const key = unquote(row[0]);
    const schema = SCHEMA.find((s) => s.key === key);
    if (schema === undefined) continue; // reported by the key comparison above
    t.deepEqual(
      { env: unquote(row[1]), flag: unquote(row[2]), default: unquote(row[3]), format: row[4], doc: row[5] },
      { env: schema.env, flag: `--${schema.arg}`, default: JSON.stringify(schema.default), format: schema.format, doc: schema.doc },
      `README line ${table.line}: row ${key}`,
    );
  }
});

test('every other table keyed by configuration key names real keys, and their variables, flags and defaults', (t) => {
  const tables = parseTables(README).filter((table) => table.header[0] === 'key');
  t.true(tables.length >= 3, 'the configuration, mesh and metrics tables');
  for (const table of tables) {
    const at = (name: string) => table.header.indexOf(name);
    for (const row of table.rows) {
      for (const key of row[0].match(/`[^`]+`/g) ?? []) {
        const schema = SCHEMA.find((s) => s.key === unquote(key));
        if (!t.truthy(schema, `README line ${table.line}: ${key} is not a configuration key`) || schema === undefined) continue;
        if (at('env') >= 0) t.is(unquote(row[at('env')]), schema.env, `README line ${table.line}: ${key} env`);
        // The flag may carry an example value: `--metrics-enabled=true`.
        if (at('flag') >= 0) t.is(unquote(row[at('flag')]).split('=')[0], `--${schema.arg}`, `README line ${table.line}: ${key} flag`);
        if (at('default') >= 0) {
          const cell = unquote(row[at('default')]);
          t.true(
            cell === JSON.stringify(schema.default) || cell === String(schema.default),
            `README line ${table.line}: ${key} default ${cell}, schema ${JSON.stringify(schema.default)}`,
          );
        }
      }
    }
  }
});

test('the exit-code table matches EXIT_CODES, and its other codes collide with none of them', (t) => {
  const table = tableIn('Exit codes', 'code');
  t.deepEqual(table.header, ['code', 'error', 'meaning']);
  const errorRows = table.rows.filter((row) => /^`ERR_/.test(row[1]));
  t.deepEqual(
    errorRows.map((row) => ({ code: unquote(row[1]), exitCode: Number(row[0]), meaning: row[2] })),
    Object.entries(EXIT_CODES).map(([code, e]) => ({ code, exitCode: e.exitCode, meaning: e.meaning })),
  );
  const classCodes = new Set<number>(Object.values(EXIT_CODES).map((e) => e.exitCode));
  for (const row of table.rows.filter((r) => !errorRows.includes(r))) {
    t.false(classCodes.has(Number(row[0])), `exit ${row[0]} (${row[2]}) is also an error class's code`);
  }
});

/** The argv a README example gives `sockaccel`: up to the first shell operator, optional parts unbracketed. */
function exampleArgv(text: string): string[] {
  const words = text.trim().split(/\s+/);
  const end = words.findIndex((w) => ['>', '|', '||', '&&', ';', '2>&1'].includes(w));
  return words.slice(0, end < 0 ? undefined : end).map((w) => w.replace(/^\[/, '').replace(/\]$/, ''));
}

test('the command table lists every command, each with flags it accepts', (t) => {
  const table = tableIn('The two commands', 'command');
  const listed = table.rows.map((row) => exampleArgv(unquote(row[0])));
  t.deepEqual(listed.map((argv) => argv[0]).sort(), Object.keys(COMMANDS).sort());
  for (const argv of listed) t.notThrows(() => parseCommandLine(argv.filter((w) => w !== 'command')), argv.join(' '));
});

test('every `sockaccel …` example in the README parses: a real command with flags it accepts', (t) => {
  const examples = [
    ...[...README.matchAll(/`sockaccel ([^`]+)`/g)].map((m) => m[1]),
    ...[...README.matchAll(/^\$ (?:sudo )?sockaccel (.+)$/gm)].map((m) => m[1]),
  ];
  t.true(examples.length > 20, `${examples.length} examples found`);
  for (const example of examples) {
    // Placeholders (`<command>`) stand for any command.
    if (/^</.test(example)) continue;
    t.notThrows(() => parseCommandLine(exampleArgv(example)), `sockaccel ${example}`);
  }
});

/** Files of the project, relative to the repository (no dependencies or build output). */
function projectFiles(dir = REPO, prefix = ''): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    // Hidden entries (.git) are not the project's, except .ci (CI's entry point).
    if ((entry.name.startsWith('.') && entry.name !== '.ci') || ['node_modules', 'dist', 'build'].includes(entry.name)) return [];
    const rel = path.join(prefix, entry.name);
    return entry.isDirectory() ? projectFiles(path.join(dir, entry.name), rel) : [rel];
  });
}

test('variables, files and sections the README names exist', (t) => {
  const files = projectFiles();
  const sources = files.filter((f) => /\.(ts|c|h|sh|service|js)$/.test(f) || f === '.ci/run').map((f) => fs.readFileSync(path.join(REPO, f), 'utf8'));

  // Project variables and constants: SOCKACCEL_* and SA_* (SOCKACCEL_* alone is the family).
  for (const [name] of README.matchAll(/\b(?:SOCKACCEL|SA)_[A-Z0-9_]*[A-Z0-9]\b/g)) {
    const known = SCHEMA.some((row) => row.env === name) || sources.some((text) => text.includes(name));
    t.true(known, `README names ${name}, which neither the schema nor any source file has`);
  }

  // Repository paths (`src/…`, `docs/…`) must exist; a bare source or document
  // name (not an output such as chart.svg) must exist somewhere in the project.
  const basenames = new Set(files.map((f) => path.basename(f)));
  for (const [, ref] of README.matchAll(/[`(]((?:[\w.-]+\/)*[\w.-]+\.(?:md|ts|c|h|sh|service|svg))[`)]/g)) {
    if (ref.includes('/')) t.true(files.includes(ref), `README refers to ${ref}, which is not in the repository`);
    else if (!ref.endsWith('.svg')) t.true(basenames.has(ref), `README refers to ${ref}, which is not in the project`);
  }

  // In-page links, with GitHub's heading anchors (duplicates get -1, -2, …).
  const anchors = new Set<string>();
  for (const [, heading] of PROSE.matchAll(/^#+ (.+)$/gm)) {
    const slug = heading.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
    let anchor = slug;
    for (let n = 1; anchors.has(anchor); n++) anchor = `${slug}-${n}`;
    anchors.add(anchor);
  }
  for (const [, anchor] of README.matchAll(/\]\(#([^)]+)\)/g)) t.true(anchors.has(anchor), `README links to #${anchor}, which no heading makes`);
});
