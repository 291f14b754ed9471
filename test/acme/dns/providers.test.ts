// createDnsProvider picks the provider acme.dns.provider names, from its own section, and says
// which section is missing instead of failing later at the first order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CloudflareProvider } from '../../../src/acme/dns/cloudflare.ts';
import { ExecProvider } from '../../../src/acme/dns/exec.ts';
import { DnsProviderError } from '../../../src/acme/dns/provider.ts';
import { createDnsProvider, type DnsProviderSection } from '../../../src/acme/dns/providers.ts';
import { Rfc2136Provider } from '../../../src/acme/dns/rfc2136.ts';

const rfc2136 = { server: '127.0.0.1:5353', keyName: 'k', keyAlgorithm: 'hmac-sha256' as const, keySecret: 'c2VjcmV0' };

test('createDnsProvider picks by acme.dns.provider; the other sections are ignored', () => {
  const all = { rfc2136, cloudflare: { apiToken: 't' }, exec: { command: ['/bin/true'] } };
  assert.ok(createDnsProvider({ provider: 'rfc2136', ...all }) instanceof Rfc2136Provider);
  assert.ok(createDnsProvider({ provider: 'cloudflare', ...all }) instanceof CloudflareProvider);
  const exec = createDnsProvider({ provider: 'exec', ...all });
  assert.ok(exec instanceof ExecProvider);
  assert.equal(exec.name, 'exec');
});

test('createDnsProvider: a missing section or an unknown provider is a config error naming it', () => {
  for (const provider of ['rfc2136', 'cloudflare', 'exec'] as const) {
    assert.throws(
      () => createDnsProvider({ provider }),
      (e: unknown) => e instanceof DnsProviderError && e.step === 'config' && e.message.includes(`acme.dns.${provider} is not set`),
    );
  }
  assert.throws(() => createDnsProvider({ provider: 'route53' } as unknown as DnsProviderSection), /route53 is not one of/);
});
