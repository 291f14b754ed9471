// Parsing configs in tests: as if read from /etc/certgate/certgate.yaml.
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

export const parse = (raw: unknown) => parseConfig(raw, { baseDir: '/etc/certgate' });

/** The problems a config that must be refused is refused with, one per line. */
export function problemList(raw: unknown): string[] {
  try {
    parse(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

/** problemList, joined into one string for assert.match. */
export const problems = (raw: unknown): string => problemList(raw).join('\n');

/** The `onDemand` section as the schema outputs it: `raw` over the defaults (durations in ms or "5m"). */
export const onDemandSection = (raw: Record<string, unknown> = {}) => parse({ onDemand: raw }).onDemand;

/** The `acme` section as the schema outputs it: `raw` over the defaults. */
export const acmeSection = (raw: Record<string, unknown> = {}) => parse({ acme: raw }).acme;

/**
 * The sections a CertificateManager applies (`onDemand` and `acme`), each `raw` over the schema's
 * defaults: `managerConfig({ onDemand: { maxConcurrentIssuances: 1 }, acme: { retry: {...} } })`.
 */
export function managerConfig(raw: { onDemand?: Record<string, unknown>; acme?: Record<string, unknown> } = {}) {
  const { onDemand, acme } = parse({ onDemand: raw.onDemand ?? {}, acme: raw.acme ?? {} });
  return { onDemand, acme };
}
