// The tls.alpn key: default h2 then http/1.1; a non-empty list of known protocols, each once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';

test('tls.alpn: ["h2", "http/1.1"] by default; any order of a non-empty subset', () => {
  assert.deepEqual(parse({}).tls.alpn, ['h2', 'http/1.1']);
  assert.deepEqual(parse({ tls: { alpn: ['http/1.1'] } }).tls.alpn, ['http/1.1']);
  assert.deepEqual(parse({ tls: { alpn: ['http/1.1', 'h2'] } }).tls.alpn, ['http/1.1', 'h2']);
});

test('tls.alpn: unknown protocols, an empty list and duplicates are refused, naming the key', () => {
  assert.match(problems({ tls: { alpn: ['h3'] } }), /tls\.alpn\[0\]: each entry must be one of h2, http\/1\.1/);
  assert.match(problems({ tls: { alpn: ['acme-tls/1'] } }), /tls\.alpn\[0\]: each entry must be one of/);
  assert.match(problems({ tls: { alpn: [] } }), /tls\.alpn: list at least one protocol/);
  assert.match(problems({ tls: { alpn: ['h2', 'h2'] } }), /tls\.alpn: list each protocol once/);
  assert.match(problems({ tls: { alpn: 'h2' } }), /tls\.alpn/);
});
