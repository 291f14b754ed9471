// Issue 2 acceptance: a bad config file fails `certgate validate` and `certgate run` with a
// message naming the key; a good one validates; --help works on each command. Issue 15:
// `certgate validate --check-dns` asks the acme.dns provider (rfc2136 against a real bind9)
// whether it accepts the credentials.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startBind9 } from '../support/bind9.ts';
import { CERTGATE_BIN, runProcess, runToEnd } from '../support/process.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'certgate-cli-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function configFile(name: string, text: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, text);
  return file;
}

const bad: Array<[string, string, RegExp]> = [
  ['a listen address that is not host:port', 'listen:\n  https: "localhost"\n', /listen\.https: "localhost" is not a listen address/],
  ['an unknown key', 'onDemand:\n  alow: ["a.example.com"]\n', /onDemand\.alow: unknown key/],
  ['a challenge type we do not have', 'acme:\n  challenges: ["tls-sni-01"]\n', /acme\.challenges\[0\]: each challenge must be one of http-01, tls-alpn-01, dns-01/],
  ['dns-01 without acme.dns', 'acme:\n  challenges: ["dns-01"]\n', /acme\.challenges: dns-01 needs acme\.dns/],
  ['an invalid allow pattern', 'onDemand:\n  allow: ["*.ok.example", "not a name"]\n', /onDemand\.allow\[1\]: not a valid host pattern/],
  ['a route upstream that is not a URL', 'proxy:\n  routes:\n    - hosts: ["a.example.com"]\n      upstream: "127.0.0.1:9090"\n', /proxy\.routes\[0\]\.upstream: must be an http\(s\) URL/],
  ['a bad duration', 'onDemand:\n  handshakeWait: "soon"\n', /onDemand\.handshakeWait: "soon" is not a duration/],
  ['YAML that does not parse', 'listen: [\n', /is not valid YAML/],
];

describe('certgate validate / run with a bad config', () => {
  for (const [what, text, message] of bad) {
    test(what, async () => {
      const file = await configFile(`bad-${what.replace(/\W+/g, '-')}.yaml`, text);
      for (const command of ['validate', 'run']) {
        const { code, output } = await runToEnd([CERTGATE_BIN, command, '--config', file]);
        assert.equal(code, 2, `${command} exits 2\n${output}`);
        assert.match(output, message, `${command} names the key`);
      }
    });
  }

  test('run with workers forks them before validating; a bad config stops them and exits 2', async () => {
    const file = await configFile('bad-with-workers.yaml', 'workers: 2\nonDemand:\n  alow: ["a.example.com"]\n');
    const { code, output } = await runToEnd([CERTGATE_BIN, 'run', '--config', file]);
    assert.equal(code, 2, output);
    assert.match(output, /onDemand\.alow: unknown key/);
    // Workers run the same command line; none may outlive the primary.
    const left = spawnSync('pgrep', ['-f', file], { encoding: 'utf8' });
    assert.equal(left.stdout.trim(), '', `processes left running with ${file}`);
  });

  test('run takes its config file from every spelling; anything else is commander\'s error', async () => {
    // `run --config FILE` and its variants are read without commander (src/cli.ts): each must
    // reach the same file, and the rest must still get commander's checks.
    const file = await configFile('bad-spellings.yaml', 'onDemand:\n  alow: ["a.example.com"]\n');
    for (const [args, env] of [
      [['run', '--config', file], {}],
      [['run', '-c', file], {}],
      [[`run`, `--config=${file}`], {}],
      [['run'], { CERTGATE_CONFIG: file }],
    ] as Array<[string[], Record<string, string>]>) {
      const { code, output } = await runToEnd([CERTGATE_BIN, ...args], { env });
      assert.equal(code, 2, `${args.join(' ')}\n${output}`);
      assert.match(output, /onDemand\.alow: unknown key/, args.join(' '));
    }
    const none = await runToEnd([CERTGATE_BIN, 'run'], { env: { CERTGATE_CONFIG: '' } });
    assert.equal(none.code, 2, none.output);
    assert.match(none.output, /no config file; pass --config FILE or set CERTGATE_CONFIG/);
    const unknown = await runToEnd([CERTGATE_BIN, 'run', '--config', file, '--verbose']);
    assert.equal(unknown.code, 1, unknown.output);
    assert.match(unknown.output, /unknown option '--verbose'/);
  });

  test('a missing file is named', async () => {
    const { code, output } = await runToEnd([CERTGATE_BIN, 'validate', '--config', join(dir, 'nope.yaml')]);
    assert.equal(code, 2);
    assert.match(output, /cannot read config file .*nope\.yaml: no such file/);
  });
});

