// What the dns-01 solver needs of a DNS host: add one TXT value at a name, and remove exactly that
// value again. One file per provider beside this one (rfc2136, cloudflare, exec) implements it, so
// a new DNS host is one file. Providers never replace a name's other TXT values: concurrent
// orders in one zone (and other tools) may have their own values at the same name.

/** A DNS host the dns-01 solver writes challenge records through. */
export interface DnsProvider {
  /** Short name for logs and errors ("rfc2136", "cloudflare", "exec"). */
  readonly name: string;
  /**
   * Adds `value` to the TXT records at `fqdn` (no trailing dot, lower case), keeping any other
   * values there; resolves once the provider's own server accepted it (propagation to every
   * authoritative server is the solver's to check). Adding a value that is already there succeeds.
   * Throws a DnsProviderError naming the step and what the DNS host answered.
   */
  present(fqdn: string, value: string): Promise<void>;
  /** Removes exactly `value` from the TXT records at `fqdn`; removing one that is gone succeeds. */
  cleanup(fqdn: string, value: string): Promise<void>;
  /** Checks the credentials and reachability without changing anything (`certgate validate --check-dns`). */
  check?(): Promise<void>;
}

/** Why a DNS host refused or could not be reached; `step` names what was being done. */
export class DnsProviderError extends Error {
  constructor(
    message: string,
    /** present, cleanup, check, zone (finding the zone), propagation. */
    readonly step: string,
    /** The provider ("rfc2136", ...). */
    readonly provider: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DnsProviderError';
  }
}
