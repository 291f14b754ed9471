// Orders (RFC 8555 §7.4): what certificate is wanted, which authorizations it needs, and the
// finalize/certificate URLs. An order goes pending → ready (all authorizations valid) →
// processing (CSR sent) → valid (certificate URL set), or invalid.
import { isIP } from 'node:net';
import type { AcmeAccount } from './account.ts';
import type { AcmeDirectory } from './directory.ts';
import { AcmeError, ACME_ERROR, isAcmeError, type AcmeIdentifier, type AcmeProblem } from './errors.ts';
import { base64url } from './jws.ts';
import { DEFAULT_WAIT_MS, poll, type WaitOptions } from './poll.ts';
import { header, protocolError, requireJson, requireLocation, type RequestContext } from './transport.ts';

/** The order states of §7.1.6. */
export type OrderStatus = 'pending' | 'ready' | 'processing' | 'valid' | 'invalid';

/** An order object (§7.1.3) plus its own URL. */
export interface AcmeOrder {
  /** The order URL (Location of newOrder). */
  url: string;
  status: OrderStatus;
  expires?: string;
  identifiers: AcmeIdentifier[];
  notBefore?: string;
  notAfter?: string;
  error?: AcmeProblem;
  /** Authorization URLs, one per identifier. */
  authorizations: string[];
  finalize: string;
  /** Set once the order is valid. */
  certificate?: string;
  profile?: string;
  replaces?: string;
}

/** A DNS identifier for a name, an IP identifier (RFC 8738) for an address. */
export function identifierFor(domain: string): AcmeIdentifier {
  return { type: isIP(domain) ? 'ip' : 'dns', value: domain };
}

/** The names of an order, comma-joined, as errors and logs name them. */
export function orderDomains(order: Pick<AcmeOrder, 'identifiers'>): string {
  return order.identifiers?.map((i) => i.value).join(',');
}

/** Profiles already warned about, per directory (one warning per CA and profile). */
const profileWarnings = new WeakMap<object, Set<string>>();

/**
 * Places an order for `domains`. A `profile` the directory does not advertise is left out (with
 * one warning per CA and profile) rather than have the CA refuse the order. `replaces` is the
 * RFC 9773 certificate ID this order renews; only the CA that issued it accepts it.
 */
export async function newOrder(account: AcmeAccount, domains: string[], opts: { profile?: string; replaces?: string } = {}): Promise<AcmeOrder> {
  const ctx = { step: 'new-order', domain: domains.join(',') };
  if (domains.length === 0) throw new Error('newOrder: no domains (step new-order)');
  const dir = await account.directory.get();
  const payload: Record<string, unknown> = { identifiers: domains.map(identifierFor) };
  if (opts.profile !== undefined) {
    if (dir.meta?.profiles && Object.hasOwn(dir.meta.profiles, opts.profile)) payload.profile = opts.profile;
    else warnUnadvertisedProfile(account, opts.profile, dir, ctx.domain);
  }
  if (opts.replaces !== undefined) payload.replaces = opts.replaces;
  const res = await account.post(dir.newOrder, payload, ctx);
  const url = requireLocation(res, ctx, account.directory.url);
  return { ...requireJson<Omit<AcmeOrder, 'url'>>(res, ctx), url };
}

function warnUnadvertisedProfile(account: AcmeAccount, profile: string, dir: AcmeDirectory, domain: string): void {
  let warned = profileWarnings.get(account.directory);
  if (!warned) profileWarnings.set(account.directory, (warned = new Set()));
  if (warned.has(profile)) return;
  warned.add(profile);
  const advertised = Object.keys(dir.meta?.profiles ?? {});
  account.transport.log.warn(
    { domain, step: 'new-order', profile, advertised },
    `ACME profile "${profile}" is not advertised by ${account.directory.url}; orders are placed without a profile`,
  );
}

/** The order's current state (POST-as-GET). */
export async function getOrder(account: AcmeAccount, url: string): Promise<AcmeOrder> {
  const ctx = { step: 'order' };
  const res = await account.post(url, undefined, ctx);
  return { ...requireJson<Omit<AcmeOrder, 'url'>>(res, ctx), url };
}

/**
 * Waits for the order to be ready (if pending), POSTs the CSR to finalize and polls until the
 * order is valid; one deadline (`timeoutMs`, default 60 s) covers all three. Returns the valid
 * order, whose `certificate` URL is set. `authorized`: the caller has just seen every
 * authorization valid, so a pending order is finalized at once (orderNotReady: waited for).
 */
export async function finalizeOrder(account: AcmeAccount, order: AcmeOrder, csrDer: Uint8Array, opts: WaitOptions & { authorized?: boolean } = {}): Promise<AcmeOrder> {
  const domain = orderDomains(order);
  const ctx = { step: 'finalize', domain };
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_WAIT_MS);
  const remaining = (): WaitOptions => ({ ...opts, timeoutMs: Math.max(1, deadline - Date.now()) });
  const finalize = async (): Promise<AcmeOrder> => {
    const res = await account.post(order.finalize, { csr: base64url(csrDer) }, ctx, { signal: opts.signal });
    return { ...requireJson<Omit<AcmeOrder, 'url'>>(res, ctx), url: order.url };
  };
  let current = order;
  if (current.status === 'pending' && opts.authorized) {
    // Every authorization was just seen valid, so the order is ready (§7.1.6): finalize without
    // polling it first (one request less per order). A CA that has not caught up answers
    // orderNotReady: then wait for it as below.
    current = await finalize().catch((err: unknown) => {
      if (isAcmeError(err, 'orderNotReady')) return order;
      throw err;
    });
  }
  if (current.status === 'pending') current = await waitForOrder(account, order.url, ['ready', 'valid', 'processing'], remaining(), ctx);
  if (current.status === 'ready') current = await finalize();
  if (current.status !== 'valid') current = await waitForOrder(account, order.url, ['valid'], remaining(), ctx);
  if (!current.certificate) throw protocolError('order is valid but has no certificate URL', ctx);
  return current;
}

/** Polls the order until its status is one of `wanted`; invalid (or ready when not wanted) throws. */
function waitForOrder(account: AcmeAccount, url: string, wanted: OrderStatus[], opts: WaitOptions, ctx: RequestContext): Promise<AcmeOrder> {
  return poll<AcmeOrder>(
    account.transport,
    async (signal) => {
      const res = await account.post(url, undefined, ctx, { signal });
      const order = { ...requireJson<Omit<AcmeOrder, 'url'>>(res, ctx), url };
      if (wanted.includes(order.status)) return { done: order };
      if (order.status === 'invalid' || (order.status === 'ready' && !wanted.includes('ready'))) {
        throw new AcmeError({
          type: order.error?.type ?? `${ACME_ERROR}orderNotReady`,
          status: order.error?.status ?? res.status,
          detail: order.error?.detail ?? `order is ${order.status}`,
          step: ctx.step,
          domain: ctx.domain,
          subproblems: order.error?.subproblems,
        });
      }
      return { retryAfter: header(res, 'retry-after') };
    },
    { ...opts, step: ctx.step, domain: ctx.domain },
  );
}