describe('certgate validate with a good config', () => {
  test('prints the effective config; CERTGATE_CONFIG works too', async () => {
    const file = await configFile(
      'good.yaml',
      [
        'listen: { https: "127.0.0.1:5001", http: "127.0.0.1:5002" }',
        'storage: { file: { path: ./data } }',
        'acme:',
        '  directory: "https://127.0.0.1:14000/dir"',
        '  email: "ops@example.com"',
        '  trustedRoots: ["./pebble.minica.pem"]',
        '  challenges: ["http-01", "tls-alpn-01"]',
        'onDemand:',
        '  allow: ["*.customers.test", "shop.example.com"]',
        '  ask: "http://127.0.0.1:9000/allow"',
        'proxy:',
        '  upstream: "http://127.0.0.1:8080"',
        '  routes:',
        '    - hosts: ["shop.example.com", "*.example.org"]',
        '      upstream: "http://127.0.0.1:9090"',
      ].join('\n'),
    );
    const { code, output } = await runToEnd([CERTGATE_BIN, 'validate', '--config', file]);
    assert.equal(code, 0, output);
    assert.match(output, /: valid/);
    const effective = JSON.parse(output.slice(output.indexOf('{')));
    assert.equal(effective.storage.file.path, join(dir, 'data'), 'relative paths resolve against the config file');
    assert.deepEqual(effective.listen.https, { host: '127.0.0.1', port: 5001 });
    assert.equal(effective.onDemand.handshakeWait, 20_000);
    assert.equal(effective.tls.cacheSize, 10_000);

    const viaEnv = await runToEnd([CERTGATE_BIN, 'validate'], { env: { CERTGATE_CONFIG: file } });
    assert.equal(viaEnv.code, 0, viaEnv.output);
  });

  test('says what each host pattern matches and prints no secret', async () => {
    const file = await configFile(
      'secrets.yaml',
      [
        'listen: { https: "127.0.0.1:5001", http: "127.0.0.1:5002" }',
        'storage: { redis: { url: "redis://:REDIS-PASSWORD@127.0.0.1:6379" } }',
        'acme:',
        '  issuers:',
        '    - { directory: "https://127.0.0.1:14000/dir", eab: { kid: "kid-1", hmac: "EAB-HMAC-SECRET" } }',
        'onDemand:',
        '  allow: ["*.one.test", "**.any.test"]',
        'admin: { token: "ADMIN-TOKEN-SECRET-0123" }',
      ].join('\n'),
    );
    const { code, output } = await runToEnd([CERTGATE_BIN, 'validate', '--config', file]);
    assert.equal(code, 0, output);
    for (const secret of ['REDIS-PASSWORD', 'EAB-HMAC-SECRET', 'ADMIN-TOKEN-SECRET-0123']) assert.ok(!output.includes(secret), `${secret} printed:\n${output}`);
    const effective = JSON.parse(output.slice(output.indexOf('{')));
    assert.equal(effective.admin.token, '[redacted]');
    assert.equal(effective.acme.issuers[0].eab.hmac, '[redacted]');
    assert.equal(effective.acme.issuers[0].eab.kid, 'kid-1');
    assert.equal(effective.storage.redis.url, 'redis://:[redacted]@127.0.0.1:6379');
    assert.match(output, /onDemand\.allow\[0\] {2}\*\.one\.test: one label below one\.test/);
    assert.match(output, /onDemand\.allow\[1\] {2}\*\*\.any\.test: any depth below any\.test/);
  });

  test('run warns once per *. pattern at start (primary only, not per worker)', async () => {
    const file = await configFile(
      'wildcards.yaml',
      [
        'listen: { https: "127.0.0.1:0", http: "127.0.0.1:0", admin: false }',
        `storage: { file: { path: "${join(dir, 'wildcards-data')}" } }`,
        'workers: 2',
        'acme: { directory: "https://127.0.0.1:9/dir" }',
        'onDemand: { allow: ["*.one.test", "**.any.test", "exact.test"] }',
        'proxy: { routes: [{ hosts: ["*.one.test", "*.route.test"], upstream: "http://127.0.0.1:9090" }] }',
      ].join('\n'),
    );
    const proc = runProcess([CERTGATE_BIN, 'run', '--config', file]);
    try {
      await proc.waitFor(/certgate listening/, 60_000);
    } finally {
      await proc.stop();
    }
    const warnings = proc.output().split('\n').filter((l) => l.includes('"step":"config"'));
    assert.equal(warnings.length, 2, proc.output());
    assert.match(warnings[0]!, /\*\.one\.test \(onDemand\.allow\[0\], proxy\.routes\[0\]\.hosts\[0\]\) now matches exactly one label below one\.test.*\*\*\.one\.test/);
    assert.match(warnings[1]!, /\*\.route\.test \(proxy\.routes\[0\]\.hosts\[1\]\) now matches exactly one label/);
    assert.ok(warnings.every((l) => JSON.parse(l).level === 'warn'));
  });

  test('--help on each command', async () => {
    for (const args of [['--help'], ['run', '--help'], ['validate', '--help']]) {
      const { code, output } = await runToEnd([CERTGATE_BIN, ...args]);
      assert.equal(code, 0);
      assert.match(output, /Usage: certgate/);
    }
    const { output } = await runToEnd([CERTGATE_BIN, 'run', '--help']);
    assert.match(output, /--config <file>/);
    assert.match(output, /CERTGATE_CONFIG/);
  });
});

