// Pre-flight self-check before any order for an on-demand name: resolve the name the way the
// CA will (configured resolvers) and make sure an HTTP probe to every address reaches THIS
// cluster. A name that points elsewhere would only burn a failed validation (and, repeated, the
// CA's failed-authorization limit), so it gets no order at all.
//
// The probe asks http://<address>:<httpPort>/.well-known/certgate-preflight/<token> with
// Host: <name>; the token's answer is in storage, so any instance sharing it answers correctly.
//
// Storage:  preflight/<token>   the expected answer (deleted after the probe)
import { randomBytes } from 'node:crypto';
import type { Resolver } from 'node:dns/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { PreflightConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';
import { StoredTokens } from '../storage/tokens.ts';
import { LruCache } from '../util/lru.ts';
import { request } from '../util/node-http.ts';
import { answerOf, createResolver } from '../net/resolver.ts';

/** The path under which every instance answers pre-flight probes (PreflightResponder). */
export const PREFLIGHT_PREFIX = '/.well-known/certgate-preflight/';
const TOKEN = /^[A-Za-z0-9_-]{16,128}$/;
/** At most this many addresses are probed (every one must reach us). */
const MAX_ADDRESSES = 4;

/** What the pre-flight check works with besides `onDemand.preflight`; the TTLs are for tests. */
export interface PreflightDeps {
  logger: Logger;
  /** How long a name that passed is not probed again. */
  passTtlMs?: number;
  /** How long a refusal is remembered (handshakes for the name get the fallback meanwhile). */
  failTtlMs?: number;
}

/** check()'s answer: every address reached us (ok), or why not (the name gets no order). */
export type PreflightResult = { ok: true; addresses: string[] } | { ok: false; reason: string };

/** Answers probe tokens on every instance's HTTP listener. */
export class PreflightResponder {
  private readonly tokens: StoredTokens;

  constructor(storage: Storage, logger: Logger) {
    this.tokens = new StoredTokens({
      storage,
      logger,
      prefix: PREFLIGHT_PREFIX,
      keyOf: keys.preflightToken,
      tokenPattern: TOKEN,
      contentType: 'text/plain',
      unknownBody: 'unknown pre-flight token\n',
      step: 'preflight-answer',
    });
  }

  /** A probe token for `domain`. */
  async create(domain: string): Promise<{ token: string; answer: string; remove: () => Promise<void> }> {
    const token = randomBytes(18).toString('base64url');
    const answer = randomBytes(18).toString('base64url');
    await this.tokens.set(token, answer, domain);
    return { token, answer, remove: () => this.tokens.delete(token) };
  }

  /** Handles the request if it is a pre-flight probe; returns false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    return this.tokens.handle(req, res);
  }
}

/**
 * The pre-flight check of the header; results are remembered per name (passed 5 min, failed
 * 30 s by default). check() never rejects: a check that cannot run is a failed check.
 */
export class Preflight {
  private readonly resolver: Resolver;
  private readonly results = new LruCache<string, PreflightResult>(100_000);

  /** `preflight`: onDemand.preflight as parsed (resolvers, the http-01 port, the probe timeout). */
  constructor(
    private readonly preflight: PreflightConfig,
    private readonly deps: PreflightDeps,
    private readonly responder: PreflightResponder,
  ) {
    this.resolver = createResolver(preflight.resolvers, { timeoutMs: Math.min(preflight.timeout, 5000) });
  }

  /** Whether `domain` resolves to addresses that all reach this cluster. Never rejects. */
  async check(domain: string): Promise<PreflightResult> {
    const cached = this.results.get(domain);
    if (cached) return cached;
    const started = performance.now();
    let result: PreflightResult;
    try {
      result = await this.probe(domain);
    } catch (err) {
      result = { ok: false, reason: `pre-flight could not run: ${(err as Error).message}` };
    }
    const ms = Math.round(performance.now() - started);
    if (result.ok) {
      this.results.set(domain, result, this.deps.passTtlMs ?? 300_000);
      this.deps.logger.info({ domain, step: 'preflight', ok: true, addresses: result.addresses, ms }, 'pre-flight self-check passed');
    } else {
      this.results.set(domain, result, this.deps.failTtlMs ?? 30_000);
      this.deps.logger.warn({ domain, step: 'preflight', ok: false, reason: result.reason, ms }, `pre-flight self-check failed: no order for ${domain}: ${result.reason}`);
    }
    return result;
  }

  /** Forget a cached result (an operator fixed DNS and asks again). */
  forget(domain: string): void {
    this.results.delete(domain);
  }

  private async probe(domain: string): Promise<PreflightResult> {
    const addresses = await this.resolve(domain);
    if (addresses.length === 0) return { ok: false, reason: `${domain} has no A or AAAA record at ${this.describeResolvers()}` };
    const probe = await this.responder.create(domain);
    try {
      for (const address of addresses.slice(0, MAX_ADDRESSES)) {
        const got = await this.fetch(address, domain, probe.token).catch((err: Error) => ({ error: err.message }));
        if ('error' in got) return { ok: false, reason: `${domain} resolves to ${address}, which did not answer on port ${this.preflight.httpPort}: ${got.error}` };
        if (got.status !== 200 || got.body !== probe.answer) {
          return { ok: false, reason: `${domain} resolves to ${address}, which is not this cluster (probe answered HTTP ${got.status})` };
        }
      }
      return { ok: true, addresses };
    } finally {
      await probe.remove().catch(() => undefined);
    }
  }

  private async resolve(domain: string): Promise<string[]> {
    // A resolver failure stops the pre-flight (no order), saying where it asked.
    const lookup = (query: Promise<string[]>): Promise<string[]> =>
      answerOf(query).catch((err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code;
        throw new Error(`DNS lookup of ${domain} at ${this.describeResolvers()} failed: ${code ?? (err as Error).message}`, { cause: err });
      });
    const [v6, v4] = await Promise.all([lookup(this.resolver.resolve6(domain)), lookup(this.resolver.resolve4(domain))]);
    // CAs try IPv6 first.
    return [...v6, ...v4];
  }

  private fetch(address: string, domain: string, token: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: address,
          family: isIP(address),
          port: this.preflight.httpPort,
          path: PREFLIGHT_PREFIX + token,
          headers: { host: domain, 'user-agent': 'certgate-preflight' },
          timeout: this.preflight.timeout,
          agent: false,
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (body.length < 1024) body += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`timed out after ${this.preflight.timeout} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  private describeResolvers(): string {
    return this.preflight.resolvers.length > 0 ? this.preflight.resolvers.join(', ') : 'the system resolvers';
  }
}
