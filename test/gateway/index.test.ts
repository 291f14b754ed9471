// startGateway's one disposal stack (issue 14): whatever a start opened is closed when a later
// step fails, and close() closes all of it; nothing is left subscribed on the cluster bus, the
// ports are free again, and a storage the caller passed in stays open (it is the caller's).
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startGateway } from '../../src/gateway/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { LocalBus, type ClusterBus } from '../../src/storage/bus.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { parse } from '../support/config.ts';
import { freePort } from '../support/ports.ts';
import { tmpDir } from '../support/tmp.ts';

/** An in-process bus that counts the subscriptions still open. */
class CountingBus implements ClusterBus {
  readonly inner = new LocalBus();
  open = 0;
  publish(channel: string, message: string): Promise<void> {
    return this.inner.publish(channel, message);
  }
  async subscribe(channel: string, handler: (message: string) => void): Promise<() => Promise<void>> {
    const unsubscribe = await this.inner.subscribe(channel, handler);
    this.open++;
    return async () => {
      this.open--;
      await unsubscribe();
    };
  }
}

/** Resolves when `port` on 127.0.0.1 can be bound (and releases it again). */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ host: '127.0.0.1', port }, () => probe.close(() => resolve(true)));
  });
}

async function gatewayConfig(extra: Record<string, unknown> = {}) {
  return parse({
    listen: { https: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}`, admin: false },
    acme: { directory: 'https://127.0.0.1:9/dir' },
    ...extra,
  });
}

describe('startGateway on one disposal stack', () => {
  test('close() leaves no bus subscription and frees both ports; the caller\'s storage stays open', async (t) => {
    const storage = await FileStorage.open(await tmpDir(t, 'certgate-gateway-'));
    t.after(() => storage.close());
    const bus = new CountingBus();
    const config = await gatewayConfig();
    const gateway = await startGateway(config, { storage, bus, logger: silentLogger() });
    assert.ok(bus.open > 0, 'the registry and the manager listen on the bus while running');
    await gateway.close();
    assert.equal(bus.open, 0);
    assert.equal(await bindable(gateway.httpsPort), true);
    assert.equal(await bindable(gateway.httpPort), true);
    await storage.put('still-open', 'yes');
    assert.equal((await storage.get('still-open'))?.toString(), 'yes');
  });

  test('a start that fails after the policy and issuance parts opened closes them (no bus subscription left)', async (t) => {
    const dir = await tmpDir(t, 'certgate-gateway-');
    const storage = await FileStorage.open(join(dir, 'data'));
    t.after(() => storage.close());
    const bus = new CountingBus();
    // The fallback certificate is loaded after the registry and the manager subscribed.
    const config = await gatewayConfig({ tls: { fallback: { cert: join(dir, 'missing-cert.pem'), key: join(dir, 'missing-key.pem') } } });
    await assert.rejects(startGateway(config, { storage, bus, logger: silentLogger() }), /missing-cert\.pem|missing-key\.pem/);
    assert.equal(bus.open, 0);
  });

  test('an admin API port that is taken fails the start and releases the traffic ports it had bound', async (t) => {
    const storage = await FileStorage.open(await tmpDir(t, 'certgate-gateway-'));
    t.after(() => storage.close());
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen({ host: '127.0.0.1', port: 0 }, resolve));
    t.after(() => taken.close());
    const adminPort = (taken.address() as { port: number }).port;
    const config = await gatewayConfig();
    const bus = new CountingBus();
    const withAdmin = { ...config, listen: { ...config.listen, admin: { host: '127.0.0.1', port: adminPort } } };
    await assert.rejects(startGateway(withAdmin, { storage, bus, logger: silentLogger() }), /admin API: /);
    assert.equal(bus.open, 0);
    assert.equal(await bindable(config.listen.https.port), true);
    assert.equal(await bindable(config.listen.http.port), true);
  });
});
