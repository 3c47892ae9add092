/*
 * src/kernel/sockhash-hold.ts against the real kernel and our real redirect
 * object: after binding, each sk_msg program holds both sockhashes (the
 * kernel's own list of the program's maps says so). What that is for, an
 * orphaned connection keeping its unread bytes, is lifecycle.test.ts's purge
 * test.
 */
import test from 'ava';
import * as bpf from '../../src/kernel/libbpf';
import { BpfObject, DEFAULT_OBJECT_DIR, objectPath, withBpfObject } from '../../src/kernel/bpf-object';
import { bindOwnSockhash, bindSockhashesToEveryProgram } from '../../src/kernel/sockhash-hold';
import { privilegedTest } from '../helpers/privilege';

const privileged = privilegedTest(test);

/** The redirect object loaded on its own (it creates its own maps), with small maps. */
function withRedirectObject<T>(fn: (obj: BpfObject) => T): T {
  return withBpfObject(objectPath(DEFAULT_OBJECT_DIR, 'redirect'), (obj) => {
    for (const name of obj.mapNames()) if (obj.mapShape(name).maxEntries > 16) obj.setMaxEntries(name, 16);
    obj.load();
    return fn(obj);
  });
}

interface Held {
  toServer: { clients: boolean; servers: boolean };
  toClient: { clients: boolean; servers: boolean };
}

function held(obj: BpfObject): Held {
  const id = (map: string): number => bpf.mapInfo(obj.mapFd(map)).id;
  const holds = (prog: string) => {
    const ids = bpf.progMapIds(obj.programFd(prog));
    return { clients: ids.includes(id('sa_clients')), servers: ids.includes(id('sa_servers')) };
  };
  return { toServer: holds('sockaccel_to_server'), toClient: holds('sockaccel_to_client') };
}

const maps = (obj: BpfObject) => ({ clients: obj.mapFd('sa_clients'), servers: obj.mapFd('sa_servers') });
const BOTH = { clients: true, servers: true };

privileged('unbound, each sk_msg program holds only the sockhash it redirects into', (t) => {
  withRedirectObject((obj) => {
    t.deepEqual(held(obj), { toServer: { clients: false, servers: true }, toClient: { clients: true, servers: false } });
  });
});

privileged('bindOwnSockhash: each program then holds both sockhashes', (t) => {
  withRedirectObject((obj) => {
    bindOwnSockhash({ toServer: obj.programFd('sockaccel_to_server'), toClient: obj.programFd('sockaccel_to_client') }, maps(obj));
    t.deepEqual(held(obj), { toServer: BOTH, toClient: BOTH });
  });
});

privileged('bindSockhashesToEveryProgram finds the programs of these maps among all loaded ones, and only binds once', (t) => {
  withRedirectObject((obj) => {
    withRedirectObject((other) => {
      t.is(bindSockhashesToEveryProgram(maps(obj)), 2, 'both programs of this object');
      t.deepEqual(held(obj), { toServer: BOTH, toClient: BOTH });
      t.is(bindSockhashesToEveryProgram(maps(obj)), 0, 'nothing left to bind');
      t.deepEqual(
        held(other),
        { toServer: { clients: false, servers: true }, toClient: { clients: true, servers: false } },
        "another object's programs, holding other maps, are left alone",
      );
    });
  });
});
