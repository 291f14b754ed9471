// Rate-limit budgets, counted together by every instance on the storage, so the cluster never
// runs into the CA's own limits (defaults: Let's Encrypt's published ones). Each budget is a
// sliding-window log of timestamps per scope, changed under a short storage lock; orders are
// rare, so a read-modify-write per order is cheap. ARI renewals that carry `replaces` are
// exempt, as at Let's Encrypt. Without `acme.budgets` in the config only Let's Encrypt's
// directories are budgeted (their limits are not other CAs' limits); with it, every issuer is.
//
// Client share (onDemand.limits.budgetShare): an order started by a handshake also counts
// against its client address's share of the budgets that many names draw on (newOrders, and
// certificatesPerDomain, counted per order), so one address spending its share gets the
// fallback while other clients' names still get certificates. Counted in storage like the
// budgets themselves: a client spreading its handshakes over instances gets one share, not one
// per instance. The per-name budgets (duplicates, failedAuthorizations) are one name's alone.
//
// Storage:  budgets/<ca>/<budget>/<scope>                     JSON array of ms timestamps inside the window
//           budgets/<ca>/<budget>-per-client/<scope>/<client>  the same, for one client address
import type { BudgetsConfig, LimitsConfig } from '../config/schema.ts';
import type { Logger } from '../util/log.ts';
import { keys } from '../storage/keys.ts';
import { getJson, type Storage } from '../storage/storage.ts';
import { commonJsExports } from '../util/commonjs.ts';

