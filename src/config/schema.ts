// The configuration schema: the single source of truth for keys, defaults and messages.
// docs/config.md documents every key; keep the two in step.
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDuration } from './duration.ts';
import { isValidPattern } from '../net/patterns.ts';
import { parseCidr } from '../net/cidr.ts';
import { normalizeDomainName } from '../net/names.ts';
import { parseUpstreamTemplate } from '../net/upstream.ts';
import { DEFAULT_TLS_CIPHERS, DEFAULT_TLS_CURVES, TLS_ALPN_PROTOCOLS, TLS_MIN_VERSIONS, tlsSettingsProblem } from './tls.ts';

/** The default ACME directory when neither acme.directory nor acme.issuers is set. */
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

/** The longest wait a Node timer takes (2^31 - 1 ms, ~24.8 days); longer ones fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration something waits for with a timer: at most MAX_TIMER_MS. */
const timerDuration = (example: string) =>
  duration(example).refine((ms) => ms <= MAX_TIMER_MS, { message: 'must be at most 24 days (a longer timer would fire at once)' });

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

/** A listen address as parsed: `::` for all interfaces when the host was left empty. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses "host:port", "[v6]:port" or ":port"; undefined when it is none of those or the port is over 65535. */
export function parseListenAddress(v: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v.trim());
  if (!m) return undefined;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  if (m[1] && isIP(m[1]) !== 6) return undefined;
  return { host: host === '' ? '::' : host, port };
}

/** A CIDR or one address, as src/net/cidr.ts parses them. */
const cidr = z.string().refine((v) => parseCidr(v) !== undefined, {
  message: 'each entry must be a CIDR like "10.0.0.0/8" or "2001:db8::/32" (or one address like "10.0.0.7")',
});

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

