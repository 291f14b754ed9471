// Tables for the admin commands (--json prints the API's answers as they are instead). The
// shapes are read loosely: a field the admin API does not send (an older gateway, a check that
// is not configured) is left out or shown as "-", never an error.

/** A hostname as GET /v1/domains[/{name}] answers it; only what the tables show. */
export interface HostnameView {
  name: string;
  /** Lifecycle: pending | active | failed | blocked | disabled (an older API: active | disabled). */
  status?: string;
  enabled?: boolean;
  upstream?: string;
  tenant?: string;
  label?: string;
  errors?: string[];
  verification?: Verification;
  dcv?: { name: string; target: string; ready: boolean };
}

interface Verification {
  checkedAt?: string | null;
  dns?: { ok: boolean; resolved?: string[]; expected?: string[]; reason?: string | null } | null;
  caa?: { forbids?: string[]; error?: string | null } | null;
  ownership?: { record: { name: string; type: string; value: string }; verified: boolean } | null;
  lastError?: { step?: string | null; message: string; at?: string } | null;
  nextRetry?: string | null;
  certificate?: { notAfter: string; issuer?: string | null; ca?: string } | null;
}

/** GET /v1/certificates/{name} (and its 404's failure fields); only what the tables show. */
export interface CertificateView {
  domain?: string;
  names?: string[];
  issuer?: string | null;
  ca?: string;
  notBefore?: string;
  notAfter?: string;
  nextRenewal?: string | null;
  obtainedAt?: string;
  serialNumber?: string;
  fingerprint256?: string;
  keyType?: string;
  cached?: boolean;
  attempts?: number;
  lastError?: { at: string; step: string | null; error: string } | null;
  nextRetryAt?: string | null;
  givenUp?: boolean;
}

/** Rows as aligned columns (two spaces apart), the first row being the header. */
export function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}

/** The switch: `enabled`, or from an older API's `status: active|disabled`. */
function enabledOf(h: HostnameView): boolean {
  return h.enabled ?? h.status !== 'disabled';
}

/** A date-time as its day (the tables' EXPIRES column); "-" when absent. */
const day = (iso: string | null | undefined): string => (iso ? iso.slice(0, 10) : '-');

/** `certgate domains ls`: one row per hostname, its error sentences indented under it. */
export function hostnameTable(items: HostnameView[]): string {
  const header = ['NAME', 'STATUS', 'ENABLED', 'EXPIRES', 'UPSTREAM', 'TENANT'];
  const rows = items.map((h) => [h.name, h.status ?? '-', enabledOf(h) ? 'yes' : 'no', day(h.verification?.certificate?.notAfter), h.upstream ?? '-', h.tenant ?? '-']);
  const lines = table([header, ...rows]);
  const out = [lines[0]!];
  items.forEach((h, i) => {
    out.push(lines[i + 1]!);
    for (const sentence of h.errors ?? []) out.push(`    ! ${sentence}`);
  });
  return out.join('\n') + '\n';
}

/** Label/value lines, values aligned; pairs without a value are left out. */
function fields(pairs: Array<[string, string | undefined]>): string[] {
  const shown = pairs.filter((p): p is [string, string] => p[1] !== undefined);
  return table(shown.map(([k, v]) => [`${k}:`, v]));
}

/** `certgate domains status|add`: one hostname, its verification, then its error sentences. */
export function hostnameDetails(h: HostnameView): string {
  const v = h.verification;
  const cert = v?.certificate;
  const lines = fields([
    ['name', h.name],
    ['status', h.status],
    ['enabled', enabledOf(h) ? 'yes' : 'no'],
    ['upstream', h.upstream],
    ['tenant', h.tenant],
    ['label', h.label],
    ['certificate', v === undefined ? undefined : cert ? `valid until ${cert.notAfter}${cert.issuer ? ` (${cert.issuer})` : ''}` : 'none'],
    ['dns', v?.dns ? `${v.dns.ok ? 'ok' : 'wrong'}: resolves to ${v.dns.resolved?.join(', ') || 'nothing'}; expected ${v.dns.expected?.join(', ') || '-'}` : undefined],
    ['caa', v?.caa ? (v.caa.error ?? (v.caa.forbids?.length ? `forbids ${v.caa.forbids.join(', ')}` : 'ok')) : undefined],
    ['ownership', v?.ownership ? `${v.ownership.record.type} ${v.ownership.record.name} ${v.ownership.record.value}: ${v.ownership.verified ? 'verified' : 'not seen yet'}` : undefined],
    ['dcv', h.dcv ? `${h.dcv.name} CNAME ${h.dcv.target}: ${h.dcv.ready ? 'in place' : 'missing'}` : undefined],
    ['last error', v?.lastError ? `${v.lastError.step ? `${v.lastError.step}: ` : ''}${v.lastError.message}${v.lastError.at ? ` (${v.lastError.at})` : ''}` : undefined],
    ['next retry', v?.nextRetry ?? undefined],
    ['checked at', v?.checkedAt ?? undefined],
  ]);
  return [...lines, ...errorLines(h.errors)].join('\n') + '\n';
}

function errorLines(errors: string[] | undefined): string[] {
  if (!errors?.length) return [];
  return ['errors:', ...errors.map((e) => `  - ${e}`)];
}

/** `certgate certs status|renew`: the certificate, then its failures when there are any. */
export function certificateDetails(c: CertificateView): string {
  const lines = fields([
    ['domain', c.domain],
    ['names', c.names?.join(', ')],
    ['issuer', c.issuer ?? undefined],
    ['ca', c.ca],
    ['not before', c.notBefore],
    ['not after', c.notAfter],
    ['next renewal', c.nextRenewal ?? undefined],
    ['obtained at', c.obtainedAt],
    ['serial', c.serialNumber],
    ['sha-256', c.fingerprint256],
    ['key type', c.keyType],
    ['in memory', c.cached === undefined ? undefined : c.cached ? 'yes' : 'no'],
    ...failurePairs(c),
  ]);
  return lines.join('\n') + '\n';
}

/** A certificate answer's failure fields (also in a "no certificate" 404), as aligned lines; none without failures. */
export function failureLines(c: CertificateView): string[] {
  return fields(failurePairs(c));
}

function failurePairs(c: CertificateView): Array<[string, string | undefined]> {
  if (!c.attempts) return [];
  return [
    ['failed attempts', String(c.attempts)],
    ['last error', c.lastError ? `${c.lastError.step ? `${c.lastError.step}: ` : ''}${c.lastError.error} (${c.lastError.at})` : undefined],
    ['next retry', c.givenUp ? 'given up (renew it to try again)' : (c.nextRetryAt ?? undefined)],
  ];
}
