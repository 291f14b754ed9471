// The DNS helper dns.ts and preflight.ts share: resolvers on the configured servers, and
// "no such name" / "no records" as an empty answer while real failures reach the caller as they are.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { answerOf, createResolver } from '../../src/net/resolver.ts';

const failure = (code: string) => Object.assign(new Error(`query failed: ${code}`), { code });

describe('policy DNS resolver helper', () => {
  test('configured servers are asked; none means the system resolvers', () => {
    assert.deepEqual(createResolver(['127.0.0.1:8053', '[::1]:53'], { timeoutMs: 1000 }).getServers(), ['127.0.0.1:8053', '::1']);
    assert.ok(createResolver([], { timeoutMs: 1000 }).getServers().length > 0);
  });

  test('ENOTFOUND and ENODATA are an empty answer; other errors are rethrown unchanged', async () => {
    assert.deepEqual(await answerOf(Promise.resolve(['192.0.2.1'])), ['192.0.2.1']);
    assert.deepEqual(await answerOf(Promise.reject(failure('ENOTFOUND'))), []);
    assert.deepEqual(await answerOf(Promise.reject(failure('ENODATA'))), []);
    for (const code of ['ETIMEOUT', 'ESERVFAIL', 'ECONNREFUSED']) {
      const err = failure(code);
      await assert.rejects(answerOf(Promise.reject(err)), (thrown) => thrown === err, code);
    }
  });
});
