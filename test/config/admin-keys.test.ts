// Config keys of the admin API and the domain registry: listen.admin, admin.token, onDemand.registry.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse, problems } from '../support/config.ts';


test('listen.admin: unset (the default 127.0.0.1:2019 applies at start), host:port, or false', () => {
  assert.equal(parse({}).listen.admin, undefined);
  assert.deepEqual(parse({ listen: { admin: '127.0.0.1:2020' } }).listen.admin, { host: '127.0.0.1', port: 2020 });
  assert.deepEqual(parse({ listen: { admin: '[::1]:2019' } }).listen.admin, { host: '::1', port: 2019 });
  assert.equal(parse({ listen: { admin: false } }).listen.admin, false);
  assert.match(problems({ listen: { admin: 'admin-port' } }), /listen\.admin/);
  assert.match(problems({ listen: { admin: true } }), /listen\.admin/);
});

test('admin.token: optional, at least 16 characters, message says how to make one', () => {
  assert.equal(parse({}).admin.token, undefined);
  assert.equal(parse({ admin: { token: 'a'.repeat(32) } }).admin.token, 'a'.repeat(32));
  assert.match(problems({ admin: { token: 'short' } }), /admin\.token: .*16 characters.*openssl rand/);
  assert.match(problems({ admin: { tokn: 'a'.repeat(32) } }), /admin/);
});

test('onDemand.registry: a boolean, default false', () => {
  assert.equal(parse({}).onDemand.registry, false);
  assert.equal(parse({ onDemand: { registry: true } }).onDemand.registry, true);
  assert.match(problems({ onDemand: { registry: 'yes' } }), /onDemand\.registry: expected boolean, got string "yes"/);
});

test('admin.maxEventClients: a whole number of at least 1, default 100', () => {
  assert.equal(parse({}).admin.maxEventClients, 100);
  assert.equal(parse({ admin: { maxEventClients: 5 } }).admin.maxEventClients, 5);
  assert.match(problems({ admin: { maxEventClients: 0 } }), /admin\.maxEventClients/);
  assert.match(problems({ admin: { maxEventClients: 'many' } }), /admin\.maxEventClients: expected number/);
});
