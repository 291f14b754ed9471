// DCV delegation (`acme.dns.delegation.zone`): a customer delegates the dns-01 challenge of their
// name to a zone the platform controls, so the platform can validate the name (and wildcards
// below it) before its A/AAAA records point here.
//   1. the record the customer creates: `_acme-challenge.<name> CNAME <name>.<delegation zone>`
//      (for `*.alice.com` the challenge name is that of `alice.com`, RFC 8555 §8.4)
//   2. ready: the CNAME is answered with exactly that target (asked of `acme.dns.resolvers` when
//      set, else the system's resolvers); anything else is "not ready", never an error, so a
//      caller can tell the customer which record is missing
//   3. the dns-01 solver then writes the TXT at the target (dns01.ts, `recordName`), and the
//      propagation check asks the target zone's servers; the CA follows the CNAME
import { createResolver } from '../../net/resolver.ts';

/** The record a customer creates to delegate validation of one name (the admin API's `dcv` field). */
export interface DcvRecord {
  /** `_acme-challenge.<name>` (a wildcard's is its base name's). */
  name: string;
  type: 'CNAME';
  /** `<name>.<delegation zone>`. */
  target: string;
}

/** One query's time-out; two tries so one lost UDP packet is not a miss. */
const QUERY_TIMEOUT_MS = 2_000;

/** The delegation zone, and whom to ask whether a customer's CNAME is in place. */
export class DcvDelegation {
  /**
   * `zone`: acme.dns.delegation.zone (normalised, no trailing dot); `resolvers`: acme.dns.resolvers
   * ("ip", "ip:port"; empty: the system's).
   */
  constructor(
    readonly zone: string,
    private readonly resolvers: readonly string[] = [],
  ) {}

  /** Step 1: the CNAME `name` (normalised; `*.x` for a wildcard) needs. */
  record(name: string): DcvRecord {
    const base = name.toLowerCase().replace(/\.$/, '').replace(/^\*\./, '');
    return { name: `_acme-challenge.${base}`, type: 'CNAME', target: `${base}.${this.zone}` };
  }

  /** Step 2: whether the CNAME of `name` is answered with its target. Never rejects (a failed lookup: false). */
  async ready(name: string): Promise<boolean> {
    const { name: fqdn, target } = this.record(name);
    const resolver = createResolver(this.resolvers, { timeoutMs: QUERY_TIMEOUT_MS });
    try {
      const answers = await resolver.resolveCname(fqdn);
      return answers.some((a) => a.toLowerCase().replace(/\.$/, '') === target);
    } catch {
      return false;
    }
  }
}
