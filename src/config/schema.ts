// The configuration schema: the single source of truth for keys, defaults and messages.
// docs/config.md documents every key; keep the two in step.
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDuration } from './duration.ts';
import { isValidPattern } from '../policy/patterns.ts';

export const LETS_ENCRYPT_PRODUCTION = 'https://acme-v02.api.letsencrypt.org/directory';

const duration = (example: string) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a duration; write milliseconds or a string like "${example}"` });
      return z.NEVER;
    }
    return ms;
  });

/** "host:port", "[v6]:port" or ":port" (all interfaces). */
const listenAddress = (example: string) =>
  z.string().transform((v, ctx) => {
    const parsed = parseListenAddress(v);
    if (!parsed) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a listen address; write host:port like "${example}"` });
      return z.NEVER;
    }
    return parsed;
  });

export interface ListenAddress {
  host: string;
  port: number;
}

export function parseListenAddress(v: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v.trim());
  if (!m) return undefined;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  if (m[1] && isIP(m[1]) !== 6) return undefined;
  return { host: host === '' ? '::' : host, port };
}

const httpUrl = (example: string) =>
  z.string().refine(
    (v) => {
      try {
        const u = new URL(v);
        return u.protocol === 'http:' || u.protocol === 'https:';
      } catch {
        return false;
      }
    },
    { message: `must be an http(s) URL like "${example}"` },
  );

const hostPattern = z.string().refine(isValidPattern, {
  message: 'not a valid host pattern; use an exact name like "shop.example.com" or a wildcard like "*.customers.example"',
});

export const CHALLENGE_TYPES = ['http-01', 'tls-alpn-01'] as const;

const eabSchema = z.strictObject({ kid: z.string().min(1), hmac: z.string().min(1) });

/** A rate-limit budget: at most `limit` events per sliding `window`. */
const budget = (limit: string, window: string) =>
  z.strictObject({
    limit: z.number().int().min(1, { message: `must be a whole number of at least 1, e.g. ${limit}` }),
    window: duration(window),
  });

/** A DNS server as "host:port" (IPv6 as "[::1]:53"); a bare IP means port 53. */
const resolverAddress = z.string().refine((v) => isIP(v) !== 0 || (parseListenAddress(v) !== undefined && isIP(parseListenAddress(v)!.host) !== 0), {
  message: 'must be a DNS server IP, optionally with a port, like "127.0.0.1:8053" or "[::1]:53"',
});

