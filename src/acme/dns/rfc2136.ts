// The rfc2136 DNS provider: dynamic update (RFC 2136) signed with TSIG (tsig.ts), against one
// server (`acme.dns.rfc2136.server`, usually the zone's primary).
//
//   present(fqdn, value) / cleanup(fqdn, value)
//     1. the zone: `zone` if configured, else found by SOA lookup: ask `server` for the SOA of
//        fqdn, then of each parent; the first answer naming an SOA (in the answer, or in the
//        authority section of a negative answer) gives the zone. The root zone does not count.
//        Found zones are remembered per name (they do not move while the process runs).
//     2. one UPDATE: present adds one TXT RR (TTL 60) to fqdn, leaving its other values alone
//        (concurrent orders each add their own); cleanup deletes exactly that RR (class NONE).
//        Both are idempotent on the server's side (RFC 2136 3.4.2).
//     3. the answer must be signed with our key (an unsigned or badly signed answer is rejected)
//        and NOERROR; otherwise a DnsProviderError names the step, the name, the RCODE and the
//        TSIG error the server answered (wrong secret: NOTAUTH + BADSIG).
//   Transport: TCP always, one connection per message (UPDATEs are rare; TCP has no truncation
//   and no spoofed UDP answers to sort out). Each exchange is bounded by `timeoutMs`.
import { randomInt } from 'node:crypto';
import { connect } from 'node:net';
import * as dnsPacket from 'dns-packet';
import { DnsProviderError, type DnsProvider } from './provider.ts';
import { encodeRecord, sign, TsigError, verify, type TsigAlgorithm, type TsigKey } from './tsig.ts';

/** `acme.dns.rfc2136` as the config gives it. */
export interface Rfc2136Options {
  /** "host:port" ("[v6]:port"; port defaults to 53) of the server that takes updates. */
  server: string;
  /** TSIG key name, as the server knows it. */
  keyName: string;
  keyAlgorithm: TsigAlgorithm;
  /** TSIG secret, base64. */
  keySecret: string;
  /** The zone to update; found by SOA lookup when absent. */
  zone?: string;
}

/** What the rfc2136 provider takes besides its config. */
export interface Rfc2136Deps {
  /** Bound on one exchange with the server (connect, send, answer), ms. Default 10 s. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const TYPE_TXT = 16;
const CLASS_IN = 1;
const CLASS_NONE = 254;
const TTL = 60;
const OPCODE_UPDATE = 5 << 11;

/** What one exchange produced: the decoded answer (its TSIG already verified). */
type Answer = dnsPacket.DecodedPacket & { rcode?: string };

function parseServer(server: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(server) ?? /^([^:]+)(?::(\d+))?$/.exec(server);
  if (!m) throw new DnsProviderError(`rfc2136: server "${server}" is not host:port`, 'config', 'rfc2136');
  return { host: m[1]!, port: m[2] ? Number(m[2]) : 53 };
}

/** TXT rdata: the value in character-strings of at most 255 bytes. */
function txtRdata(value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  const parts: Buffer[] = [];
  for (let at = 0; at === 0 || at < bytes.length; at += 255) {
    const chunk = bytes.subarray(at, at + 255);
    parts.push(Buffer.from([chunk.length]), chunk);
  }
  return Buffer.concat(parts);
}

/** Sends `message` over TCP and reads one length-prefixed answer, within `timeoutMs`. */
function tcpExchange(host: string, port: number, message: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | undefined, answer?: Buffer): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(answer!);
    };
    socket.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(message.length, 0);
      socket.write(Buffer.concat([len, message]));
    });
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) finish(undefined, data.subarray(2, 2 + data.readUInt16BE(0)));
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error('the server closed the connection without an answer')));
  });
}

/** The parent of a name ("a.b.c" → "b.c"); undefined for a single label. */
function parentOf(name: string): string | undefined {
  const dot = name.indexOf('.');
  return dot < 0 ? undefined : name.slice(dot + 1);
}

function normalize(name: string): string {
  return name.replace(/\.+$/, '').toLowerCase();
}

/** The RFC 2136 dynamic-update provider (see the header). */
export class Rfc2136Provider implements DnsProvider {
  readonly name = 'rfc2136';
  readonly #host: string;
  readonly #port: number;
  readonly #key: TsigKey;
  readonly #zone: string | undefined;
  readonly #timeoutMs: number;
  readonly #zones = new Map<string, string>();

