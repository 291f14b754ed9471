// What one on-demand issuance does, counted (issue 19, item 3): every storage call (by method and
// kind of key), every ACME request (through the tests' logging proxy, by kind), and every log line
// at the default level. One in-process gateway on file storage against a fresh Pebble; a warm-up
// name first (the ACME account), then N new names one at a time, each a first HTTPS request.
//
//   node --import tsx bench/issuance-ops.ts [names=10]
//
// Counts, not times: the list bench/README.md ("Issuance: what one certificate costs") keeps.
import { startAcmeProxy } from '../test/support/acme-proxy.ts';
import { httpsGet } from '../test/support/clients.ts';
import { CountingStorage, startTestGateway } from '../test/support/gateway.ts';
import { capturingLogger } from '../test/support/log-lines.ts';
import { startPebbleOnFreePorts } from '../test/support/pebble.ts';
import { echoHandler, startUpstream } from '../test/support/upstream.ts';
import type { Lock, LockOptions, PutEntry, PutOptions } from '../src/storage/storage.ts';

const names = Number(process.argv[2] ?? 10);

/** A storage key with the name, the CA id, the token and the hour bucket replaced by placeholders. */
function keyKind(key: string): string {
  return key
    .replace(/[a-z0-9-]+\.ops\.test/g, '<name>')
    .replace(/^(certificates|budgets)\/[^/]+/, '$1/<ca>')
    .replace(/^(index\/(renewal|expiry))\/[^/]+/, '$1/<hour>')
    .replace(/^challenges\/http-01\/.*/, 'challenges/http-01/<token>');
}

/** Records each call as `<method> <key kind>` beside CountingStorage's totals. */
class KindCounts extends CountingStorage {
  readonly calls = new Map<string, number>();
  private note(method: string, key: string): void {
    const k = `${method} ${keyKind(key)}`;
    this.calls.set(k, (this.calls.get(k) ?? 0) + 1);
  }
  override get(key: string) {
    this.note('get', key);
    return super.get(key);
  }
  override put(key: string, value: Buffer | string, opts?: PutOptions) {
    this.note(opts?.durable === false ? 'put (not durable)' : 'put', key);
    return super.put(key, value, opts);
  }
  override putMany(entries: readonly PutEntry[]) {
    this.note('putMany', entries.map((e) => keyKind(e.key)).join(' + '));
    return super.putMany(entries);
  }
  override delete(key: string) {
    this.note('delete', key);
    return super.delete(key);
  }
  override lock(name: string, opts: LockOptions): Promise<Lock> {
    this.note('lock', name);
    return super.lock(name, opts);
  }
  override tryLock(name: string, opts: LockOptions) {
    this.note('tryLock', name);
    return super.tryLock(name, opts);
  }
}

const { pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts({ env: { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' } });
const proxy = await startAcmeProxy(pebble);
const upstream = await startUpstream(echoHandler('ops'));
const { logger, lines } = capturingLogger('debug');
const gw = await startTestGateway({
  pebble: { ...pebble, directoryUrl: proxy.directoryUrl },
  httpsPort,
  httpPort,
  logger,
  config: {
    acme: { challenges: ['http-01'], keyType: 'ecdsa-p256' },
    onDemand: { allow: ['*.ops.test'] },
    proxy: { upstream: `http://127.0.0.1:${upstream.port}`, accessLog: false },
  },
});
try {
  await httpsGet('warm.ops.test', httpsPort, root);
  // Count from here: the wrapper's own map is replaced by a fresh one around the same storage.
  const counting = gw.storage;
  const kinds = new KindCounts(counting.inner);
  // The gateway holds `counting`; route its calls through `kinds` for the measured names.
  for (const method of ['get', 'put', 'putMany', 'delete', 'lock', 'tryLock'] as const) {
    (counting as unknown as Record<string, unknown>)[method] = (kinds[method] as (...a: unknown[]) => unknown).bind(kinds);
  }
  proxy.reset();
  const firstLine = lines.length;
  for (let i = 0; i < names; i++) {
    const res = await httpsGet(`n${i}.ops.test`, httpsPort, root);
    if (res.status !== 200) throw new Error(`n${i}.ops.test: HTTP ${res.status}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 500)); // lock releases and logs after the answer
  const per = (n: number): string => (n / names).toFixed(2).replace(/\.00$/, '');
  console.log(`per issued certificate, over ${names} names (in-process gateway, file storage, Pebble):\n`);
  console.log('storage calls:');
  for (const [k, n] of [...kinds.calls].sort()) console.log(`  ${per(n).padStart(5)}  ${k}`);
  const byKind = new Map<string, number>();
  for (const x of proxy.exchanges()) byKind.set(`${x.method} ${x.kind}`, (byKind.get(`${x.method} ${x.kind}`) ?? 0) + 1);
  console.log(`\nACME requests (${per(proxy.exchanges().length)} per certificate):`);
  for (const [k, n] of [...byKind].sort()) console.log(`  ${per(n).padStart(5)}  ${k}`);
  const logged = lines.slice(firstLine);
  const levels: Record<number, string> = { 20: 'debug', 30: 'info', 40: 'warn', 50: 'error' };
  const byMsg = new Map<string, number>();
  for (const l of logged) {
    const k = `${levels[l.level as number] ?? String(l.level)}: ${l.msg ?? ''}`;
    byMsg.set(k, (byMsg.get(k) ?? 0) + 1);
  }
  const atInfo = logged.filter((l) => (l.level as number) >= 30).length;
  console.log(`\nlog lines (${per(atInfo)} at info and above per certificate, ${per(logged.length - atInfo)} at debug):`);
  for (const [k, n] of [...byMsg].sort()) console.log(`  ${per(n).padStart(5)}  ${k}`);
} finally {
  await gw.close();
  await upstream.close();
  await proxy.close();
  await pebble.stop();
}
