// DNS ownership check against a real DNS server: pebble-challtestsrv, whose answers each test
// sets through its management API. Names without a record of their own answer A with
// 127.0.0.1 (the default the Pebble helper sets) and AAAA with nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DnsCheckConfig } from '../../src/config/schema.ts';
import { DnsOwnershipCheck, type DnsVerdict } from '../../src/policy/dns.ts';
import { OnDemandPolicy } from '../../src/policy/policy.ts';
import { silentLogger, type Logger } from '../../src/util/log.ts';
import { capturingLogger } from '../support/log-lines.ts';
import { startPebbleOnFreePorts, type MockDns, type PebbleHandle } from '../support/pebble.ts';
import { onDemandSection } from '../support/config.ts';

/** The verdict without `resolved` (what the name resolved to), which these tests do not pin. */
function withoutResolved(verdict: DnsVerdict): DnsVerdict {
  const { resolved: _resolved, ...rest } = verdict;
  return rest;
}

describe('DNS ownership check (real DNS: pebble-challtestsrv)', () => {
  let pebble: PebbleHandle;
  let dns: MockDns;
  let run = 0;
  /** A fresh name per test, so no test sees another's records or cache. */
  const fresh = (label: string) => `${label}-${++run}-${process.pid}.customer.test`;

  before(async () => {
    ({ pebble, dns } = await startPebbleOnFreePorts());
  });
  after(async () => {
    await pebble?.stop();
  });

  function checker(over: Partial<DnsCheckConfig> & { logger?: Logger } = {}): DnsOwnershipCheck {
    const { logger = silentLogger(), ...rest } = over;
    const dns: DnsCheckConfig = {
      targets: ['127.0.0.1'],
      resolvers: [pebble.dnsAddress],
      match: 'all',
      cacheTtl: 60_000,
      negativeCacheTtl: 60_000,
      staleFor: 60_000,
      timeout: 10_000, // a local DNS server: only a stalled machine would come near it
      ...rest,
    };
    return new DnsOwnershipCheck({ dns, limits: { unknownNameCache: 100_000 } }, { logger });
  }

  test('an A record equal to an IP target passes; one pointing elsewhere fails and names the address', async () => {
    const check = checker();
    assert.deepEqual(await check.check(fresh('default')), { ok: true, via: 'address 127.0.0.1', resolved: ['127.0.0.1'] });
    const elsewhere = fresh('elsewhere');
    await dns.setA(elsewhere, ['192.0.2.44']);
    const verdict = await check.check(elsewhere);
    assert.equal(verdict.ok, false);
    assert.match((verdict as { reason: string }).reason, /192\.0\.2\.44/);
  });

  test('host-name target: a CNAME chain reaching it passes, so does an address equal to its own', async () => {
    const edge = `edge-${process.pid}.platform.test`;
    await dns.setA(edge, ['198.51.100.7']);
    const check = checker({ targets: [edge] });

    const direct = fresh('cname');
    await dns.setCname(direct, edge);
    assert.deepEqual(withoutResolved(await check.check(direct)), { ok: true, via: `CNAME ${edge}` });

    // two links: customer → intermediate → edge
    const chained = fresh('chain');
    const middle = fresh('middle');
    await dns.setCname(chained, middle);
    await dns.setCname(middle, edge);
    assert.deepEqual(withoutResolved(await check.check(chained)), { ok: true, via: `CNAME ${edge}` });

    const apex = fresh('apex');
    await dns.setA(apex, ['198.51.100.7']);
    assert.deepEqual(withoutResolved(await check.check(apex)), { ok: true, via: 'address 198.51.100.7' });

    const other = fresh('other');
    await dns.setA(other, ['203.0.113.9']);
    assert.equal((await check.check(other)).ok, false);
    // A CNAME to some other host (which resolves to the default 127.0.0.1, not the edge's address) fails.
    const wrongCname = fresh('wrongcname');
    await dns.setCname(wrongCname, `elsewhere-${process.pid}.hoster.test`);
    assert.equal((await check.check(wrongCname)).ok, false);
  });

  test('match "all" needs every A/AAAA address to be a target; "any" needs one', async () => {
    const mixed = fresh('mixed');
    await dns.setA(mixed, ['127.0.0.1', '192.0.2.50']);
    assert.equal((await checker({ match: 'all' }).check(mixed)).ok, false);
    assert.equal((await checker({ match: 'any' }).check(mixed)).ok, true);
    const v6 = fresh('v6');
    await dns.setAAAA(v6, ['2001:db8::1']);
    // A = 127.0.0.1 (default), AAAA = 2001:db8::1: the CA may validate over IPv6, elsewhere.
    assert.equal((await checker().check(v6)).ok, false);
    assert.equal((await checker({ targets: ['127.0.0.1', '2001:DB8:0::1'] }).check(v6)).ok, true);
  });

  // The cache tests pass check() the time to judge the cache at (its `now` argument) instead of
  // sleeping past a TTL: an answer is cached at the real time it arrives, which is no later than
  // `cachedBy` read right after, so `cachedBy + TTL + 100` is past the TTL however slow the lookup.

  test('a negative answer is cached for negativeTtl; after it the fixed record passes', async () => {
    const check = checker({ negativeCacheTtl: 60_000 });
    const name = fresh('fixme');
    await dns.setA(name, ['192.0.2.1']);
    assert.equal((await check.check(name)).ok, false);
    const cachedBy = Date.now();
    await dns.setA(name, ['127.0.0.1']);
    assert.equal((await check.check(name, cachedBy)).ok, false, 'still the cached negative answer');
    assert.equal((await check.check(name, cachedBy + 60_000 + 100)).ok, true);
  });

  test('a positive answer is cached; when the resolver fails it is used for staleFor, then not', async () => {
    const check = checker({ cacheTtl: 300, staleFor: 60_000 });
    const name = fresh('stale');
    assert.equal((await check.check(name)).ok, true);
    const cachedBy = Date.now();
    await dns.setServfail(name);
    try {
      // Past the positive TTL, within staleFor: a refresh is attempted, SERVFAIL, stale answer used.
      assert.equal((await check.check(name, cachedBy + 300 + 100)).ok, true);
      // Past staleFor.
      const verdict = await check.check(name, cachedBy + 300 + 60_000 + 100);
      assert.equal(verdict.ok, false);
      assert.match((verdict as { reason: string }).reason, /ESERVFAIL/);
      // Without any earlier positive answer a resolver failure fails the check.
      const never = fresh('neverseen');
      await dns.setServfail(never);
      assert.match((await check.check(never) as { reason: string }).reason, /DNS lookup failed: ESERVFAIL/);
    } finally {
      await dns.clearServfail(name);
    }
  });

  test('a positive answer within its TTL is served from memory even if DNS changed', async () => {
    const check = checker({ cacheTtl: 60_000 });
    const name = fresh('cached');
    assert.equal((await check.check(name)).ok, true);
    await dns.setA(name, ['192.0.2.2']);
    assert.equal((await check.check(name)).ok, true);
    check.forget(name);
    assert.equal((await check.check(name)).ok, false);
  });

  test('concurrent checks of one name share one lookup', async () => {
    const { logger, lines } = capturingLogger();
    const check = checker({ logger });
    const name = fresh('concurrent');
    const verdicts = await Promise.all(Array.from({ length: 25 }, () => check.check(name)));
    assert.ok(verdicts.every((v) => v.ok));
    const lookups = lines.filter((l) => l.step === 'dns-check' && l.domain === name);
    assert.equal(lookups.length, 1, 'one lookup (one log line) for 25 concurrent checks');
  });

  test('policy: an allowed name must also pass DNS; a name policy denies is never looked up', async () => {
    const { logger, lines } = capturingLogger();
    const dnsCheck = checker({ logger });
    const policy = new OnDemandPolicy(onDemandSection({ allow: ['*.customer.test'], askTimeout: 1000, askCacheTtl: 1000, askDenyCacheTtl: 1000 }), { dns: dnsCheck, logger: silentLogger() });
    const good = fresh('good');
    const bad = fresh('bad');
    await dns.setA(bad, ['192.0.2.77']);
    assert.deepEqual(await policy.decide(good), { allowed: true, source: 'allow' });
    const denied = await policy.decide(bad);
    assert.equal(denied.allowed, false);
    assert.match((denied as { reason: string }).reason, /^DNS ownership check: .*192\.0\.2\.77/);
    assert.equal((await policy.decide('stranger.example.net')).allowed, false);
    assert.ok(!lines.some((l) => l.domain === 'stranger.example.net'), 'denied by the sources: no DNS query');
  });
});
