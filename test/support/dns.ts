// Test helpers for the DNS providers (src/acme/dns/).
import assert from 'node:assert/strict';
import { DnsProviderError } from '../../src/acme/dns/provider.ts';

/** Runs `fn`, expects a DnsProviderError, and returns it with the time it took. */
export async function providerFailure(fn: () => Promise<unknown>): Promise<{ err: DnsProviderError; ms: number }> {
  const started = Date.now();
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof DnsProviderError, `expected a DnsProviderError, got ${String(err)}`);
    return { err, ms: Date.now() - started };
  }
  assert.fail('expected the call to fail');
}
