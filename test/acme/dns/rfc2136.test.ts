// The rfc2136 provider against a real bind9 (test/support/bind9.ts) with TSIG keys: values added
// and removed one by one, the server's refusals (wrong secret, unknown key, name not granted,
// zone not served) each named with the step and what bind9 answered, and a server that is down
// or never answers failing within the provider's bound instead of hanging.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Rfc2136Provider, type Rfc2136Options } from '../../../src/acme/dns/rfc2136.ts';
import { startBind9, type Bind9Handle } from '../../support/bind9.ts';
import { freePort } from '../../support/ports.ts';
import { providerFailure as failure } from '../../support/dns.ts';

const SECRET256 = Buffer.alloc(32, 0x5a).toString('base64');
const SECRET512 = Buffer.alloc(64, 0xa5).toString('base64');
const WRONG = Buffer.alloc(32, 0x01).toString('base64');
/** The provider's bound on one exchange in these tests. */
const BOUND_MS = 1500;
/** What "within the bound" allows on a slow, loaded machine: the bound plus a wide margin. */
const WITHIN_MS = BOUND_MS + 20_000;

let dns: Bind9Handle;

before(async () => {
  dns = await startBind9({
    zones: [
      { name: 'wild.test', a: { 'wild.test': ['127.0.0.1'] }, challengeNames: ['_acme-challenge.wild.test', '_acme-challenge.a.wild.test'] },
    ],
    keys: [
      { name: 'key256', algorithm: 'hmac-sha256', secret: SECRET256 },
      { name: 'key512', algorithm: 'hmac-sha512', secret: SECRET512 },
    ],
  });
});
after(async (t) => {
  // named's own log helps when something here fails (it says why it refused or exited).
  if (/exited/.test(dns?.output() ?? '')) t.diagnostic(dns.output());
  await dns?.stop();
});

function provider(over: Partial<Rfc2136Options> = {}): Rfc2136Provider {
  return new Rfc2136Provider(
    { server: dns.address, keyName: 'key256', keyAlgorithm: 'hmac-sha256', keySecret: SECRET256, ...over },
    { timeoutMs: BOUND_MS },
  );
}


