// A webhook receiver for tests: a real HTTP server on 127.0.0.1 that checks every request the
// way a Standard Webhooks consumer must, with its own verifier written from the spec (not the
// code under test): HMAC-SHA256 with the base64-decoded part of `whsec_...`, over
// `${webhook-id}.${webhook-timestamp}.${body}`, any `v1,<base64>` of the space-separated
// signature list matching in constant time, and the timestamp within 5 minutes of now.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startUpstream, type FakeUpstream } from './upstream.ts';

/** One request as received: verified or not, and the parsed payload. */
export interface ReceivedWebhook {
  id: string;
  timestamp: number;
  verified: boolean;
  body: string;
  payload: { type: string; timestamp: string; data: Record<string, unknown> };
  status: number;
}

/** The receiver: its URL, what it got, and how it answers (by how often it has seen an id). */
export interface WebhookReceiver {
  url: string;
  readonly received: ReceivedWebhook[];
  /** The status to answer the `n`th (1-based) request carrying webhook-id `id`; default 204. */
  answer: (id: string, n: number, payload: ReceivedWebhook['payload']) => number;
  /** Requests of one event type, in arrival order. */
  ofType(type: string): ReceivedWebhook[];
  /** Resolves with the requests once `predicate` holds, or rejects after `timeoutMs`. */
  waitFor(predicate: (received: ReceivedWebhook[]) => boolean, timeoutMs: number, what: string): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

const TOLERANCE_S = 5 * 60;

/** The spec's verification: true when one v1 signature matches and the timestamp is fresh. */
export function verifyStandardWebhook(secret: string, headers: IncomingMessage['headers'], body: string, nowMs = Date.now()): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signatures !== 'string') return false;
  if (!/^\d+$/.test(timestamp) || Math.abs(nowMs / 1000 - Number(timestamp)) > TOLERANCE_S) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return signatures.split(' ').some((entry) => {
    const [version, sig] = entry.split(',', 2);
    if (version !== 'v1' || sig === undefined) return false;
    const given = Buffer.from(sig, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

/** Starts a receiver checking signatures against `secret`. */
export async function startWebhookReceiver(secret: string): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  const seen = new Map<string, number>();
  const receiver: WebhookReceiver = {
    url: '',
    received,
    answer: () => 204,
    ofType: (type) => received.filter((r) => r.payload.type === type),
    async waitFor(predicate, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(received)) {
        if (Date.now() > deadline) throw new Error(`webhook receiver: ${what} not seen within ${timeoutMs} ms; got ${JSON.stringify(received.map((r) => [r.payload.type, r.id, r.status]))}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return received;
    },
    close: () => upstream.close(),
  };
  const upstream: FakeUpstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const id = String(req.headers['webhook-id']);
      const n = (seen.get(id) ?? 0) + 1;
      seen.set(id, n);
      const payload = JSON.parse(body) as ReceivedWebhook['payload'];
      const status = receiver.answer(id, n, payload);
      received.push({ id, timestamp: Number(req.headers['webhook-timestamp']), verified: verifyStandardWebhook(secret, req.headers, body), body, payload, status });
      res.writeHead(status).end();
    });
  });
  receiver.url = `${upstream.origin}/hooks`;
  return receiver;
}
