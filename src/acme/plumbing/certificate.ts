// Certificates at the CA (RFC 8555 §7.4.2, §7.6): downloading the chain of a valid order, and
// revoking a certificate with the account that ordered it.
import type { AcmeAccount } from './account.ts';
import { orderDomains, type AcmeOrder } from './order.ts';
import { protocolError } from './transport.ts';

/** DER of the first certificate in a PEM text, or undefined when it holds none. */
export function leafDer(certPem: string): Buffer | undefined {
  const leaf = /-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/.exec(certPem);
  return leaf ? Buffer.from(leaf[1]!.replace(/\s+/g, ''), 'base64') : undefined;
}

/** Downloads the certificate chain of a valid order: PEM, leaf first, ending in a newline. */
export async function downloadCertificate(account: AcmeAccount, order: AcmeOrder): Promise<string> {
  const ctx = { step: 'download', domain: orderDomains(order) };
  if (!order.certificate) throw protocolError('order has no certificate URL', ctx);
  const res = await account.post(order.certificate, undefined, ctx, { accept: 'application/pem-certificate-chain' });
  if (!res.text.includes('-----BEGIN CERTIFICATE-----')) {
    throw protocolError(`certificate download is not PEM: ${res.text.slice(0, 100)}`, ctx, res.status);
  }
  return res.text.endsWith('\n') ? res.text : `${res.text}\n`;
}

/**
 * Revokes a certificate (§7.6), signed with the account key: the account must be the one that
 * ordered it (or hold authorizations for all its names). `reason` is an RFC 5280 CRLReason code
 * (0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation).
 */
export async function revokeCertificate(account: AcmeAccount, certPem: string, opts: { reason?: number; domain?: string } = {}): Promise<void> {
  const ctx = { step: 'revoke', domain: opts.domain };
  const dir = await account.directory.get();
  if (!dir.revokeCert) throw protocolError('the CA directory has no revokeCert', ctx);
  const der = leafDer(certPem);
  if (!der) throw new Error(`revokeCertificate: no PEM certificate given (domain ${opts.domain ?? '?'}, step revoke)`);
  const payload: Record<string, unknown> = { certificate: der.toString('base64url') };
  if (opts.reason !== undefined) payload.reason = opts.reason;
  await account.post(dir.revokeCert, payload, ctx);
}
