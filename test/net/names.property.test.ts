// Property tests (fast-check, fixed seed, bounded runs) for server-name normalisation: whatever
// the input, the result is undefined or a valid lower-case A-label name, and never a throw.
// A failure prints the seed and the shrunk counterexample; replay with { seed, path }.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { domainToASCII, domainToUnicode } from 'node:url';
import fc from 'fast-check';
import { normalizeDomainName, normalizeServerName } from '../../src/net/names.ts';

const RUNS = { seed: 42, numRuns: 2000 } as const;

/** Independent statement of "a name a CA could issue for", the reference the outputs must meet. */
function isValidOutput(name: string): boolean {
  if (name.length > 253 || !/^[a-z0-9.-]+$/.test(name)) return false;
  const labels = name.split('.');
  if (labels.length < 2 || /^[0-9]+$/.test(labels.at(-1)!)) return false;
  return labels.every((l) => {
    if (l.length < 1 || l.length > 63 || l.startsWith('-') || l.endsWith('-')) return false;
    if (!l.startsWith('xn--')) return true;
    const u = domainToUnicode(l);
    return [...u].some((c) => c.codePointAt(0)! > 0x7e) && domainToASCII(u) === l;
  });
}

const isAscii = (s: string): boolean => [...s].every((c) => c.charCodeAt(0) < 0x80);

const label = fc.oneof(
  fc.stringMatching(/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?$/),
  fc.stringMatching(/^[xX][nN]--[a-z0-9-]{0,12}$/), // mostly invalid punycode
  fc.constantFrom('xn--bcher-kva', 'xn--55qx5d', 'xn--strae-oqa', 'xn--ls8h', 'xn--nxasmq6b', 'xn--abc-', 'xn--a', 'xn--'),
  fc.constantFrom('bücher', 'bÃ¼cher', 'straße', '公司', 'ÿ', 'a_b', '*', '', '-a', 'a-', '123', 'ＡＢＣ', '\u00ad', 'a\u200db'),
  fc.string({ maxLength: 6 }),
  fc.string({ unit: 'binary', maxLength: 6 }),
);
/** Names built from labels, with an optional trailing dot, plus arbitrary strings. */
const serverName = fc.oneof(
  fc.tuple(fc.array(label, { minLength: 1, maxLength: 5 }), fc.boolean()).map(([ls, dot]) => ls.join('.') + (dot ? '.' : '')),
  fc.domain(),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('a', 'Z', '0', '.', '-', ':', '[', ']', '%', 'x', 'n', 'ü', '\u00c3'), maxLength: 30 }),
);

test('normalizeServerName: never throws; undefined or a valid lower-case A-label name', () => {
  fc.assert(
    fc.property(serverName, (raw) => {
      const out = normalizeServerName(raw);
      assert.ok(out === undefined || isValidOutput(out), `${JSON.stringify(raw)} → ${JSON.stringify(out)}`);
    }),
    RUNS,
  );
});

test('normalizeServerName: idempotent, and case-insensitive for ASCII input', () => {
  fc.assert(
    fc.property(serverName, (raw) => {
      const out = normalizeServerName(raw);
      if (out !== undefined) assert.equal(normalizeServerName(out), out);
      if (/^[\x20-\x7e]*$/.test(raw)) assert.equal(normalizeServerName(raw.toUpperCase()), out);
    }),
    RUNS,
  );
});

test('normalizeServerName: anything not ASCII is refused (SNI carries A-labels, RFC 6066)', () => {
  fc.assert(
    fc.property(serverName, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 3 }), fc.nat(), (raw, extra, at) => {
      const i = at % (raw.length + 1);
      const withUnicode = raw.slice(0, i) + extra + raw.slice(i);
      fc.pre(!isAscii(withUnicode));
      assert.equal(normalizeServerName(withUnicode), undefined, JSON.stringify(withUnicode));
    }),
    RUNS,
  );
});

test('normalizeDomainName: never throws; valid output, a fixed point of the SNI normaliser; same as it for ASCII', () => {
  fc.assert(
    fc.property(serverName, (raw) => {
      const out = normalizeDomainName(raw);
      if (out !== undefined) {
        assert.ok(isValidOutput(out), `${JSON.stringify(raw)} → ${JSON.stringify(out)}`);
        assert.equal(normalizeServerName(out), out);
      }
      if (isAscii(raw)) assert.equal(out, normalizeServerName(raw), JSON.stringify(raw));
    }),
    RUNS,
  );
});
