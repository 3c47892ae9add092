import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { ffiLoaded } from '../../src/kernel/native';
// Every module that binds a native library, imported for the side effects
// they must not have.
import '../../src/kernel/libbpf';
import '../../src/kernel/btf';
import '../../src/kernel/bpf-object';
import '../../src/conns/netns';
import '../../src/daemon/instance-lock';
import '../../src/daemon/sd-notify';

const SRC = path.resolve(__dirname, '..', '..', '..', 'src');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

test('importing the modules that bind native libraries loads nothing', (t) => {
  t.false(ffiLoaded());
});

test('native libraries are opened in src/kernel/native.ts only', (t) => {
  const files = sources(SRC);
  t.true(files.length > 20, `found the sources under ${SRC}`);
  const opening = files.filter((f) => !f.endsWith(path.join('kernel', 'native.ts')) && /\.Library\(|DynamicLibrary|require\('@2060\.io\/ffi-napi'\)/.test(fs.readFileSync(f, 'utf8')));
  t.deepEqual(opening.map((f) => path.relative(SRC, f)), []);
});