  constructor(options: Rfc2136Options, deps: Rfc2136Deps = {}) {
    ({ host: this.#host, port: this.#port } = parseServer(options.server));
    this.#key = { name: options.keyName, algorithm: options.keyAlgorithm, secret: options.keySecret };
    this.#zone = options.zone === undefined ? undefined : normalize(options.zone);
    this.#timeoutMs = deps.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Adds `value` to the TXT RRset at `fqdn` (see DnsProvider.present). */
  async present(fqdn: string, value: string): Promise<void> {
    await this.#update('present', normalize(fqdn), value, CLASS_IN, TTL);
  }

  /** Deletes exactly the TXT RR `value` at `fqdn` (see DnsProvider.cleanup). */
  async cleanup(fqdn: string, value: string): Promise<void> {
    await this.#update('cleanup', normalize(fqdn), value, CLASS_NONE, 0);
  }

  /**
   * A signed SOA query (of `zone` when configured, else of the root): fails when the server is
   * unreachable or does not accept the key (BADSIG, BADKEY), or, with `zone`, does not serve it.
   */
  async check(): Promise<void> {
    const name = this.#zone ?? '';
    const answer = await this.#exchange('check', name || '.', this.#query(name));
    if (this.#zone !== undefined && answer.rcode !== 'NOERROR') {
      throw this.#error('check', name, `answered ${answer.rcode} to the SOA query for the zone`);
    }
  }

  async #update(step: string, fqdn: string, value: string, klass: number, ttl: number): Promise<void> {
    const zone = await this.#findZone(step, fqdn);
    const head = dnsPacket.encode({ id: randomInt(65536), flags: OPCODE_UPDATE, questions: [{ name: zone, type: 'SOA', class: 'IN' }] });
    const message = Buffer.concat([head, encodeRecord(fqdn, TYPE_TXT, klass, ttl, txtRdata(value))]);
    message.writeUInt16BE(1, 8); // NSCOUNT: the update section
    const answer = await this.#exchange(step, fqdn, message);
    if (answer.rcode !== 'NOERROR') throw this.#error(step, fqdn, `answered ${answer.rcode} to the update in zone ${zone}`);
  }

  #query(name: string): Buffer {
    return dnsPacket.encode({ id: randomInt(65536), flags: 0, questions: [{ name: name || '.', type: 'SOA', class: 'IN' }] });
  }

  /** The zone holding `fqdn` (header step 1). */
  async #findZone(step: string, fqdn: string): Promise<string> {
    if (this.#zone !== undefined) {
      if (fqdn === this.#zone || fqdn.endsWith(`.${this.#zone}`)) return this.#zone;
      throw this.#error('zone', fqdn, `is not in the configured zone ${this.#zone}`);
    }
    const known = this.#zones.get(fqdn);
    if (known !== undefined) return known;
    const asked: string[] = [];
    for (let name: string | undefined = fqdn; name !== undefined; name = parentOf(name)) {
      const answer = await this.#exchange('zone', fqdn, this.#query(name));
      asked.push(`${name}: ${answer.rcode}`);
      const soa = [...(answer.answers ?? []), ...(answer.authorities ?? [])].find((rr) => rr.type === 'SOA');
      const zone = soa === undefined ? '' : normalize(soa.name);
      if (zone !== '' && (fqdn === zone || fqdn.endsWith(`.${zone}`))) {
        this.#zones.set(fqdn, zone);
        return zone;
      }
    }
    throw this.#error('zone', fqdn, `serves no zone for it (SOA lookups: ${asked.join(', ')}) during ${step}`);
  }

  /** Signs, sends, verifies; throws a DnsProviderError naming `step` and `name`. */
  async #exchange(step: string, name: string, message: Buffer): Promise<Answer> {
    const signed = sign(message, this.#key);
    let raw: Buffer;
    try {
      raw = await tcpExchange(this.#host, this.#port, signed.message, this.#timeoutMs);
    } catch (err) {
      throw this.#error(step, name, `could not be asked: ${(err as Error).message}`, err);
    }
    let answer: Answer;
    try {
      answer = dnsPacket.decode(raw) as Answer;
    } catch (err) {
      throw this.#error(step, name, `sent an answer that does not parse: ${(err as Error).message}`, err);
    }
    if (answer.id !== signed.id) throw this.#error(step, name, `answered message ID ${answer.id}, not ${signed.id}`);
    try {
      verify(raw, signed, this.#key);
    } catch (err) {
      if (!(err instanceof TsigError)) throw err;
      const detail = `answered ${answer.rcode ?? 'an unknown RCODE'}, TSIG ${err.tsigError} (key ${this.#key.name}): ${err.message}`;
      throw this.#error(step, name, detail, err);
    }
    return answer;
  }

  #error(step: string, name: string, detail: string, cause?: unknown): DnsProviderError {
    return new DnsProviderError(`rfc2136 ${step} ${name}: server ${this.#host}:${this.#port} ${detail}`, step, 'rfc2136', { cause });
  }
}