/** An upstream origin; its host name may be a template with {host} and {tenant} (net/upstream.ts). */
const upstreamUrl = (example: string) =>
  httpUrl(example).superRefine((v, ctx) => {
    try {
      parseUpstreamTemplate(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

const hostPattern = z.string().refine(isValidPattern, {
  message: 'not a valid host pattern; use an exact name like "shop.example.com", "*.customers.example" (one label below it) or "**.customers.example" (any depth)',
});

/** A DNS ownership target: an IP address or a host name such as "edge.platform.example". */
const dnsTarget = z.string().refine((v) => isIP(v) !== 0 || normalizeDomainName(v) !== undefined, {
  message: 'each target must be an IP address like "203.0.113.10" or a host name like "edge.platform.example"',
});

/** "ip:port", "ip" (port 53), or "[v6]:port": a DNS server node:dns can use (no names: who would resolve them?). */
const dnsServer = z.string().refine((v) => isIP(v) !== 0 || isIP(parseListenAddress(v)?.host ?? '') !== 0, {
  message: 'each resolver must be an IP address with an optional port, like "127.0.0.1:8053" or "[2001:db8::1]:53"',
});

const dnsCheckSchema = z.strictObject({
  targets: z.array(dnsTarget).min(1, { message: 'list at least one target: the gateway\'s IP addresses or a host name that points at them' }),
  resolvers: z.array(dnsServer).default([]),
  match: z.enum(['all', 'any'], { message: 'must be "all" (every address must be a target) or "any"' }).default('all'),
  cacheTtl: duration('5m').prefault('5m'),
  negativeCacheTtl: duration('30s').prefault('30s'),
  staleFor: duration('1h').prefault('1h'),
  timeout: timerDuration('2s').prefault('2s'),
});

/** `onDemand.ownership`: a binding is approved only once `<prefix>.<name> TXT <token>` has been seen. */
const ownershipSchema = z.strictObject({
  method: z.literal('txt', { message: 'must be "txt" (a TXT record holding the binding\'s token)' }).default('txt'),
  prefix: z
    .string()
    .regex(/^_[a-z0-9-]{1,62}$/, { message: 'must be one DNS label starting with "_", like "_certgate"' })
    .default('_certgate'),
  resolvers: z.array(dnsServer).default([]),
  timeout: timerDuration('2s').prefault('2s'),
});

/** Token bucket: `rate` tokens per second refill, at most `burst` saved up. `false` turns it off. */
const tokenBucket = (rate: number, burst: number) =>
  z
    .union([
      z.literal(false),
      z.strictObject({
        rate: z.number({ message: 'rate must be a number of issuance-starting handshakes per second, like 2 or 0.5' }).positive({ message: 'rate must be > 0 (or set the limit to false)' }),
        burst: z.number({ message: 'burst must be a whole number like 20' }).int().min(1, { message: 'burst must be at least 1' }),
      }),
    ])
    .default({ rate, burst });

const limitsSchema = z.strictObject({
  // A waiter costs a few hundred bytes and holds no lock, and one that outlives its handshake's
  // wait is still issued in the background, so its customer's next visit succeeds: the bound is
  // set for a platform's burst of new names (a migration, a launch), not one handshake's wait. A
  // flood from one address cannot fill it alone: perClient (burst 100) stops it first.
  maxQueuedIssuances: z.number().int().min(0, { message: 'must be a whole number of issuances, 0 or more' }).default(256),
  perClient: tokenBucket(5, 100),
  global: tokenBucket(100, 1000),
  budgetShare: z
    .number({ message: 'must be a fraction of each CA budget from 0 to 1, like 0.25' })
    .gt(0, { message: 'must be a fraction of each CA budget above 0 and at most 1, like 0.25 (1: no per-client share)' })
    .max(1, { message: 'must be a fraction of each CA budget above 0 and at most 1, like 0.25 (1: no per-client share)' })
    .default(0.25),
  unknownNameCache: z.number().int().min(100, { message: 'must be at least 100 names' }).default(100_000),
});

/**
 * The events a webhook may subscribe to (`webhooks[].events`): the certificate lifecycle events
 * (src/issuance/events.ts, less issuance-started), the registry's domain-bound/-unbound, and the
 * maintainer's certificate-expiring. src/webhooks/events.ts checks at compile time that this list
 * and those vocabularies agree.
 */
export const WEBHOOK_EVENTS = ['domain-bound', 'domain-unbound', 'issuance-succeeded', 'issuance-failed', 'renewed', 'deleted', 'certificate-expiring'] as const;

/** The Standard Webhooks example schedule (after the first attempt): 5s, 5m, 30m, 2h, 5h, 10h, 10h. */
export const DEFAULT_WEBHOOK_DELAYS = ['5s', '5m', '30m', '2h', '5h', '10h', '10h'] as const;

/**
 * Whether `v` is a Standard Webhooks symmetric secret: `whsec_` and the base64 of 24 to 64 bytes
 * (the spec's 192 to 512 bits).
 */
export function isWebhookSecret(v: string): boolean {
  if (!v.startsWith('whsec_')) return false;
  const b64 = v.slice('whsec_'.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) return false;
  const bytes = Buffer.from(b64, 'base64').length;
  return bytes >= 24 && bytes <= 64;
}

const webhookSchema = z.strictObject({
  url: httpUrl('https://panel.example/hooks/certgate'),
  secret: z.string({ message: 'must be a string like "whsec_<base64>"' }).refine(isWebhookSecret, {
    message: 'must be "whsec_" followed by the base64 of 24 to 64 random bytes (Standard Webhooks); generate one with `echo whsec_$(openssl rand -base64 32)`',
  }),
  events: z
    .array(z.enum(WEBHOOK_EVENTS, { message: `each event must be one of ${WEBHOOK_EVENTS.join(', ')}` }))
    .min(1, { message: 'list at least one event (leave events out for all of them)' })
    .default([...WEBHOOK_EVENTS]),
  retry: z
    .strictObject({
      delays: z.array(timerDuration('5m')).max(20, { message: 'at most 20 retries' }).prefault([...DEFAULT_WEBHOOK_DELAYS]),
    })
    .prefault({}),
});

/** The challenge types acme.challenges may list, in the order the gateway prefers by default. */
export const CHALLENGE_TYPES = ['http-01', 'tls-alpn-01', 'dns-01'] as const;

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

/** The DNS providers acme.dns.provider may name (one file each under src/acme/dns/). */
export const DNS_PROVIDERS = ['rfc2136', 'cloudflare', 'exec'] as const;

/** `acme.dns`: where dns-01 TXT records are written and how their propagation is checked. */
const acmeDnsSchema = z
  .strictObject({
    provider: z.enum(DNS_PROVIDERS, { message: `must be one of ${DNS_PROVIDERS.join(', ')}` }),
    rfc2136: z
      .strictObject({
        server: resolverAddress,
        keyName: z.string().min(1, { message: 'must be the TSIG key name, like "certgate-key"' }),
        keyAlgorithm: z.enum(['hmac-sha256', 'hmac-sha512'], { message: 'must be "hmac-sha256" or "hmac-sha512"' }).default('hmac-sha256'),
        keySecret: z.base64({ message: 'must be the TSIG secret in base64, as in the DNS server\'s key statement' }),
        // The zone to update; found by an SOA lookup at the server when absent.
        zone: z.string().refine((v) => normalizeDomainName(v) !== undefined, { message: 'must be a DNS zone name like "platform.example"' }).optional(),
      })
      .optional(),
    cloudflare: z.strictObject({ apiToken: z.string().min(1, { message: 'must be a Cloudflare API token with Zone.DNS edit rights' }) }).optional(),
    exec: z.strictObject({ command: z.array(z.string().min(1)).min(1, { message: 'must be the command and its arguments, like ["/usr/local/bin/dns-hook"]' }) }).optional(),
    resolvers: z.array(resolverAddress).default([]),
    propagationTimeout: timerDuration('2m').prefault('2m'),
    delegation: z.strictObject({ zone: z.string().refine((v) => normalizeDomainName(v) !== undefined, { message: 'must be a DNS zone name like "dcv.platform.example"' }) }).optional(),
  })
  .superRefine((d, ctx) => {
    // The chosen provider needs its own section; the others' would be ignored, which hides typos.
    if (d[d.provider] === undefined) ctx.addIssue({ code: 'custom', path: [d.provider], message: `provider is ${d.provider}: give acme.dns.${d.provider} its settings` });
    for (const other of DNS_PROVIDERS) {
      if (other !== d.provider && d[other] !== undefined) ctx.addIssue({ code: 'custom', path: [other], message: `remove it: acme.dns.provider is ${d.provider}` });
    }
  });

/**
 * A name of a managed certificate: a name, or `*.` and a name (one label below it, the only
 * wildcard a CA issues). Normalised like onDemand.allow (lower case, punycode A-labels).
 */
const managedName = z.string().transform((v, ctx) => {
  const wildcard = v.startsWith('*.');
  const name = normalizeDomainName(wildcard ? v.slice(2) : v);
  if (name === undefined || name.includes('*')) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a certificate name; write a name like "platform.example" or "*.platform.example" (one label below it)` });
    return z.NEVER;
  }
  return wildcard ? `*.${name}` : name;
});

/**
 * `listen` keys against slow and idle clients (gateway/connections.ts applies them to both
 * listeners). Node's own defaults (5 s keep-alive, 5 min per request, no connection cap) suit
 * neither browsers nor a flood.
 */
const slowClientKeys = {
  maxConnections: z.number({ message: 'must be a whole number of connections, like 20000' }).int().min(1, { message: 'must be at least 1' }).default(20_000),
  headersTimeout: timerDuration('10s').refine((ms) => ms >= 1000, { message: 'must be at least 1s' }).prefault('10s'),
  keepAliveTimeout: timerDuration('60s').refine((ms) => ms > 0, { message: 'must be above 0: an idle connection must be closed some time' }).prefault('60s'),
  // Off by default: an upload over a slow link may legitimately take longer than any bound.
  requestTimeout: timerDuration('5m').prefault(0),
};

const configSchema = z.strictObject({
  listen: z
    .strictObject({
      https: listenAddress('0.0.0.0:443').prefault(':443'),
      http: listenAddress('0.0.0.0:80').prefault(':80'),
      // Left unset means the default 127.0.0.1:2019 (see gateway/admin.ts: then a busy port is not fatal).
      admin: z.union([z.literal(false), listenAddress('127.0.0.1:2019')]).optional(),
      // Balancers that must start their connections with a PROXY header (v1 or v2).
      proxyProtocol: z.strictObject({ trusted: z.array(cidr) }).optional(),
      ...slowClientKeys,
    })
    .superRefine((l, ctx) => {
      if (l.requestTimeout > 0 && l.requestTimeout < l.headersTimeout) {
        ctx.addIssue({ code: 'custom', path: ['requestTimeout'], message: 'must be 0 (off) or at least listen.headersTimeout: the whole request includes its headers' });
      }
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
  // SIGTERM/SIGINT: how long requests in flight may take to finish before they are cut off.
  shutdownTimeout: timerDuration('30s').prefault('30s'),
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
          delays: z.array(timerDuration('10m')).min(1, { message: 'list at least one wait, e.g. ["1m", "10m", "100m"]' }).prefault(['1m', '10m', '100m']),
          then: timerDuration('24h').prefault('24h'),
          giveUpAfter: duration('30d').prefault('30d'),
        })
        .prefault({}),
      timeout: timerDuration('90s').prefault('90s'),
      // A dead holder's name is taken over within about this long (CertMagic calls a lock stale
      // after 10 s without a refresh), while a live holder, refreshing every 2 s, rides out an
      // event-loop stall of ~8 s.
      lockTtl: timerDuration('10s').prefault('10s'),
      profile: z.string().min(1, { message: 'must be a profile name the CA advertises, like "tlsserver" or "shortlived"' }).optional(),
      dns: acmeDnsSchema.optional(),
    })
    .superRefine((a, ctx) => {
      if (a.challenges.includes('dns-01') && a.dns === undefined) {
        ctx.addIssue({ code: 'custom', path: ['challenges'], message: 'dns-01 needs acme.dns (the DNS provider that writes the TXT records); configure it or remove dns-01' });
      }
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
      askTimeout: timerDuration('10s').prefault('10s'),
      askCacheTtl: duration('5m').prefault('5m'),
      askDenyCacheTtl: duration('1m').prefault('1m'),
      handshakeWait: timerDuration('20s').prefault('20s'),
      maxConcurrentIssuances: z.number().int().min(1).max(1000).default(8),
      dns: dnsCheckSchema.optional(),
      limits: limitsSchema.prefault({}),
      registry: z.boolean().default(false),
      preflight: z
        .union([
          z.literal(false),
          z.strictObject({
            resolvers: z.array(resolverAddress).default([]),
            httpPort: z.number().int().min(1).max(65535).default(80),
            timeout: timerDuration('5s').prefault('5s'),
          }),
        ], { message: 'must be false or { resolvers: ["127.0.0.1:53"], httpPort: 80, timeout: "5s" }' })
        .default(false),
      ownership: ownershipSchema.optional(),
    })
    .superRefine((o, ctx) => {
      // The token lives in the binding: without the registry as a policy source nothing would ask for it.
      if (o.ownership && !o.registry) ctx.addIssue({ code: 'custom', path: ['ownership'], message: 'ownership verification applies to domain-registry bindings: set onDemand.registry: true too' });
    })
    .prefault({}),
  tls: z
    .strictObject({
      cacheSize: z.number().int().min(1).default(10_000),
      // Of those, how many keep a live SecureContext (~42 KiB each); the rest are ~2 KiB.
      contextCacheSize: z.number().int().min(1).default(1000),
      ticketKeyRotation: timerDuration('12h').prefault('12h'),
      fallback: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
      // A name that gets no certificate: an unrecognized_name alert (cheap under a flood) or the fallback.
      denied: z.enum(['alert', 'fallback'], { message: 'must be alert or fallback' }).default('alert'),
      // Protocol settings of the HTTPS listener; defaults: Mozilla intermediate, ECDHE + AEAD only.
      minVersion: z.enum(TLS_MIN_VERSIONS, { message: `must be one of ${TLS_MIN_VERSIONS.join(', ')}` }).default('TLSv1.2'),
      ciphers: z.string().min(1).default(DEFAULT_TLS_CIPHERS),
      curves: z.string().min(1).default(DEFAULT_TLS_CURVES),
      // The client's own time: an SNI callback waiting for issuance (onDemand.handshakeWait) is not counted.
      handshakeTimeout: timerDuration('10s').refine((ms) => ms >= 1000, { message: 'must be at least 1s' }).prefault('10s'),
      // Application protocols offered by ALPN, in preference order (acme-tls/1 is always added for tls-alpn-01).
      alpn: z
        .array(z.enum(TLS_ALPN_PROTOCOLS, { message: `each entry must be one of ${TLS_ALPN_PROTOCOLS.join(', ')}` }))
        .min(1, { message: 'list at least one protocol, e.g. ["h2", "http/1.1"]' })
        .refine((list) => new Set(list).size === list.length, { message: 'list each protocol once' })
        .default(['h2', 'http/1.1']),
    })
    .superRefine((t, ctx) => {
      const problem = tlsSettingsProblem(t);
      if (problem) ctx.addIssue({ code: 'custom', message: problem, path: ['ciphers'] });
    })
    .prefault({}),
  proxy: z
    .strictObject({
      upstream: upstreamUrl('http://127.0.0.1:8080').optional(),
      routes: z
        .array(
          z.strictObject({
            hosts: z.array(hostPattern).min(1, { message: 'a route needs at least one host' }),
            upstream: upstreamUrl('http://127.0.0.1:9090'),
          }),
        )
        .default([]),
      upstreamTimeout: timerDuration('60s').prefault('60s'),
      accessLog: z.boolean().default(true),
      upstreamAllow: z.array(cidr).optional(),
      // Clients whose X-Forwarded-For / -Proto are kept and appended to (others' are replaced).
      trustedProxies: z.array(cidr).default([]),
      strictHost: z.boolean().default(false),
      // Upstream host names are re-resolved this often, with these DNS servers (none: the system's).
      resolve: z
        .strictObject({
          interval: timerDuration('15s').refine((ms) => ms >= 100, { message: 'must be at least 100ms' }).prefault('15s'),
          resolvers: z.array(resolverAddress).default([]),
        })
        .prefault({}),
    })
    .prefault({}),
  admin: z
    .strictObject({
      token: z.string().min(16, { message: 'must be at least 16 characters; generate one with `openssl rand -hex 32`' }).optional(),
      maxEventClients: z.number().int({ message: 'must be a whole number of event stream clients, like 100' }).min(1, { message: 'must be at least 1' }).default(100),
    })
    .prefault({}),
  role: z.enum(['all', 'edge', 'maintainer'], { message: 'must be "all" (serve and maintain), "edge" (serve only) or "maintainer" (renew and clean up)' }).default('all'),
  renewal: z
    .strictObject({
      fraction: z
        .number({ message: 'must be a number between 0 and 1, like 0.33 (renew when a third of the lifetime remains)' })
        .gt(0, { message: 'must be a number between 0 and 1, like 0.33 (renew when a third of the lifetime remains)' })
        .lt(1, { message: 'must be a number between 0 and 1, like 0.33 (renew when a third of the lifetime remains)' })
        .default(0.33),
      concurrency: z.number().int().min(1, { message: 'must be a whole number of renewals from 1 to 100' }).max(100, { message: 'must be a whole number of renewals from 1 to 100' }).default(4),
      checkInterval: timerDuration('1m').prefault('1m'),
      jitter: duration('1h').prefault('1h'),
      leaderLockTtl: timerDuration('30s').prefault('30s'),
      expiredGrace: duration('7d').prefault('7d'),
      staleChallengeAge: duration('1h').prefault('1h'),
    })
    .prefault({}),
  webhooks: z.array(webhookSchema).default([]).superRefine((hooks, ctx) => {
    // A delivery names its endpoint by the URL's hash: two entries with one URL would be one endpoint.
    const seen = new Map<string, number>();
    hooks.forEach((hook, i) => {
      const first = seen.get(hook.url);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'url'], message: `${hook.url} is already webhooks[${first}]: list each URL once (with every event it wants)` });
      seen.set(hook.url, i);
    });
  }),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).prefault({}),
  certificates: z
    .array(z.strictObject({ names: z.array(managedName).min(1, { message: 'list at least one name, e.g. ["platform.example"]' }) }))
    .default([]),
}).superRefine((c, ctx) => managedCertificateProblems(c, ctx));

/**
 * `certificates`: a name in two entries is ambiguous (which certificate serves it?), and a
 * wildcard name can only be validated by dns-01, which needs `acme.dns`.
 */
function managedCertificateProblems(c: { certificates: Array<{ names: string[] }>; acme: object }, ctx: z.RefinementCtx): void {
  const seen = new Map<string, number>();
  const hasDns = (c.acme as { dns?: unknown }).dns !== undefined;
  c.certificates.forEach((entry, i) => {
    entry.names.forEach((name, j) => {
      const first = seen.get(name);
      if (first !== undefined && first !== i) ctx.addIssue({ code: 'custom', path: ['certificates', i, 'names', j], message: `${name} is already in certificates[${first}]: list each name in one entry` });
      seen.set(name, i);
      if (name.startsWith('*.') && !hasDns) {
        ctx.addIssue({ code: 'custom', path: ['certificates', i, 'names', j], message: `${name} is a wildcard: only dns-01 can validate it; configure acme.dns (a DNS provider)` });
      }
    });
  });
}

export { configSchema };
/** The config as the schema outputs it: durations in ms, defaults filled in, one-issuer shorthand expanded. */
export type Config = z.output<typeof configSchema>;
/** The config as a file may write it (durations as strings, keys optional). */
export type ConfigInput = z.input<typeof configSchema>;

/** The `onDemand` section as parsed: durations in ms, defaults filled in. */
export type OnDemandConfig = Config['onDemand'];
/** `onDemand.limits` as parsed; `false` turns a bucket off. */
export type LimitsConfig = OnDemandConfig['limits'];
/** `onDemand.dns` as parsed (present only when the DNS ownership check is on). */
export type DnsCheckConfig = NonNullable<OnDemandConfig['dns']>;
/** The `proxy` section as parsed. */
export type ProxyConfig = Config['proxy'];
/** The `admin` section as parsed (`CERTGATE_ADMIN_TOKEN` is applied by the gateway, not here). */
export type AdminConfig = Config['admin'];
/** The `acme` section as parsed: durations in ms, `issuers` always set (the shorthand expanded). */
export type AcmeConfig = Config['acme'];
/** `acme.dns` as parsed (`propagationTimeout` in ms, `resolvers` always set). */
export type AcmeDnsConfig = NonNullable<AcmeConfig['dns']>;
/** `acme.retry` as parsed: the waits after a name's failures, in ms. */
export type RetryConfig = AcmeConfig['retry'];
/** `acme.budgets` as parsed: each budget's `limit` per `window` (ms). */
export type BudgetsConfig = NonNullable<AcmeConfig['budgets']>;
/** One `acme.issuers[]` entry as parsed (`trustedRoots` are file paths, top-level ones merged in). */
export type IssuerConfig = AcmeConfig['issuers'][number];
/** One `certificates[]` entry as parsed: its names, normalised, the first being its storage key. */
export type ManagedCertificateConfig = Config['certificates'][number];
/** One `webhooks[]` entry as the schema outputs it (delays in ms). */
export type WebhookConfig = Config['webhooks'][number];
/** `onDemand.ownership` as parsed (present only when ownership verification is on). */
export type OwnershipConfig = NonNullable<OnDemandConfig['ownership']>;
/** `onDemand.preflight` as parsed when it is on. */
export type PreflightConfig = Exclude<OnDemandConfig['preflight'], false>;
