// The CAA check (hostname status) against challtestsrv's real DNS: the relevant record set is
// the first found climbing from the name, `issue ";"` forbids every CA, a known public CA is
// judged by its identity, an unknown (test) CA is reported as unknown, not as forbidden.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { checkCaa } from '../../src/policy/caa.ts';
import { createResolver } from '../../src/net/resolver.ts';
import { startPebbleOnFreePorts, type MockDns, type PebbleHandle } from '../support/pebble.ts';

const LE = { ca: 'le', directory: 'https://acme-v02.api.letsencrypt.org/directory' };
const PEBBLE = { ca: 'pebble', directory: 'https://127.0.0.1:14000/dir' };

describe('CAA check', () => {
  let pebble: PebbleHandle;
  let dns: MockDns;

  before(async () => {
    ({ pebble, dns } = await startPebbleOnFreePorts());
  });

  after(async () => {
    await pebble?.stop();
  });

  test('no records: nothing forbidden; a parent\'s records apply; issue ";" forbids all; identities judged', async () => {
    const resolver = createResolver([pebble.dnsAddress], { timeoutMs: 1000 });
    assert.deepEqual(await checkCaa(resolver, 'free.caa.test', [LE, PEBBLE]), { records: [], forbids: [], unknown: [] });

    await dns.addCaa('locked.test', [{ tag: 'issue', value: ';' }]);
    const locked = await checkCaa(resolver, 'shop.locked.test', [LE, PEBBLE]);
    assert.deepEqual(locked.forbids, ['le', 'pebble']);
    assert.equal(locked.records[0]?.at, 'locked.test');

    await dns.addCaa('other.test', [{ tag: 'issue', value: 'pki.goog' }]);
    const other = await checkCaa(resolver, 'blog.other.test', [LE, PEBBLE]);
    assert.deepEqual(other.forbids, ['le']);
    assert.deepEqual(other.unknown, ['pebble']);

    await dns.addCaa('le.test', [{ tag: 'issue', value: 'letsencrypt.org; validationmethods=http-01' }]);
    assert.deepEqual((await checkCaa(resolver, 'le.test', [LE])).forbids, []);
  });
});
