// The dns-01 solver and its propagation check against a real DNS server: pebble-challtestsrv
// serves the TXT records the test provider writes through its management API, and Pebble
// validates dns-01 against the same server.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { request } from 'undici';
import { Dns01Solver, dns01RecordName, solversForOrder } from '../../src/acme/dns01.ts';
import { DnsProviderError, type DnsProvider } from '../../src/acme/dns/provider.ts';
import { obtainCertificate } from '../../src/acme/obtain.ts';
import { isAcmeError } from '../../src/acme/plumbing/errors.ts';
import { parseCertificate } from '../../src/acme/x509.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { keys } from '../../src/storage/keys.ts';
import { silentLogger } from '../../src/util/log.ts';
import { eventually, newCertRequest, pebbleSuite, verifyChain } from '../support/acme-responders.ts';
import { tmpDir } from '../support/tmp.ts';

/**
 * A TEST-ONLY DnsProvider writing to pebble-challtestsrv's management API. challtestsrv's
 * /clear-txt drops every value at a name, so removing one value re-adds the others: the
 * single-value semantics real providers have.
 */
class ChalltestsrvTestProvider implements DnsProvider {
  readonly name = 'challtestsrv-test';
  readonly calls: string[] = [];
  private readonly values = new Map<string, string[]>();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly url: string) {}

  present(fqdn: string, value: string): Promise<void> {
    this.calls.push(`present ${fqdn}`);
    return this.serial(async () => {
      const list = this.values.get(fqdn) ?? [];
      if (!list.includes(value)) list.push(value);
      this.values.set(fqdn, list);
      await this.post('/set-txt', { host: `${fqdn}.`, value });
    });
  }

  cleanup(fqdn: string, value: string): Promise<void> {
    this.calls.push(`cleanup ${fqdn}`);
    return this.serial(async () => {
      const rest = (this.values.get(fqdn) ?? []).filter((v) => v !== value);
      this.values.set(fqdn, rest);
      await this.post('/clear-txt', { host: `${fqdn}.` });
      for (const v of rest) await this.post('/set-txt', { host: `${fqdn}.`, value: v });
    });
  }

  /** One write at a time, or two cleanups at one name would re-add each other's value. */
  private serial(op: () => Promise<void>): Promise<void> {
    const run = this.queue.then(op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async post(path: string, body: Record<string, unknown>): Promise<void> {
    const res = await request(`${this.url}${path}`, { method: 'POST', body: JSON.stringify(body), headersTimeout: 5000, bodyTimeout: 5000 });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`challtestsrv ${path}: HTTP ${res.statusCode}: ${text}`);
  }
}

/** Says yes and writes nothing: the record never appears. */
class SilentProvider implements DnsProvider {
  readonly name: string = 'silent-test';
  readonly calls: string[] = [];
  present(fqdn: string): Promise<void> {
    this.calls.push(`present ${fqdn}`);
    return Promise.resolve();
  }
  cleanup(fqdn: string): Promise<void> {
    this.calls.push(`cleanup ${fqdn}`);
    return Promise.resolve();
  }
}

/** Refuses every write, as a DNS host with a wrong secret would. */
class RefusingProvider extends SilentProvider {
  override readonly name: string = 'refusing-test';
  override present(fqdn: string): Promise<void> {
    this.calls.push(`present ${fqdn}`);
    return Promise.reject(new DnsProviderError('update REFUSED by 127.0.0.1:1', 'present', this.name));
  }
}

async function txtAt(server: string, fqdn: string): Promise<string[]> {
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  resolver.setServers([server]);
  return (await resolver.resolveTxt(fqdn).catch(() => [] as string[][])).map((c) => c.join(''));
}

