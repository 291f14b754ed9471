// Rate-limit budgets, counted together by every instance on the storage, so the cluster never
// runs into the CA's own limits (defaults: Let's Encrypt's published ones). Each budget is a
// sliding-window log of timestamps per scope, changed under a short storage lock; orders are
// rare, so a read-modify-write per order is cheap. ARI renewals that carry `replaces` are
// exempt, as at Let's Encrypt. Without `acme.budgets` in the config only Let's Encrypt's
// directories are budgeted (their limits are not other CAs' limits); with it, every issuer is.
//
// Storage:  budgets/<ca>/<budget>/<scope>   JSON array of ms timestamps inside the window
import type { Logger } from '../log.ts';
import { keys } from '../storage/layout.ts';
import { getJson, type Storage } from '../storage/storage.ts';
import { commonJsExports } from '../util/commonjs.ts';

export interface BudgetLimit {
  limit: number;
  windowMs: number;
}

export interface BudgetsConfig {
  /** New orders per ACME account (scope: the CA). */
  newOrders: BudgetLimit;
  /** Certificates per registered domain (public suffix + 1, private suffixes count). */
  certificatesPerDomain: BudgetLimit;
  /** Certificates for exactly the same name. */
  duplicates: BudgetLimit;
  /** Failed validations per name. */
  failedAuthorizations: BudgetLimit;
}

export type BudgetName = keyof BudgetsConfig;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

export const LETS_ENCRYPT_BUDGETS: BudgetsConfig = {
  newOrders: { limit: 300, windowMs: 3 * HOUR },
  certificatesPerDomain: { limit: 50, windowMs: 7 * DAY },
  duplicates: { limit: 5, windowMs: 7 * DAY },
  failedAuthorizations: { limit: 5, windowMs: HOUR },
};

export interface BudgetRefusal {
  budget: BudgetName;
  scope: string;
  limit: number;
  windowMs: number;
  /** When the oldest counted event leaves the window. */
  freesAt: Date;
}

export interface BudgetRemaining {
  remaining: number;
  limit: number;
  /** When the next slot frees (only when remaining is 0). */
  freesAt?: Date;
}

const LOCK_TTL_MS = 10_000;

/** Let's Encrypt's directories: their published limits are the default budgets. */
export function isLetsEncrypt(directory: string): boolean {
  return /(^|\.)api\.letsencrypt\.org$/i.test(new URL(directory).hostname);
}

export class RateBudgets {
  constructor(
    private readonly storage: Storage,
    private readonly config: BudgetsConfig,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
    /** The CAs (ids) these budgets apply to; undefined = every CA. */
    private readonly cas?: ReadonlySet<string>,
  ) {}

  /** Whether orders from `ca` are budgeted at all. */
  appliesTo(ca: string): boolean {
    return this.cas === undefined || this.cas.has(ca);
  }

  /** What a budget is counted by, for a name ordered from `ca`. */
  async scopeOf(budget: BudgetName, domain: string): Promise<string> {
    switch (budget) {
      case 'newOrders':
        return 'account';
      case 'certificatesPerDomain':
        return (await registeredDomain(domain)) ?? domain;
      case 'duplicates':
      case 'failedAuthorizations':
        return domain;
    }
  }

  /** For metrics and the admin API: how much of a budget is left for this name at `ca`. */
  async remaining(budget: BudgetName, ca: string, domain: string): Promise<BudgetRemaining> {
    const { limit, windowMs } = this.config[budget];
    const log = await this.read(budget, ca, await this.scopeOf(budget, domain));
    const left = Math.max(0, limit - log.length);
    return { remaining: left, limit, ...(left === 0 && log.length > 0 ? { freesAt: new Date(log[log.length - limit]! + windowMs) } : {}) };
  }

  /**
   * Before a new order for `domain` at `ca`: checks every budget and, if all have room, counts
   * the order against newOrders. Returns the budget that is spent (and logs it once), or null.
   */
  async beginOrder(ca: string, domain: string, opts: { exempt?: boolean } = {}): Promise<BudgetRefusal | null> {
    if (opts.exempt || !this.appliesTo(ca)) return null;
    for (const budget of ['failedAuthorizations', 'duplicates', 'certificatesPerDomain'] as const) {
      const scope = await this.scopeOf(budget, domain);
      const refusal = this.refusal(budget, scope, await this.read(budget, ca, scope));
      if (refusal) return this.refused(ca, domain, refusal);
    }
    const refusal = await this.take('newOrders', ca, await this.scopeOf('newOrders', domain));
    return refusal ? this.refused(ca, domain, refusal) : null;
  }

