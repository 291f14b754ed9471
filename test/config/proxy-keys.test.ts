// The proxy.strictHost, proxy.upstreamAllow, proxy.trustedProxies and listen.proxyProtocol keys: defaults, spellings, and errors that name the key.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';

test('proxy.strictHost: false by default; a boolean', () => {
  assert.equal(parse({}).proxy.strictHost, false);
  assert.equal(parse({ proxy: { strictHost: true } }).proxy.strictHost, true);
  assert.match(problems({ proxy: { strictHost: 'yes' } }), /proxy\.strictHost: expected boolean/);
  assert.match(problems({ proxy: { stricthost: true } }), /stricthost/);
});

test('proxy.upstreamAllow: unset by default; CIDRs or single addresses, IPv4 and IPv6', () => {
  assert.equal(parse({}).proxy.upstreamAllow, undefined);
  assert.deepEqual(parse({ proxy: { upstreamAllow: ['10.0.0.0/8', '2001:db8::/32', '127.0.0.1'] } }).proxy.upstreamAllow, ['10.0.0.0/8', '2001:db8::/32', '127.0.0.1']);
  assert.deepEqual(parse({ proxy: { upstreamAllow: [] } }).proxy.upstreamAllow, [], 'an empty list allows no registry upstream address');
  assert.match(problems({ proxy: { upstreamAllow: ['10.0.0.0/33'] } }), /proxy\.upstreamAllow\[0\]: each entry must be a CIDR/);
  assert.match(problems({ proxy: { upstreamAllow: ['internal.example/8'] } }), /proxy\.upstreamAllow\[0\]: each entry must be a CIDR/);
  assert.match(problems({ proxy: { upstreamAllow: '10.0.0.0/8' } }), /proxy\.upstreamAllow/);
});

test('proxy.trustedProxies: none by default; CIDRs or single addresses', () => {
  assert.deepEqual(parse({}).proxy.trustedProxies, []);
  assert.deepEqual(parse({ proxy: { trustedProxies: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.1'] } }).proxy.trustedProxies, ['10.0.0.0/8', '2001:db8::/32', '192.0.2.1']);
  assert.match(problems({ proxy: { trustedProxies: ['10.0.0.0/33'] } }), /proxy\.trustedProxies\[0\]: each entry must be a CIDR/);
  assert.match(problems({ proxy: { trustedproxies: [] } }), /trustedproxies/);
});

test('listen.proxyProtocol: unset by default; { trusted: CIDRs }', () => {
  assert.equal(parse({}).listen.proxyProtocol, undefined);
  assert.deepEqual(parse({ listen: { proxyProtocol: { trusted: ['10.0.0.0/8', '127.0.0.1'] } } }).listen.proxyProtocol, { trusted: ['10.0.0.0/8', '127.0.0.1'] });
  assert.match(problems({ listen: { proxyProtocol: { trusted: ['nlb.internal'] } } }), /listen\.proxyProtocol\.trusted\[0\]: each entry must be a CIDR/);
  assert.match(problems({ listen: { proxyProtocol: ['10.0.0.0/8'] } }), /listen\.proxyProtocol/);
  assert.match(problems({ listen: { proxyProtocol: { trust: ['10.0.0.0/8'] } } }), /trust/);
});