describe('dns-01 solver against Pebble and challtestsrv', () => {
  const suite = pebbleSuite();

  test('obtains *.wild.test + wild.test by dns-01; both values coexist at one name; records and storage traces gone afterwards', async (t) => {
    const storage = new FileStorage(await tmpDir(t));
    const provider = new ChalltestsrvTestProvider(suite.pebble.challtestsrvUrl);
    const solver = new Dns01Solver({ provider, storage, logger: silentLogger(), resolvers: [suite.pebble.dnsAddress], propagationTimeoutMs: 30_000, propagationIntervalMs: 100 });
    const domains = ['*.wild.test', 'wild.test'];
    const issuedBefore = suite.pebble.certificatesIssued();
    const result = await obtainCertificate(suite.newAccount(), {
      domains,
      csrDer: await newCertRequest(domains),
      // the order's solvers as the issuer picks them: a wildcard order uses dns-01 alone
      solvers: solversForOrder(domains, [suite.responders.http01([])], solver),
      timeoutMs: 120_000,
    });
    verifyChain(result.certificatePem, await suite.pebble.rootPem());
    assert.deepEqual([...parseCertificate(result.certificatePem).names].sort(), [...domains].sort());
    assert.deepEqual(result.challengeTypes, ['dns-01', 'dns-01']);
    // both authorizations answered at the same name, each with its own value
    assert.deepEqual(provider.calls.filter((c) => c.startsWith('present')), ['present _acme-challenge.wild.test', 'present _acme-challenge.wild.test']);
    assert.equal(provider.calls.filter((c) => c.startsWith('cleanup')).length, 2);
    assert.deepEqual(await txtAt(suite.pebble.dnsAddress, '_acme-challenge.wild.test'), []);
    assert.deepEqual(await storage.list(keys.dns01Prefix), []);
    await eventually(() => suite.pebble.certificatesIssued() === issuedBefore + 1, 'certificate count');
  });

  test('propagation time-out: the record never appears → fails within the bound naming step propagation; cleanup called', async (t) => {
    const storage = new FileStorage(await tmpDir(t));
    const provider = new SilentProvider();
    const solver = new Dns01Solver({ provider, storage, logger: silentLogger(), resolvers: [suite.pebble.dnsAddress], propagationTimeoutMs: 1_500, propagationIntervalMs: 100 });
    const started = performance.now();
    const err = await obtainCertificate(suite.newAccount(), { domains: ['slow.dns.test'], csrDer: await newCertRequest(['slow.dns.test']), solvers: [solver], timeoutMs: 120_000 }).then(
      () => assert.fail('expected a propagation failure'),
      (e: unknown) => e,
    );
    const ms = performance.now() - started;
    assert.ok(isAcmeError(err), String(err));
    assert.equal(err.domain, 'slow.dns.test');
    assert.match(err.detail, /silent-test, step propagation, _acme-challenge\.slow\.dns\.test/);
    assert.match(err.detail, new RegExp(`${suite.pebble.dnsAddress.replace(/\./g, '\\.')}: no TXT`));
    assert.equal((err.cause as DnsProviderError).step, 'propagation');
    // the bound is 1.5 s; 60 s is far inside the order's own 120 s time-out
    assert.ok(ms < 60_000, `took ${ms} ms`);
    assert.deepEqual(provider.calls, ['present _acme-challenge.slow.dns.test', 'cleanup _acme-challenge.slow.dns.test']);
    assert.deepEqual(await storage.list(keys.dns01Prefix), []);
  });

  test('a provider that refuses the write → the issuance fails naming the provider and the step; cleanup called', async (t) => {
    const storage = new FileStorage(await tmpDir(t));
    const provider = new RefusingProvider();
    const solver = new Dns01Solver({ provider, storage, logger: silentLogger(), resolvers: [suite.pebble.dnsAddress], propagationTimeoutMs: 5_000 });
    const err = await obtainCertificate(suite.newAccount(), { domains: ['refused.dns.test'], csrDer: await newCertRequest(['refused.dns.test']), solvers: [solver] }).then(
      () => assert.fail('expected the provider failure'),
      (e: unknown) => e,
    );
    assert.ok(isAcmeError(err), String(err));
    assert.equal(err.step, 'present', 'the step of the DNS host, not just "challenge"');
    assert.match(err.detail, /dns provider refusing-test, step present, _acme-challenge\.refused\.dns\.test: update REFUSED/);
    assert.deepEqual(provider.calls, ['present _acme-challenge.refused.dns.test', 'cleanup _acme-challenge.refused.dns.test']);
  });
});

describe('solversForOrder', () => {
  const http = { type: 'http-01' as const, present: () => Promise.resolve(), cleanup: () => Promise.resolve() };
  const dns = { type: 'dns-01' as const, present: () => Promise.resolve(), cleanup: () => Promise.resolve() };

  test('on-demand names keep acme.challenges; a wildcard order uses dns-01 alone; a wildcard without dns-01 is refused before ordering', () => {
    assert.deepEqual(solversForOrder(['a.test'], [http], dns), [http]);
    assert.deepEqual(solversForOrder(['*.a.test', 'a.test'], [http], dns), [dns]);
    assert.throws(() => solversForOrder(['*.a.test'], [http], undefined), (e: unknown) => isAcmeError(e) && e.domain === '*.a.test' && e.step === 'challenge' && /acme\.dns/.test(e.detail));
  });

  test('the record name drops a trailing dot and upper case', () => {
    assert.equal(dns01RecordName('Wild.Test.'), '_acme-challenge.wild.test');
  });
});
