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
      directory: httpUrl('https://acme-v02.api.letsencrypt.org/directory').default(LETS_ENCRYPT_PRODUCTION),
      email: z.email({ message: 'must be an email address like "ops@example.com"' }).optional(),
      trustedRoots: z.array(z.string().min(1)).default([]),
      challenges: z
        .array(z.enum(CHALLENGE_TYPES, { message: `each challenge must be one of ${CHALLENGE_TYPES.join(', ')}` }))
        .min(1, { message: 'list at least one challenge type, e.g. ["http-01", "tls-alpn-01"]' })
        .default(['http-01', 'tls-alpn-01']),
      keyType: z.enum(['ecdsa-p256', 'rsa-2048'], { message: 'must be "ecdsa-p256" or "rsa-2048"' }).default('ecdsa-p256'),
      eab: z.strictObject({ kid: z.string().min(1), hmac: z.string().min(1) }).optional(),
      timeout: duration('90s').prefault('90s'),
      lockTtl: duration('60s').prefault('60s'),
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
    })
    .prefault({}),
  tls: z
    .strictObject({
      cacheSize: z.number().int().min(1).default(10_000),
      // Of those, how many keep a live SecureContext (~42 KiB each); the rest are ~2 KiB.
      contextCacheSize: z.number().int().min(1).default(1000),
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
