import test from 'ava';
import { suggest } from '../../src/cli/suggest';

const KEYS = ['cgroupPath', 'pinRoot', 'localCidrs', 'includePorts', 'excludePorts', 'mapSize', 'logLevel'];

test('typos and case slips find the key', (t) => {
  t.is(suggest('mapsize', KEYS), 'mapSize');
  t.is(suggest('map_size', KEYS), 'mapSize');
  t.is(suggest('pinroot', KEYS), 'pinRoot');
  t.is(suggest('includePort', KEYS), 'includePorts');
  t.is(suggest('loglevl', KEYS), 'logLevel');
});

test('unrelated words find nothing', (t) => {
  t.is(suggest('frobnicate', KEYS), undefined);
  t.is(suggest('cgroup', KEYS), undefined);
  t.is(suggest('x', KEYS), undefined);
});
