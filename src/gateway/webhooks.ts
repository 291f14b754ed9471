// The webhooks part: one dispatcher per gateway process (src/webhooks/dispatcher.ts).
//   1. built from `webhooks` (none configured: it files and polls nothing, and a reload that adds
//      some starts it working)
//   2. observes the manager's certificate events and the registry's changes made here
//   3. polls for deliveries (its own and other instances'); closed before storage is
//   4. on an instance that maintains: the leader's certificate-expiring scan and retention sweep
import type { Config } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import type { Storage } from '../storage/storage.ts';
import { WebhookDispatcher } from '../webhooks/dispatcher.ts';
import type { IssuancePart } from './issuance.ts';
import type { PolicyPart } from './policy.ts';

/** Steps 1-4: the running dispatcher; `reconfigure(config.webhooks)` applies a reload. */
export function openWebhooks(config: Config, deps: { storage: Storage; logger: Logger; policy: PolicyPart; issuance: IssuancePart }, stack: AsyncDisposableStack): WebhookDispatcher {
  const dispatcher = new WebhookDispatcher({ storage: deps.storage, logger: deps.logger, webhooks: config.webhooks });
  dispatcher.observe(deps.issuance.manager.events, deps.policy.registry);
  dispatcher.start();
  stack.defer(() => dispatcher.close());
  deps.issuance.maintainer?.addTask('webhook-leader-task', () => dispatcher.leaderTask());
  return dispatcher;
}