describe('certgate validate --check-dns (issue 15)', () => {
  const key = { name: 'certgate-key', algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 0x3c).toString('base64') } as const;
  const dnsConfig = (server: string, secret: string): string =>
    ['acme:', '  dns:', '    provider: rfc2136', `    rfc2136: { server: "${server}", keyName: "${key.name}", keyAlgorithm: "${key.algorithm}", keySecret: "${secret}" }`].join('\n');

  test('against bind9: the right key is OK (exit 0); a wrong secret names BADSIG and exits non-zero; no acme.dns exits non-zero', async (t) => {
    const dns = await startBind9({ zones: [{ name: 'wild.test' }], keys: [key] });
    t.after(() => dns.stop());
    const good = await configFile('dns-good.yaml', dnsConfig(dns.address, key.secret));
    const ok = await runToEnd([CERTGATE_BIN, 'validate', '--check-dns', '--config', good]);
    assert.equal(ok.code, 0, ok.output);
    assert.match(ok.output, /acme\.dns: provider rfc2136 OK/);
    assert.doesNotMatch(ok.output, new RegExp(key.secret.replace(/[+/=]/g, '\\$&')), 'the secret is not printed');

    const wrong = await configFile('dns-wrong.yaml', dnsConfig(dns.address, Buffer.alloc(32, 0x01).toString('base64')));
    const bad = await runToEnd([CERTGATE_BIN, 'validate', '--check-dns', '--config', wrong]);
    assert.notEqual(bad.code, 0, bad.output);
    assert.match(bad.output, /provider rfc2136 failed \(step check\)/);
    assert.match(bad.output, /BADSIG/, 'what bind9 answered');
    // Without --check-dns the same file only validates: the DNS host is not asked.
    assert.equal((await runToEnd([CERTGATE_BIN, 'validate', '--config', wrong])).code, 0);

    const none = await runToEnd([CERTGATE_BIN, 'validate', '--check-dns', '--config', await configFile('dns-none.yaml', 'onDemand:\n  allow: ["a.example.com"]\n')]);
    assert.notEqual(none.code, 0, none.output);
    assert.match(none.output, /acme\.dns is not configured/);
  });
});
