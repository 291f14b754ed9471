// TLS session ticket keys shared by every worker and instance on one storage, so a client
// resumes its session whichever process its next connection lands on. Nobody distributes
// keys: each process derives the key of the current period from one secret kept in storage
// (created once, under a lock), so all of them switch at the same instant without talking.
// Node takes a single ticket key, so tickets from the previous period fall back to a full
// handshake once — the price of rotation.
import { hkdfSync, randomBytes } from 'node:crypto';
import type { Logger } from '../util/log.ts';
import { keys } from '../storage/keys.ts';
import type { Storage } from '../storage/storage.ts';

/** Node's ticket key length (setTicketKeys takes exactly 48 bytes). */
export const TICKET_KEY_BYTES = 48;

/**
 * The ticket key of `period`, derived from the shared secret (HKDF): the same on every process.
 */
export function ticketKeyFor(secret: Buffer, period: number): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'certgate tls ticket keys', `period ${period}`, TICKET_KEY_BYTES));
}

/**
 * The shared ticket secret from storage, created once under a storage lock. Keep it private:
 * anyone holding it can decrypt recorded sessions' tickets.
 */
export async function loadTicketSecret(storage: Storage): Promise<Buffer> {
  const existing = await storage.get(keys.ticketSecret);
  if (existing && existing.length >= 32) return existing;
  const lock = await storage.lock(keys.ticketSecretLock, { ttlMs: 30_000 });
  try {
    const raced = await storage.get(keys.ticketSecret);
    if (raced && raced.length >= 32) return raced;
    const secret = randomBytes(32);
    await storage.put(keys.ticketSecret, secret, { private: true });
    return secret;
  } finally {
    await lock.release();
  }
}

/** A server whose ticket key can be set (node:tls and node:https servers are). */
export interface TicketKeyTarget {
  setTicketKeys(keys: Buffer): void;
}

/** Keeps the servers' ticket key at the current period's; returns a stop function. */
export function rotateTicketKeys(servers: TicketKeyTarget[], secret: Buffer, periodMs: number, logger: Logger): () => void {
  let timer: NodeJS.Timeout | undefined;
  const apply = () => {
    const period = Math.floor(Date.now() / periodMs);
    const key = ticketKeyFor(secret, period);
    for (const server of servers) server.setTicketKeys(key);
    logger.debug({ step: 'ticket-keys', period }, 'TLS session ticket key set');
    // Wake just after the next boundary.
    timer = setTimeout(apply, (period + 1) * periodMs - Date.now() + 5);
    timer.unref();
  };
  apply();
  return () => clearTimeout(timer);
}