/** One of the budgets of `acme.budgets` (BudgetsConfig, each `limit` per `window` ms): newOrders (scope: the CA's account), certificatesPerDomain (registered domain), duplicates and failedAuthorizations (the name). */
export type BudgetName = keyof BudgetsConfig;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Let's Encrypt's published limits: the default budgets for its directories (the schema's defaults too). */
export const LETS_ENCRYPT_BUDGETS: BudgetsConfig = {
  newOrders: { limit: 300, window: 3 * HOUR },
  certificatesPerDomain: { limit: 50, window: 7 * DAY },
  duplicates: { limit: 5, window: 7 * DAY },
  failedAuthorizations: { limit: 5, window: HOUR },
};

/** What the budgets work with besides their config; `now` and `cas` are for tests and the default budgets. */
export interface RateBudgetsDeps {
  storage: Storage;
  logger: Logger;
  /** The clock (ms since epoch); default Date.now. */
  now?: () => number;
  /** The CAs (ids) these budgets apply to; undefined = every CA. */
  cas?: ReadonlySet<string> | undefined;
}

/**
 * Why an order was not started: which budget (or client share of it) is spent, and until when.
 */
export interface BudgetRefusal {
  budget: BudgetName;
  scope: string;
  limit: number;
  windowMs: number;
  /** When the oldest counted event leaves the window. */
  freesAt: Date;
  /** Set when it is this client address's share of the budget that is spent, not the budget. */
  client?: string;
}

/** Budgets many names draw on, of which one client address gets only a share. */
const SHARED_BUDGETS: ReadonlySet<BudgetName> = new Set(['newOrders', 'certificatesPerDomain']);

/** One sliding-window log: a budget's, or one client's share of it. */
interface Counter {
  budget: BudgetName;
  /** Storage and lock name of the log: the budget, or `<budget>-per-client`. */
  log: string;
  /** What is counted (the budget's scope, plus `/<client>` for a share). */
  key: string;
  /** The budget's scope, for refusals and log lines. */
  scope: string;
  limit: number;
  windowMs: number;
  client?: string;
}

/** What is left of a budget for a scope now, for /metrics and the admin API. */
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

/**
 * The budgets of the header, counted in storage. beginOrder before an order (null: go ahead),
 * recordIssued and recordFailedAuthorization after; their failures are the caller's to log.
 */
export class RateBudgets {
  private readonly storage: Storage;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly cas: ReadonlySet<string> | undefined;
  /**
   * onDemand.limits.budgetShare: the fraction (0-1] of newOrders and certificatesPerDomain
   * one client address may spend per window (at least one order); 1 = no share of its own.
   */
  private readonly clientShare: number;

  /** `budgets`: acme.budgets as parsed (or LETS_ENCRYPT_BUDGETS); `limits`: onDemand.limits as parsed. */
  constructor(
    private readonly budgets: BudgetsConfig,
    limits: Pick<LimitsConfig, 'budgetShare'>,
    deps: RateBudgetsDeps,
  ) {
    this.storage = deps.storage;
    this.logger = deps.logger;
    this.now = deps.now ?? Date.now;
    this.cas = deps.cas;
    this.clientShare = limits.budgetShare;
  }

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
    const { limit, window: windowMs } = this.budgets[budget];
    const log = await this.read(ca, this.counter(budget, await this.scopeOf(budget, domain)));
    const left = Math.max(0, limit - log.length);
    return { remaining: left, limit, ...(left === 0 && log.length > 0 ? { freesAt: new Date(log[log.length - limit]! + windowMs) } : {}) };
  }

  /**
   * Before a new order for `domain` at `ca`: checks every budget and, if all have room, counts
   * the order against newOrders. With `client` (the address whose handshake wants the name),
   * that client's share of newOrders and certificatesPerDomain must have room too, and the order
   * is counted against both shares. Returns the budget (or share) that is spent, logging it
   * once, or null.
   */
  async beginOrder(ca: string, domain: string, opts: { exempt?: boolean; client?: string | undefined } = {}): Promise<BudgetRefusal | null> {
    if (opts.exempt || !this.appliesTo(ca)) return null;
    const client = this.clientShare < 1 ? opts.client : undefined;
    for (const budget of ['failedAuthorizations', 'duplicates', 'certificatesPerDomain'] as const) {
      const counter = this.counter(budget, await this.scopeOf(budget, domain));
      const refusal = this.refusal(counter, await this.read(ca, counter));
      if (refusal) return this.refused(ca, domain, refusal);
    }
    const taken = [this.counter('newOrders', await this.scopeOf('newOrders', domain))];
    if (client !== undefined) {
      for (const budget of SHARED_BUDGETS) taken.push(this.counter(budget, await this.scopeOf(budget, domain), client));
    }
    const refusal = await this.take(ca, taken);
    return refusal ? this.refused(ca, domain, refusal) : null;
  }

  /** After a certificate was issued: counts it per registered domain and as a duplicate. */
  async recordIssued(ca: string, domain: string, opts: { exempt?: boolean } = {}): Promise<void> {
    if (opts.exempt || !this.appliesTo(ca)) return;
    await this.record(ca, this.counter('certificatesPerDomain', await this.scopeOf('certificatesPerDomain', domain)));
    await this.record(ca, this.counter('duplicates', await this.scopeOf('duplicates', domain)));
  }

  async recordFailedAuthorization(ca: string, domain: string): Promise<void> {
    if (!this.appliesTo(ca)) return;
    await this.record(ca, this.counter('failedAuthorizations', await this.scopeOf('failedAuthorizations', domain)));
  }

  /** The log of a budget's scope, or (with `client`) of that client's share of it. */
  private counter(budget: BudgetName, scope: string, client?: string): Counter {
    const { limit, window: windowMs } = this.budgets[budget];
    if (client === undefined) return { budget, log: budget, key: scope, scope, limit, windowMs };
    return {
      budget,
      log: `${budget}-per-client`,
      // IPv6 colons and anything odd become '_': a storage-safe file name on every backend.
      key: `${scope}/${client.replace(/[^0-9A-Za-z.-]/g, '_')}`,
      scope,
      limit: Math.max(1, Math.floor(limit * this.clientShare)),
      windowMs,
      client,
    };
  }

  private refused(ca: string, domain: string, refusal: BudgetRefusal): BudgetRefusal {
    const freesAt = refusal.freesAt.toISOString();
    const fields = { domain, step: 'budget', ca, budget: refusal.budget, scope: refusal.scope, limit: refusal.limit, windowMs: refusal.windowMs, freesAt };
    if (refusal.client !== undefined) {
      this.logger.warn(
        { ...fields, client: refusal.client },
        `rate-limit budget ${refusal.budget}: client ${refusal.client} spent its share (${refusal.limit} per ${refusal.windowMs / 1000}s for ${refusal.scope}, onDemand.limits.budgetShare); no order for it until ${freesAt}`,
      );
    } else {
      this.logger.warn(fields, `rate-limit budget ${refusal.budget} spent (${refusal.limit} per ${refusal.windowMs / 1000}s for ${refusal.scope}); no order until ${freesAt}`);
    }
    return refusal;
  }

  private refusal(counter: Counter, log: number[]): BudgetRefusal | null {
    const { budget, scope, limit, windowMs, client } = counter;
    if (log.length < limit) return null;
    return { budget, scope, limit, windowMs, freesAt: new Date(log[log.length - limit]! + windowMs), ...(client !== undefined ? { client } : {}) };
  }

  /**
   * Counts one event in every counter if each has room, else in none and returns the first
   * refusal. The locks are taken in the given order (the budget before its client shares), the
   * same order on every instance, so two orders never wait on each other's locks.
   */
  private async take(ca: string, counters: Counter[]): Promise<BudgetRefusal | null> {
    const logs: number[][] = [];
    const step = async (i: number): Promise<BudgetRefusal | null> => {
      if (i === counters.length) {
        for (const [j, log] of logs.entries()) {
          log.push(this.now());
          await this.write(ca, counters[j]!, log);
        }
        return null;
      }
      return this.underLock(ca, counters[i]!, async () => {
        const log = await this.read(ca, counters[i]!);
        const refusal = this.refusal(counters[i]!, log);
        if (refusal) return refusal;
        logs.push(log);
        return step(i + 1);
      });
    };
    return step(0);
  }

  private async record(ca: string, counter: Counter): Promise<void> {
    await this.underLock(ca, counter, async () => {
      const log = await this.read(ca, counter);
      log.push(this.now());
      await this.write(ca, counter, log);
    });
  }

  private async underLock<T>(ca: string, counter: Counter, work: () => Promise<T>): Promise<T> {
    const lock = await this.storage.lock(`budget/${ca}/${counter.log}/${counter.key}`, { ttlMs: LOCK_TTL_MS, waitMs: 3 * LOCK_TTL_MS, pollMs: 20 });
    try {
      return await work();
    } finally {
      await lock.release();
    }
  }

  /** The timestamps still inside the window, oldest first. */
  private async read(ca: string, counter: Counter): Promise<number[]> {
    const log = await getJson<unknown>(this.storage, keys.budgetLog(ca, counter.log, counter.key));
    const since = this.now() - counter.windowMs;
    return Array.isArray(log) ? (log.filter((t) => typeof t === 'number' && t > since) as number[]).sort((a, b) => a - b) : [];
  }

  private async write(ca: string, counter: Counter, log: number[]): Promise<void> {
    // Only the newest `limit` entries can ever matter.
    await this.storage.put(keys.budgetLog(ca, counter.log, counter.key), JSON.stringify(log.slice(-counter.limit)));
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
