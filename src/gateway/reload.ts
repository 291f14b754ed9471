// A running gateway's reload (SIGHUP; in a cluster, the config the primary sends): the live keys
// of src/config/changes.ts that changed are applied, one part at a time:
//   1. what changed since the running config, split into live and needs-a-restart
//   2. the listeners: proxy routes and default upstream, shutdownTimeout
//   3. the policy: onDemand.allow, ask and its timings, limit rates
//   4. the log level (CERTGATE_LOG_LEVEL, when set, still wins, as at start)
//   5. webhooks: endpoints, secrets, events and retry delays (deliveries already filed keep
//      their endpoint; one whose URL was removed fails at its next attempt)
// Keys that need a restart are reported, not applied: the running config keeps them, so a
// process reloaded twice compares against what it actually runs.
import { configChanges, withLiveChanges, type ConfigChanges } from '../config/changes.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import type { WebhookDispatcher } from '../webhooks/dispatcher.ts';
import type { ListenersPart } from './listeners.ts';
import { reconfigurePolicy, type PolicyPart } from './policy.ts';

/** The parts a reload reaches. */
export interface ReloadableParts {
  logger: Logger;
  listeners: ListenersPart;
  policy: PolicyPart;
  webhooks: WebhookDispatcher;
}

/**
 * A reload function for a gateway started with `config`: each call applies what changed since
 * the previous one (steps 1-5) and returns the changes. Throws when a part refuses the new
 * values; the parts applied before it keep theirs, and the next reload compares against the
 * config from before the failed one (so it applies them all again).
 */
export function createReloader(config: Config, parts: ReloadableParts): (next: Config) => ConfigChanges {
  let running = config;
  return (next) => {
    const changes = configChanges(running, next);
    const changed = (prefix: string) => changes.live.some((key) => key === prefix || key.startsWith(`${prefix}.`));
    if (changed('proxy') || changed('shutdownTimeout')) parts.listeners.reconfigure(next);
    if (changed('onDemand')) reconfigurePolicy(parts.policy, next);
    if (changed('webhooks')) parts.webhooks.reconfigure(next.webhooks);
    if (changed('log.level')) parts.logger.level = process.env.CERTGATE_LOG_LEVEL || next.log.level;
    running = withLiveChanges(running, next);
    return changes;
  };
}
