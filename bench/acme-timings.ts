// The CA's share of each issuance, from the exchanges the ACME proxy in front of each gateway's
// Pebble recorded (test/support/acme-proxy.ts: timed at the wire, attributed to the order's
// domain). Per domain:
//   windowMs  newOrder received → certificate download answered (what the CA side of one issuance
//             spans, including the time Pebble waits for the client's next poll and for its own
//             validation of the gateway's challenge answer)
//   busyMs    sum over that domain's requests of Pebble's own answer time (CA work proper)
// The proxy costs each request a loopback hop (well under a millisecond here); both gateways pay it.
import type { AcmeExchangeRecord } from '../test/support/acme-proxy.ts';

export interface DomainTiming {
  domain: string;
  windowMs: number;
  busyMs: number;
  requests: number;
  /** The order's requests: kind, start ms after newOrder, Pebble ms. */
  timeline: [string, number, number][];
}

export function domainTimings(exchanges: readonly AcmeExchangeRecord[]): Map<string, DomainTiming> {
  const byDomain = new Map<string, AcmeExchangeRecord[]>();
  for (const e of exchanges) {
    if (!e.domain) continue;
    const list = byDomain.get(e.domain) ?? [];
    list.push(e);
    byDomain.set(e.domain, list);
  }
  const out = new Map<string, DomainTiming>();
  for (const [domain, list] of byDomain) {
    const order = list.find((e) => e.kind === 'newOrder');
    const certs = list.filter((e) => e.kind === 'certificate' && e.status === 200);
    if (!order || certs.length === 0) continue;
    const end = Math.max(...certs.map((e) => e.t1));
    const inWindow = list.filter((e) => e.t0 >= order.t0 && e.t1 <= end);
    out.set(domain, {
      domain,
      windowMs: end - order.t0,
      busyMs: inWindow.reduce((sum, e) => sum + e.caMs, 0),
      requests: inWindow.length,
      timeline: inWindow.map((e) => [e.kind, Math.round(e.t0 - order.t0), Math.round(e.caMs * 10) / 10]),
    });
  }
  return out;
}
