// A small, strict parser for the Prometheus text exposition format (0.0.4), so tests check
// what a scraper would accept rather than grepping. It rejects: malformed lines, bad metric or
// label names, bad escapes, duplicate HELP/TYPE, TYPE after a family's samples, families split
// into non-adjacent groups, duplicate series, negative counters, and histograms whose buckets
// are not cumulative or whose +Inf bucket differs from _count.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help?: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seenSeries = new Set<string>();
  const closed = new Set<string>();
  let current: string | undefined;
  const fail = (lineNo: number, line: string, why: string): never => {
    throw new Error(`prometheus text line ${lineNo}: ${why}: ${JSON.stringify(line)}`);
  };
  const familyOf = (sampleName: string): string => {
    for (const suffix of ['_bucket', '_sum', '_count', '_total', '_created']) {
      if (sampleName.endsWith(suffix)) {
        const base = sampleName.slice(0, -suffix.length);
        const family = families.get(base);
        if (family && (family.type === 'histogram' || family.type === 'summary' || (suffix === '_total' && family.type === 'counter'))) return base;
      }
    }
    return sampleName;
  };

  if (!text.endsWith('\n')) throw new Error('prometheus text must end with a newline');
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((line, i) => {
    const lineNo = i + 1;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) fail(lineNo, line, 'bad metric name');
      let family = families.get(name);
      if (family && closed.has(name)) fail(lineNo, line, `${kind} for a family whose samples already ended`);
      if (!family) {
        family = { name, type: 'untyped', samples: [] };
        families.set(name, family);
      }
      if (current !== undefined && current !== name) closed.add(current);
      current = name;
      if (kind === 'HELP') {
        if (family.help !== undefined) fail(lineNo, line, 'second HELP');
        family.help = unescape(rest, false, () => fail(lineNo, line, 'bad escape in HELP'));
      } else {
        if (family.type !== 'untyped' || family.samples.length) fail(lineNo, line, 'TYPE repeated or after samples');
        if (!TYPES.has(rest)) fail(lineNo, line, 'unknown type');
        family.type = rest;
      }
      return;
    }
    const sample = parseSample(line, () => fail(lineNo, line, 'malformed sample'));
    const base = familyOf(sample.name);
    let family = families.get(base);
    if (!family) {
      family = { name: base, type: 'untyped', samples: [] };
      families.set(base, family);
    }
    if (closed.has(base)) fail(lineNo, line, 'samples of one family are not adjacent');
    if (current !== undefined && current !== base) closed.add(current);
    current = base;
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seenSeries.has(key)) fail(lineNo, line, 'duplicate series');
    seenSeries.add(key);
    if (family.type === 'counter' && !(sample.value >= 0)) fail(lineNo, line, 'counter is negative or NaN');
    family.samples.push(sample);
  });

  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return families;
}

function parseSample(line: string, bad: () => never): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
  if (!m) bad();
  const [, name, rawLabels, rawValue] = m!;
  const labels: Record<string, string> = {};
  if (rawLabels) {
    let rest = rawLabels.slice(1, -1);
    while (rest.length) {
      const lm = /^([^=]+)="((?:[^"\\]|\\.)*)"(,?)/.exec(rest);
      if (!lm) bad();
      const [whole, labelName, labelValue, comma] = lm!;
      if (!LABEL_NAME.test(labelName!) || labelName! in labels) bad();
      labels[labelName!] = unescape(labelValue!, true, bad);
      rest = rest.slice(whole.length);
      if (!comma && rest.length) bad();
    }
  }
  return { name: name!, labels, value: parseValue(rawValue!, bad) };
}

/** Like Prometheus's own parser (Go's strconv.ParseFloat): Inf and NaN in any letter case. */
function parseValue(raw: string, bad: () => never): number {
  const lower = raw.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  if (lower === 'nan') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) bad();
  return Number(raw);
}

function unescape(s: string, allowQuote: boolean, bad: () => never): string {
  return s.replace(/\\(.?)/g, (_, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    if (c === '"' && allowQuote) return '"';
    return bad();
  });
}

function checkHistogram(family: Family): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(key) ?? { buckets: [] };
    groups.set(key, g);
    if (s.name === `${family.name}_bucket`) {
      if (le === undefined) throw new Error(`${family.name}: bucket without le`);
      g.buckets.push([parseValue(le, () => { throw new Error(`${family.name}: bad le ${le}`); }), s.value]);
    } else if (s.name === `${family.name}_count`) g.count = s.value;
    else if (s.name === `${family.name}_sum`) g.sum = s.value;
    else throw new Error(`${family.name}: unexpected sample ${s.name}`);
  }
  for (const [key, g] of groups) {
    if (g.count === undefined || g.sum === undefined) throw new Error(`${family.name}${key}: missing _count or _sum`);
    const sorted = [...g.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]![1] < sorted[i - 1]![1]) throw new Error(`${family.name}${key}: buckets not cumulative`);
    }
    const inf = sorted.at(-1);
    if (!inf || inf[0] !== Infinity || inf[1] !== g.count) throw new Error(`${family.name}${key}: +Inf bucket missing or not equal to _count`);
  }
}

/** The value of the first series named `name` whose labels include `labels`. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const family of families.values()) {
    for (const s of family.samples) {
      if (s.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
    }
  }
  return undefined;
}