describe('rfc2136 provider against bind9', () => {
  test('two values at one name are both answered; cleanup of one leaves the other', async () => {
    for (const p of [provider(), provider({ keyName: 'key512', keyAlgorithm: 'hmac-sha512', keySecret: SECRET512 })]) {
      const name = '_acme-challenge.wild.test';
      await p.present(name, `one-${p.name}`);
      await p.present(name, `two-${p.name}`);
      await p.present(name, `two-${p.name}`); // already there: succeeds
      assert.deepEqual((await dns.txt(name)).sort(), [`one-${p.name}`, `two-${p.name}`]);
      await p.cleanup(name, `one-${p.name}`);
      assert.deepEqual(await dns.txt(name), [`two-${p.name}`]);
      await p.cleanup(name, `two-${p.name}`);
      await p.cleanup(name, `two-${p.name}`); // already gone: succeeds
      assert.deepEqual(await dns.txt(name), []);
    }
  });

  test('the zone is found by SOA lookup from a name below it, or taken from `zone`', async () => {
    await provider().present('_acme-challenge.a.wild.test', 'below');
    assert.deepEqual(await dns.txt('_acme-challenge.a.wild.test'), ['below']);
    await provider({ zone: 'wild.test' }).cleanup('_acme-challenge.a.wild.test', 'below');
    assert.deepEqual(await dns.txt('_acme-challenge.a.wild.test'), []);
  });

  test('a wrong secret fails within the bound, naming the step, NOTAUTH and BADSIG', async () => {
    const { err, ms } = await failure(() => provider({ keySecret: WRONG }).present('_acme-challenge.wild.test', 'x'));
    assert.equal(err.step, 'zone');
    assert.match(err.message, /_acme-challenge\.wild\.test/);
    assert.match(err.message, /NOTAUTH/);
    assert.match(err.message, /BADSIG/);
    assert.ok(ms < WITHIN_MS, `took ${ms} ms`);
    // With the zone given, the update itself is what the server refuses.
    const given = await failure(() => provider({ keySecret: WRONG, zone: 'wild.test' }).present('_acme-challenge.wild.test', 'x'));
    assert.equal(given.err.step, 'present');
    assert.match(given.err.message, /NOTAUTH.*BADSIG/);
    assert.deepEqual(await dns.txt('_acme-challenge.wild.test'), []);
  });

  test('a name the key may not write is REFUSED; a name in no zone of the server is a zone error', async () => {
    const refused = await failure(() => provider().present('_acme-challenge.b.wild.test', 'x'));
    assert.equal(refused.err.step, 'present');
    assert.match(refused.err.message, /REFUSED/);
    const nozone = await failure(() => provider().present('_acme-challenge.elsewhere.example', 'x'));
    assert.equal(nozone.err.step, 'zone');
    assert.match(nozone.err.message, /_acme-challenge\.elsewhere\.example.*serves no zone/);
    const outside = await failure(() => provider({ zone: 'wild.test' }).present('_acme-challenge.other.test', 'x'));
    assert.equal(outside.err.step, 'zone');
  });

  test('check(): passes with the right key; names BADSIG for a wrong secret and BADKEY for an unknown key', async () => {
    await provider().check();
    await provider({ zone: 'wild.test' }).check();
    const badsig = await failure(() => provider({ keySecret: WRONG }).check());
    assert.equal(badsig.err.step, 'check');
    assert.match(badsig.err.message, /BADSIG/);
    const badkey = await failure(() => provider({ keyName: 'nobody' }).check());
    assert.match(badkey.err.message, /BADKEY/);
    const notServed = await failure(() => provider({ zone: 'other.test' }).check());
    assert.match(notServed.err.message, /other\.test/);
  });

  test('server down (nothing listening) and a server that never answers both fail within the bound', async () => {
    const downPort = await freePort();
    const down = await failure(() => provider({ server: `127.0.0.1:${downPort}` }).present('_acme-challenge.wild.test', 'x'));
    assert.match(down.err.message, new RegExp(`127\\.0\\.0\\.1:${downPort}.*ECONNREFUSED`));
    assert.ok(down.ms < WITHIN_MS, `took ${down.ms} ms`);

    const silent: Server = createServer(() => undefined); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as { port: number }).port;
      const hung = await failure(() => provider({ server: `127.0.0.1:${port}`, zone: 'wild.test' }).present('_acme-challenge.wild.test', 'x'));
      assert.equal(hung.err.step, 'present');
      assert.match(hung.err.message, new RegExp(`no answer within ${BOUND_MS} ms`));
      assert.ok(hung.ms < WITHIN_MS, `took ${hung.ms} ms`);
    } finally {
      silent.close();
    }
  });

  test('an unsigned answer is not accepted as success', async () => {
    // A server that answers every query NOERROR without a TSIG record (e.g. a spoofing middlebox).
    const fake: Server = createServer((socket) => {
      socket.once('data', (data: Buffer) => {
        const msg = Buffer.from(data.subarray(2, 2 + data.readUInt16BE(0)));
        // The answer: the request's header and zone section, nothing else (no TSIG RR).
        const answer = Buffer.from(msg.subarray(0, 12 + questionLength(msg)));
        answer.writeUInt16BE(0xa800, 2); // QR, opcode UPDATE, AA, NOERROR
        answer.writeUInt16BE(0, 6);
        answer.writeUInt16BE(0, 8);
        answer.writeUInt16BE(0, 10);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(answer.length);
        socket.end(Buffer.concat([len, answer]));
      });
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    try {
      const port = (fake.address() as { port: number }).port;
      const { err } = await failure(() => provider({ server: `127.0.0.1:${port}`, zone: 'wild.test' }).present('_acme-challenge.wild.test', 'x'));
      assert.match(err.message, /UNSIGNED/);
    } finally {
      fake.close();
    }
  });
});

/** Length of the (one) question of `msg`: its name up to the 0 label, plus type and class. */
function questionLength(msg: Buffer): number {
  let at = 12;
  while (msg[at] !== 0) at += msg[at]! + 1;
  return at + 1 + 4 - 12;
}
