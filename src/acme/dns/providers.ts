// Picks the DNS provider `acme.dns.provider` names and builds it from its own section
// (`acme.dns.rfc2136`, `.cloudflare`, `.exec`). A new provider is one file beside this one and one
// branch here. The zod schema of `acme.dns` (src/config/schema.ts) gives sections of the option
// types each provider file exports.
import { CloudflareProvider, type CloudflareOptions } from './cloudflare.ts';
import { ExecProvider, type ExecOptions } from './exec.ts';
import { DnsProviderError, type DnsProvider } from './provider.ts';
import { Rfc2136Provider, type Rfc2136Options } from './rfc2136.ts';

/** The providers `acme.dns.provider` may name. */
export type DnsProviderName = 'rfc2136' | 'cloudflare' | 'exec';

/** The provider part of `acme.dns`: which provider, and its section (the others are ignored). */
export interface DnsProviderSection {
  provider: DnsProviderName;
  rfc2136?: Rfc2136Options;
  cloudflare?: CloudflareOptions;
  exec?: ExecOptions;
}

/** What createDnsProvider passes on; every field is optional (defaults are per provider). */
export interface DnsProviderDeps {
  /** Bound on one exchange with the DNS host (UPDATE, API request, hook run), ms. */
  timeoutMs?: number;
  /** Cloudflare API base URL (tests point it at a local fake). */
  cloudflareBaseUrl?: string;
}

/**
 * The provider `section.provider` names, built from its section. Throws a DnsProviderError
 * (step "config") when that section is missing; nothing is contacted until the first call.
 */
export function createDnsProvider(section: DnsProviderSection, deps: DnsProviderDeps = {}): DnsProvider {
  const missing = (): DnsProviderError =>
    new DnsProviderError(`acme.dns.provider is ${section.provider} but acme.dns.${section.provider} is not set`, 'config', section.provider);
  const timeoutMs = deps.timeoutMs;
  switch (section.provider) {
    case 'rfc2136':
      if (!section.rfc2136) throw missing();
      return new Rfc2136Provider(section.rfc2136, { timeoutMs });
    case 'cloudflare':
      if (!section.cloudflare) throw missing();
      return new CloudflareProvider(section.cloudflare, { timeoutMs, baseUrl: deps.cloudflareBaseUrl });
    case 'exec':
      if (!section.exec) throw missing();
      return new ExecProvider(section.exec, { timeoutMs });
    default:
      throw new DnsProviderError(`acme.dns.provider ${String(section.provider)} is not one of rfc2136, cloudflare, exec`, 'config', String(section.provider));
  }
}
