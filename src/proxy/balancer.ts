// Spreading requests over the addresses of one upstream host name, and passive health checks.
//
//   1. pick(): round robin over the addresses not marked down; when every address is down, round
//      robin over all of them (a request that may succeed beats a certain 502)
//   2. failed(address): an address that refused a connection (see isConnectFailure) is skipped for
//      DOWN_BASE_MS, doubling with each further failure up to DOWN_MAX_MS; succeeded() clears it
//   3. setAddresses(): a new DNS answer; what is known about addresses still in it is kept
//   4. mayRetry(): a request that never got a response byte is sent once more to another address
//      only when repeating it is harmless: an idempotent method (RFC 9110 §9.2.2) and no body
//      (a streamed body has been read and cannot be replayed)

/** First time an address that refused a connection is skipped. */
export const DOWN_BASE_MS = 10_000;
/** Longest time it is skipped after repeated refusals. */
export const DOWN_MAX_MS = 300_000;

interface Health {
  failures: number;
  downUntil: number;
}

/** Round robin with passive health over a changing list of addresses; see the header. */
export class AddressBalancer {
  #addresses: readonly string[] = [];
  #next = 0;
  readonly #health = new Map<string, Health>();
  readonly #now: () => number;

  /** `now` (ms) is for tests; default Date.now. */
  constructor(opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
  }

  /** The current addresses, in the order given to setAddresses. */
  get addresses(): readonly string[] {
    return this.#addresses;
  }

  /** Step 3: replace the address list; health of addresses no longer in it is forgotten. */
  setAddresses(addresses: readonly string[]): void {
    this.#addresses = [...addresses];
    for (const address of this.#health.keys()) if (!addresses.includes(address)) this.#health.delete(address);
  }

  /**
   * Step 1: the next address, skipping `exclude` (an address just tried) and addresses marked
   * down; undefined only when the list is empty or `exclude` is its only address.
   */
  pick(exclude?: string): string | undefined {
    const list = this.#addresses;
    const n = list.length;
    if (n === 0) return undefined;
    const now = this.#now();
    let fallback: string | undefined;
    for (let i = 0; i < n; i++) {
      const address = list[(this.#next + i) % n]!;
      if (address === exclude) continue;
      if (this.isDown(address, now)) {
        fallback ??= address;
        continue;
      }
      this.#next = (this.#next + i + 1) % n;
      return address;
    }
    // Everything (but exclude) is down: try anyway, still spreading.
    if (fallback !== undefined) this.#next = (list.indexOf(fallback) + 1) % n;
    return fallback;
  }

  /** Step 2: `address` refused a connection. */
  failed(address: string): void {
    if (!this.#addresses.includes(address)) return;
    const health = this.#health.get(address) ?? { failures: 0, downUntil: 0 };
    health.failures++;
    health.downUntil = this.#now() + Math.min(DOWN_MAX_MS, DOWN_BASE_MS * 2 ** Math.min(health.failures - 1, 20));
    this.#health.set(address, health);
  }

  /** Step 2: `address` answered; it is healthy again. */
  succeeded(address: string): void {
    if (this.#health.size > 0) this.#health.delete(address);
  }

  /** Whether `address` is being skipped (marked down and its time not yet over). */
  isDown(address: string, now = this.#now()): boolean {
    const health = this.#health.get(address);
    return health !== undefined && health.downUntil > now;
  }
}

/** Methods a repeat of which has the same effect as one request (RFC 9110 §9.2.2). */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** Step 4: may a request that got no response byte be sent again to another address? */
export function mayRetry(method: string, hasBody: boolean): boolean {
  return !hasBody && IDEMPOTENT_METHODS.has(method.toUpperCase());
}

const CONNECT_FAILURES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'ETIMEDOUT',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
]);

/**
 * Step 2: does an error code seen before any response byte say the address is not serving
 * (refused, connect time-out, reset or closed before answering, unreachable)?
 */
export function isConnectFailure(code: string): boolean {
  return CONNECT_FAILURES.has(code);
}
