// JSON Web Signature pieces ACME needs (RFC 7515 flattened JSON serialization, RFC 7638
// thumbprints, RFC 8555 §6.2 and §7.3.4), on node:crypto only.
import { createHash, createHmac, createPublicKey, sign, type JsonWebKey, type KeyObject } from 'node:crypto';

/** A public JWK as sent in the `jwk` header (only the members RFC 7638 needs). */
export type PublicJwk =
  | { kty: 'EC'; crv: string; x: string; y: string }
  | { kty: 'RSA'; n: string; e: string };

/** A flattened JSON JWS (RFC 7515 §7.2.2): the body of every ACME POST. */
export interface JwsObject {
  protected: string;
  payload: string;
  signature: string;
}

/** Unpadded base64url (RFC 7515 §2); a string is encoded as UTF-8. */
export function base64url(data: Uint8Array | string): string {
  return Buffer.from(typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('base64url');
}

/** Decodes base64url (padding tolerated); throws on any other character. */
export function base64urlDecode(text: string): Buffer {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text)) throw new Error('invalid base64url');
  return Buffer.from(text, 'base64url');
}

/** The public JWK of an EC (P-256/P-384/P-521) or RSA key (private or public KeyObject). */
export function publicJwk(key: KeyObject): PublicJwk {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk: JsonWebKey = pub.export({ format: 'jwk' });
  if (jwk.kty === 'EC' && jwk.crv && jwk.x && jwk.y) return { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
  if (jwk.kty === 'RSA' && jwk.n && jwk.e) return { kty: 'RSA', n: jwk.n, e: jwk.e };
  throw new Error(`unsupported account key type ${String(jwk.kty)}`);
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url): required members in lexicographic order. */
export function jwkThumbprint(keyOrJwk: KeyObject | PublicJwk): string {
  const jwk = 'kty' in keyOrJwk ? keyOrJwk : publicJwk(keyOrJwk);
  const canonical =
    jwk.kty === 'EC'
      ? `{"crv":${JSON.stringify(jwk.crv)},"kty":"EC","x":${JSON.stringify(jwk.x)},"y":${JSON.stringify(jwk.y)}}`
      : `{"e":${JSON.stringify(jwk.e)},"kty":"RSA","n":${JSON.stringify(jwk.n)}}`;
  return createHash('sha256').update(canonical).digest('base64url');
}

/** `token.thumbprint` (RFC 8555 §8.1). */
export function keyAuthorization(token: string, accountKey: KeyObject | PublicJwk): string {
  return `${token}.${jwkThumbprint(accountKey)}`;
}

/** The TXT record value for dns-01: base64url(SHA-256(keyAuthorization)) (RFC 8555 §8.4). */
export function dns01TxtValue(keyAuth: string): string {
  return createHash('sha256').update(keyAuth).digest('base64url');
}

interface AlgInfo {
  alg: string;
  hash: string;
  /** ECDSA: the JWS signature is r || s, each this many bytes (RFC 7518 §3.4); 0 for RSA. */
  ecdsaSize: number;
}

/** algFor's answer per key: reading a KeyObject's curve crosses into native code on every call. */
const algCache = new WeakMap<KeyObject, AlgInfo>();

function algFor(key: KeyObject): AlgInfo {
  let info = algCache.get(key);
  if (!info) algCache.set(key, (info = algOf(key)));
  return info;
}

function algOf(key: KeyObject): AlgInfo {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'P-256') return { alg: 'ES256', hash: 'sha256', ecdsaSize: 32 };
    if (curve === 'secp384r1' || curve === 'P-384') return { alg: 'ES384', hash: 'sha384', ecdsaSize: 48 };
    if (curve === 'secp521r1' || curve === 'P-521') return { alg: 'ES512', hash: 'sha512', ecdsaSize: 66 };
    throw new Error(`unsupported EC curve ${String(curve)}`);
  }
  if (key.asymmetricKeyType === 'rsa') return { alg: 'RS256', hash: 'sha256', ecdsaSize: 0 };
  throw new Error(`unsupported account key type ${String(key.asymmetricKeyType)}`);
}

/**
 * An ECDSA signature from DER (SEQUENCE of INTEGER r, INTEGER s) to JWS form, r || s of `size`
 * bytes each. node:crypto can sign straight to this form (`dsaEncoding: 'ieee-p1363'`), but that
 * option path costs twice the signature itself (measured: ~90 against ~40 µs per ES256 sign).
 */
function derToJoseSignature(der: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size * 2);
  let at = der[1]! & 0x80 ? 2 + (der[1]! & 0x7f) : 2; // past the SEQUENCE header
  for (let i = 0; i < 2; i++) {
    const len = der[at + 1]!;
    let start = at + 2;
    let n = len;
    while (n > size) {
      start++; // a leading 0x00 that keeps the INTEGER positive
      n--;
    }
    der.copy(out, i * size + (size - n), start, start + n);
    at += 2 + len;
  }
  return out;
}

/** The JWS `alg` for a key: ES256 for P-256 (the account key ACME clients normally use). */
export function jwsAlgorithm(key: KeyObject): string {
  return algFor(key).alg;
}

/** What signJws signs, and for which URL and nonce. */
export interface SignJwsOptions {
  /** Private key (ECDSA P-256 → ES256). */
  key: KeyObject;
  url: string;
  /** Omitted only for inner JWS (key rollover) and EAB. */
  nonce?: string;
  /** Account URL. Without it, the public key is embedded as `jwk`. */
  kid?: string;
  /** `undefined` → empty payload (POST-as-GET). */
  payload?: unknown;
}

/** A flattened JSON JWS signed with the account key, `kid` or `jwk` in the protected header. */
export function signJws(opts: SignJwsOptions): JwsObject {
  const { alg, hash, ecdsaSize } = algFor(opts.key);
  const header: Record<string, unknown> = { alg };
  if (opts.kid !== undefined) header.kid = opts.kid;
  else header.jwk = publicJwk(opts.key);
  if (opts.nonce !== undefined) header.nonce = opts.nonce;
  header.url = opts.url;
  const protectedB64 = base64url(JSON.stringify(header));
  const payloadB64 = opts.payload === undefined ? '' : base64url(JSON.stringify(opts.payload));
  const signingInput = Buffer.from(`${protectedB64}.${payloadB64}`, 'ascii');
  const der = sign(hash, signingInput, opts.key);
  const signature = ecdsaSize > 0 ? derToJoseSignature(der, ecdsaSize) : der;
  return { protected: protectedB64, payload: payloadB64, signature: base64url(signature) };
}

/**
 * The `externalAccountBinding` member of a newAccount payload (RFC 8555 §7.3.4): an HS256 JWS
 * over the account's public JWK, keyed with the CA-provided MAC key (base64url).
 */
export function signExternalAccountBinding(opts: {
  kid: string;
  hmacKey: string;
  url: string;
  accountKey: KeyObject;
}): JwsObject {
  const protectedB64 = base64url(JSON.stringify({ alg: 'HS256', kid: opts.kid, url: opts.url }));
  const payloadB64 = base64url(JSON.stringify(publicJwk(opts.accountKey)));
  const mac = createHmac('sha256', base64urlDecode(opts.hmacKey)).update(`${protectedB64}.${payloadB64}`).digest();
  return { protected: protectedB64, payload: payloadB64, signature: base64url(mac) };
}
