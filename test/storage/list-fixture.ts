// The keys and prefix forms every storage backend must list alike (file.test.ts, redis.test.ts).
import assert from 'node:assert/strict';
import type { Storage } from '../../src/storage/storage.ts';

export const LIST_FIXTURE_KEYS = [
  'certificates/ca/zeta.com/cert.pem',
  'certificates/ca/alpha.com/key.pem',
  'certificates/ca/alpha.com/cert.pem',
  'certificates/ca2/abcd.com/cert.pem',
  'certificates/abc',
  'certificates-old/x',
  'accounts/ca/account.json',
];

const CERTIFICATES = [
  'certificates/abc',
  'certificates/ca/alpha.com/cert.pem',
  'certificates/ca/alpha.com/key.pem',
  'certificates/ca/zeta.com/cert.pem',
  'certificates/ca2/abcd.com/cert.pem',
];

/** With LIST_FIXTURE_KEYS stored: directory, plain-string and mid-name prefixes, and misses. */
export async function assertListPrefixForms(storage: Storage): Promise<void> {
  assert.deepEqual(await storage.list('certificates/'), CERTIFICATES);
  // Plain string prefix: without the slash, siblings sharing the name match too.
  assert.deepEqual(await storage.list('certificates'), [...CERTIFICATES, 'certificates-old/x'].sort());
  assert.deepEqual(await storage.list('certificates/ca/alpha.com/'), CERTIFICATES.slice(1, 3));
  assert.deepEqual(await storage.list('certificates/ca/alpha.com'), CERTIFICATES.slice(1, 3));
  // Mid-name prefixes.
  assert.deepEqual(await storage.list('certificates/ab'), ['certificates/abc']);
  assert.deepEqual(await storage.list('certificates/ca2/ab'), ['certificates/ca2/abcd.com/cert.pem']);
  assert.deepEqual(await storage.list('certificates/ca/alpha.com/k'), ['certificates/ca/alpha.com/key.pem']);
  assert.deepEqual(await storage.list('certificates/ca/alpha.com/cert.pem'), ['certificates/ca/alpha.com/cert.pem']);
  // Missing prefixes.
  assert.deepEqual(await storage.list('nothing/'), []);
  assert.deepEqual(await storage.list('certificates/abc/'), [], 'below a key');
}
