// proxy.resolve (re-resolution of upstream host names) and upstream templates in the config.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';

test('proxy.resolve: defaults 15 s and the system resolver; durations and resolver addresses checked', () => {
  assert.deepEqual(parse({}).proxy.resolve, { interval: 15_000, resolvers: [] });
  assert.deepEqual(parse({ proxy: { resolve: { interval: '1s', resolvers: ['127.0.0.1:8053'] } } }).proxy.resolve, { interval: 1000, resolvers: ['127.0.0.1:8053'] });
  assert.match(problems({ proxy: { resolve: { interval: 'soon' } } }), /proxy\.resolve\.interval/);
  assert.match(problems({ proxy: { resolve: { interval: 10 } } }), /proxy\.resolve\.interval: must be at least 100ms/);
  assert.match(problems({ proxy: { resolve: { resolvers: ['dns.example'] } } }), /proxy\.resolve\.resolvers\[0\]/);
  assert.match(problems({ proxy: { resolve: { every: '1s' } } }), /proxy\.resolve/);
});

test('upstream templates: {host} and {tenant} in the host name only', () => {
  const ok = parse({ proxy: { upstream: 'http://{host}.hosts.internal:8080', routes: [{ hosts: ['*.customers.test'], upstream: 'http://{tenant}.deployments.internal:9011' }] } });
  assert.equal(ok.proxy.routes[0]!.upstream, 'http://{tenant}.deployments.internal:9011');
  assert.match(problems({ proxy: { upstream: 'http://{app}.internal:8080' } }), /proxy\.upstream: .*unknown placeholder \{app\}/);
  assert.match(problems({ proxy: { routes: [{ hosts: ['a.test'], upstream: 'http://app.internal:8080/{tenant}' }] } }), /proxy\.routes\[0\]\.upstream: .*in the host name only/);
  assert.match(problems({ proxy: { upstream: 'http://{tenant:8080' } }), /proxy\.upstream/);
  assert.match(problems({ proxy: { upstream: 'http://{tenant}..internal:8080' } }), /proxy\.upstream: .*DNS name around its placeholders/);
});
