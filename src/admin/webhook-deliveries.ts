// GET /v1/webhooks/deliveries?status=&cursor=&limit=: the webhook deliveries in storage (every
// instance's), one page at a time, so an operator sees what did not get through and why.
import type { Storage } from '../storage/storage.ts';
import { DELIVERY_STATUSES, listDeliveries, type DeliveryStatus } from '../webhooks/deliveries.ts';

const MAX_PAGE = 1000;

/**
 * The page the query asks for, or `{ error, field }` (the caller answers 400) for a status other
 * than pending|delivered|failed, a limit outside 1-1000, or a cursor that no page returned.
 */
export async function webhookDeliveries(
  storage: Storage,
  query: URLSearchParams,
): Promise<Awaited<ReturnType<typeof listDeliveries>> | { error: string; field: string }> {
  const status = query.get('status');
  if (status !== null && !DELIVERY_STATUSES.includes(status as DeliveryStatus)) return { error: `status must be one of ${DELIVERY_STATUSES.join(', ')}`, field: 'status' };
  const limitText = query.get('limit');
  const limit = limitText === null ? 100 : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) return { error: `limit must be a whole number from 1 to ${MAX_PAGE}`, field: 'limit' };
  const cursor = query.get('cursor') ?? '';
  if (cursor !== '' && !/^msg_[0-9a-f]{32}-[0-9a-f]{16}$/.test(cursor)) return { error: 'cursor must be the nextCursor of a previous page', field: 'cursor' };
  return listDeliveries(storage, { ...(status !== null ? { status: status as DeliveryStatus } : {}), ...(cursor ? { cursor } : {}), limit });
}
