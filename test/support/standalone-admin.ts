// The admin API started on its own, for tests (issue 14): a file storage in a temp dir, a domain
// registry and a certificate manager with a stand-in issuer; no gateway, no listeners, no CA.
import type { TestContext } from 'node:test';
import type { AcmeIssuer, IssuedCertificate } from '../../src/acme/issuer.ts';
import { createSelfSignedCertificate } from '../../src/acme/x509.ts';
import { startAdminServer, type AdminServer, type AdminServerDeps } from '../../src/admin/server.ts';
import type { AdminConfig } from '../../src/config/schema.ts';
import { silentLogger } from '../../src/util/log.ts';
import { OnDemandPolicy } from '../../src/policy/policy.ts';
import { DomainRegistry } from '../../src/policy/registry.ts';
import { UpstreamAllowList } from '../../src/proxy/upstream-allow.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { CertificateCache } from '../../src/tls/cache.ts';
import { CertificateManager } from '../../src/issuance/manager.ts';
import { managerConfig, onDemandSection, parse } from './config.ts';
import { tmpDir } from './tmp.ts';

const TOKEN = 'standalone-token-0123456789';
const LOOPBACK = { host: '127.0.0.1', port: 0 };

/** Issues self-signed certificates at once; remembers what it was asked for. */
export class StandInIssuer {
  readonly ca = 'stand-in-ca';
  readonly directory = 'https://ca.test/dir';
  readonly calls: string[] = [];
  async issue(domain: string): Promise<IssuedCertificate> {
    this.calls.push(domain);
    const { certPem, keyPem } = await createSelfSignedCertificate(domain, { days: 30 });
    return { certPem, keyPem, keyType: 'ecdsa-p256', challenge: 'http-01', orderUrl: `https://ca.test/order/${domain}` };
  }
}

/** The admin section as the schema outputs it, `raw` over the defaults. */
export const adminSection = (raw: Record<string, unknown> = {}): AdminConfig => parse({ admin: raw }).admin;

/** The admin API on 127.0.0.1 (any port) over a fresh file storage; closed after the test. `admin` defaults to a token of 'standalone-token-0123456789'. */
export async function standalone(t: TestContext, admin: AdminConfig = adminSection({ token: TOKEN }), extra: Partial<Pick<AdminServerDeps, 'listenersUp' | 'ui'>> = {}) {
  const storage = await FileStorage.open(await tmpDir(t, 'certgate-admin-'));
  const logger = silentLogger();
  const registry = new DomainRegistry({ storage, logger });
  const policy = new OnDemandPolicy(onDemandSection({ registry: true }), { logger, registry });
  const issuer = new StandInIssuer();
  const cache = new CertificateCache(100);
  const manager = new CertificateManager(managerConfig({ onDemand: { maxConcurrentIssuances: 2 } }), { storage, issuer: issuer as unknown as AcmeIssuer, policy, cache, logger });
  const server: AdminServer = await startAdminServer(LOOPBACK, admin, {
    storage,
    registry,
    manager,
    cache,
    events: manager.events,
    logger,
    upstreamAllow: new UpstreamAllowList({}),
    ...extra,
  });
  t.after(async () => {
    await server.close();
    await registry.close();
    await storage.close();
  });
  return { server, issuer, cache, storage, registry, manager };
}