  /** After a certificate was issued: counts it per registered domain and as a duplicate. */
  async recordIssued(ca: string, domain: string, opts: { exempt?: boolean } = {}): Promise<void> {
    if (opts.exempt || !this.appliesTo(ca)) return;
    await this.record('certificatesPerDomain', ca, await this.scopeOf('certificatesPerDomain', domain));
    await this.record('duplicates', ca, await this.scopeOf('duplicates', domain));
  }

  async recordFailedAuthorization(ca: string, domain: string): Promise<void> {
    if (!this.appliesTo(ca)) return;
    await this.record('failedAuthorizations', ca, await this.scopeOf('failedAuthorizations', domain));
  }

  private refused(ca: string, domain: string, refusal: BudgetRefusal): BudgetRefusal {
    this.logger.warn(
      { domain, step: 'budget', ca, budget: refusal.budget, scope: refusal.scope, limit: refusal.limit, windowMs: refusal.windowMs, freesAt: refusal.freesAt.toISOString() },
      `rate-limit budget ${refusal.budget} spent (${refusal.limit} per ${refusal.windowMs / 1000}s for ${refusal.scope}); no order until ${refusal.freesAt.toISOString()}`,
    );
    return refusal;
  }

  private refusal(budget: BudgetName, scope: string, log: number[]): BudgetRefusal | null {
    const { limit, windowMs } = this.config[budget];
    if (log.length < limit) return null;
    return { budget, scope, limit, windowMs, freesAt: new Date(log[log.length - limit]! + windowMs) };
  }

  /** Counts one event if the budget has room; otherwise returns the refusal. */
  private async take(budget: BudgetName, ca: string, scope: string): Promise<BudgetRefusal | null> {
    return this.underLock(budget, ca, scope, async () => {
      const log = await this.read(budget, ca, scope);
      const refusal = this.refusal(budget, scope, log);
      if (refusal) return refusal;
      log.push(this.now());
      await this.write(budget, ca, scope, log);
      return null;
    });
  }

  private async record(budget: BudgetName, ca: string, scope: string): Promise<void> {
    await this.underLock(budget, ca, scope, async () => {
      const log = await this.read(budget, ca, scope);
      log.push(this.now());
      await this.write(budget, ca, scope, log);
    });
  }

  private async underLock<T>(budget: BudgetName, ca: string, scope: string, work: () => Promise<T>): Promise<T> {
    const lock = await this.storage.lock(`budget/${ca}/${budget}/${scope}`, { ttlMs: LOCK_TTL_MS, waitMs: 3 * LOCK_TTL_MS, pollMs: 20 });
    try {
      return await work();
    } finally {
      await lock.release();
    }
  }

  /** The timestamps still inside the window, oldest first. */
  private async read(budget: BudgetName, ca: string, scope: string): Promise<number[]> {
    const log = await getJson<unknown>(this.storage, keys.budgetLog(ca, budget, scope));
    const since = this.now() - this.config[budget].windowMs;
    return Array.isArray(log) ? (log.filter((t) => typeof t === 'number' && t > since) as number[]).sort((a, b) => a - b) : [];
  }

  private async write(budget: BudgetName, ca: string, scope: string, log: number[]): Promise<void> {
    // Only the newest `limit` entries can ever matter.
    await this.storage.put(keys.budgetLog(ca, budget, scope), JSON.stringify(log.slice(-this.config[budget].limit)));
  }
}

let tldts: Promise<typeof import('tldts')> | undefined;

/**
 * The registered domain (public suffix + one label, private suffixes included) of a name.
 * tldts and its suffix list (~35 ms to load) are loaded at the first budgeted order, not at start-up.
 */
async function registeredDomain(domain: string): Promise<string | null> {
  tldts ??= import('tldts').then(commonJsExports);
  return (await tldts).getDomain(domain, { allowPrivateDomains: true });
}