const configSchema = z.strictObject({
  listen: z
    .strictObject({
      https: listenAddress('0.0.0.0:443').prefault(':443'),
      http: listenAddress('0.0.0.0:80').prefault(':80'),
    })
    .prefault({}),
  storage: z
    .strictObject({
      file: z.strictObject({ path: z.string().min(1).default('./data') }).optional(),
      redis: z
        .strictObject({
          url: z
            .string()
            .refine((v) => /^rediss?:\/\//.test(v), { message: 'must be a redis:// or rediss:// URL like "redis://127.0.0.1:6379"' })
            .optional(),
          prefix: z.string().min(1).default('certgate:'),
          sentinel: z
            .strictObject({
              name: z.string().min(1),
              sentinels: z.array(z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) })).min(1),
              password: z.string().optional(),
            })
            .optional(),
          cluster: z.strictObject({ rootNodes: z.array(z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL')).min(1) }).optional(),
        })
        .refine((r) => [r.url, r.sentinel, r.cluster].filter(Boolean).length === 1, {
          message: 'set exactly one of url, sentinel or cluster',
        })
        .optional(),
    })
    .refine((s) => !(s.file && s.redis), { message: 'choose one storage: file or redis, not both' })
    .transform((s): { redis: NonNullable<typeof s.redis>; file?: never } | { file: { path: string }; redis?: never } =>
      s.redis ? { redis: s.redis } : { file: s.file ?? { path: './data' } },
    )
    .prefault({}),
  workers: z
    .union([z.literal('auto'), z.number().int().min(1, 'must be "auto" (one per CPU) or a number of processes from 1 to 256').max(256)], {
      message: 'must be "auto" (one per CPU) or a number of processes from 1 to 256',
    })
    .default('auto'),
  acme: z
    .strictObject({
      directory: httpUrl('https://acme-v02.api.letsencrypt.org/directory').optional(),
      email: z.email({ message: 'must be an email address like "ops@example.com"' }).optional(),
      trustedRoots: z.array(z.string().min(1)).default([]),
      challenges: z
        .array(z.enum(CHALLENGE_TYPES, { message: `each challenge must be one of ${CHALLENGE_TYPES.join(', ')}` }))
        .min(1, { message: 'list at least one challenge type, e.g. ["http-01", "tls-alpn-01"]' })
        .default(['http-01', 'tls-alpn-01']),
      keyType: z.enum(['ecdsa-p256', 'rsa-2048'], { message: 'must be "ecdsa-p256" or "rsa-2048"' }).default('ecdsa-p256'),
      eab: eabSchema.optional(),
      issuers: z
        .array(
          z.strictObject({
            directory: httpUrl('https://acme.zerossl.com/v2/DV90'),
            trustedRoots: z.array(z.string().min(1)).default([]),
            eab: eabSchema.optional(),
            staging: httpUrl('https://acme-staging-v02.api.letsencrypt.org/directory').optional(),
          }),
        )
        .min(1, { message: 'list at least one issuer, e.g. [{ directory: "https://acme-v02.api.letsencrypt.org/directory" }]' })
        .optional(),
      budgets: z
        .strictObject({
          newOrders: budget('300', '3h').prefault({ limit: 300, window: '3h' }),
          certificatesPerDomain: budget('50', '7d').prefault({ limit: 50, window: '7d' }),
          duplicates: budget('5', '7d').prefault({ limit: 5, window: '7d' }),
          failedAuthorizations: budget('5', '1h').prefault({ limit: 5, window: '1h' }),
        })
        .optional(),
      retry: z
        .strictObject({
          delays: z.array(duration('10m')).min(1, { message: 'list at least one wait, e.g. ["1m", "10m", "100m"]' }).prefault(['1m', '10m', '100m']),
          then: duration('24h').prefault('24h'),
          giveUpAfter: duration('30d').prefault('30d'),
        })
        .prefault({}),
      timeout: duration('90s').prefault('90s'),
      lockTtl: duration('60s').prefault('60s'),
    })
    .superRefine((a, ctx) => {
      if (!a.issuers) return;
      for (const key of ['directory', 'eab'] as const) {
        if (a[key] !== undefined) {
          ctx.addIssue({ code: 'custom', path: [key], message: `remove it when acme.issuers is set: give each issuer its own ${key} (the first issuer is the preferred CA)` });
        }
      }
    })
    // acme.directory / eab / trustedRoots are the one-issuer shorthand of acme.issuers. Top-level
    // trustedRoots are trusted for every issuer.
    .transform((a) => {
      const issuers = (a.issuers ?? [{ directory: a.directory ?? LETS_ENCRYPT_PRODUCTION, trustedRoots: [], ...(a.eab ? { eab: a.eab } : {}) }]).map((i) => ({
        ...i,
        trustedRoots: [...a.trustedRoots, ...i.trustedRoots],
      }));
      return { ...a, directory: issuers[0]!.directory, issuers };
    })
    .prefault({}),
  onDemand: z
    .strictObject({
      allow: z.array(hostPattern).default([]),
      ask: httpUrl('http://127.0.0.1:9000/allow').optional(),
      askTimeout: duration('10s').prefault('10s'),
      askCacheTtl: duration('5m').prefault('5m'),
      askDenyCacheTtl: duration('1m').prefault('1m'),
      handshakeWait: duration('20s').prefault('20s'),
      maxConcurrentIssuances: z.number().int().min(1).max(1000).default(8),
      preflight: z
        .union([
          z.literal(false),
          z.strictObject({
            resolvers: z.array(resolverAddress).default([]),
            httpPort: z.number().int().min(1).max(65535).default(80),
            timeout: duration('5s').prefault('5s'),
          }),
        ], { message: 'must be false or { resolvers: ["127.0.0.1:53"], httpPort: 80, timeout: "5s" }' })
        .default(false),
    })
    .prefault({}),
  tls: z
    .strictObject({
      cacheSize: z.number().int().min(1).default(10_000),
      ticketKeyRotation: duration('12h').prefault('12h'),
      fallback: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
    })
    .prefault({}),
  proxy: z
    .strictObject({
      upstream: httpUrl('http://127.0.0.1:8080').optional(),
      routes: z
        .array(
          z.strictObject({
            hosts: z.array(hostPattern).min(1, { message: 'a route needs at least one host' }),
            upstream: httpUrl('http://127.0.0.1:9090'),
          }),
        )
        .default([]),
      upstreamTimeout: duration('60s').prefault('60s'),
      accessLog: z.boolean().default(true),
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).prefault({}),
});

export { configSchema };
export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
