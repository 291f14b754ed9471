// Caddy's ACME accounts, moved in with its certificates so that what it issued can be revoked
// (with the account that ordered it) and renewed with ARI `replaces` (the CA may require the
// same account). Per configured issuer:
//
//   certgate has an account (accounts/<ca>/<acme.email or "default">/) → it is kept (reported
//     `kept`): one account per CA is all certgate's storage records, so revoking a certificate
//     Caddy's account ordered then needs an account the CA accepts for it (RFC 8555 §7.6)
//   none → Caddy's account for acme.email (else its first, by email) becomes certgate's: its key
//     (0600) and account URL, written under the account lock a starting gateway takes to register
import { createPrivateKey } from 'node:crypto';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';
import type { CaddyAccount } from './caddy.ts';
import { parsePrivateKey } from './import.ts';

/** What happened to the accounts of one issuer. */
export interface AccountOutcome {
  ca: string;
  /** imported: Caddy's account is now certgate's; kept: certgate already had one; unreadable: Caddy's key did not parse. */
  result: 'imported' | 'kept' | 'unreadable';
  /** The Caddy account (its folder) imported or passed over. */
  source: string;
  detail?: string;
}

/**
 * Moves in one Caddy account per issuer for which certgate has none (see the header); `email`
 * is acme.email. With `dryRun` nothing is written (the outcome says what would be).
 */
export async function importAccounts(storage: Storage, accounts: CaddyAccount[], email: string | undefined, dryRun: boolean): Promise<AccountOutcome[]> {
  const byCa = new Map<string, CaddyAccount[]>();
  for (const a of accounts) byCa.set(a.issuer.ca, [...(byCa.get(a.issuer.ca) ?? []), a]);
  const outcomes: AccountOutcome[] = [];
  for (const [ca, found] of byCa) {
    const chosen = found.find((a) => a.email === (email ?? 'default')) ?? found[0]!;
    if (await storage.get(keys.accountKey(ca, email))) {
      outcomes.push({ ca, result: 'kept', source: chosen.source, detail: `certgate's account for ${email ?? 'default'} is kept` });
      continue;
    }
    let keyPem: string;
    try {
      keyPem = parsePrivateKey(chosen.keyPem).export({ type: 'pkcs8', format: 'pem' }).toString();
      createPrivateKey(keyPem);
    } catch (err) {
      outcomes.push({ ca, result: 'unreadable', source: chosen.source, detail: err instanceof Error ? err.message : String(err) });
      continue;
    }
    if (!dryRun) await storeAccount(storage, ca, chosen, keyPem, email);
    outcomes.push({ ca, result: 'imported', source: chosen.source });
  }
  return outcomes;
}

async function storeAccount(storage: Storage, ca: string, account: CaddyAccount, keyPem: string, email: string | undefined): Promise<void> {
  const lock = await storage.lock(keys.accountLock(ca), { ttlMs: 60_000, waitMs: 120_000 });
  try {
    // A gateway may have registered one while we read Caddy's: keep it.
    if (await storage.get(keys.accountKey(ca, email))) return;
    await storage.put(keys.accountKey(ca, email), keyPem, { private: true });
    // The shape src/acme/issuer.ts reads; without `url` the key finds its account again (newAccount).
    const stored = { ...(account.url ? { url: account.url } : {}), directory: account.issuer.directory, ...(email ? { email } : {}), createdAt: new Date().toISOString(), importedFrom: account.source };
    await storage.put(keys.account(ca, email), JSON.stringify(stored, null, 2) + '\n');
  } catch (err) {
    throw new Error(`import of the ACME account for ${ca} from ${account.source} failed (step: store-account): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    await lock.release().catch(() => undefined);
  }
}
