// The results table: metric | certgate | caddy | ratio | target | result, plus notes.
import type { Row } from './context.ts';
import type { GatewayKind } from './gateways.ts';

function fmt(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function formatTable(rows: Row[], kinds: GatewayKind[]): string {
  const withCaddy = kinds.includes('caddy');
  const head = ['metric', 'unit', 'certgate', ...(withCaddy ? ['caddy', 'ratio'] : []), 'target', 'result'];
  const body = rows.map((r) => [
    r.metric,
    r.unit,
    fmt(r.certgate),
    ...(withCaddy ? [fmt(r.caddy), r.ratio !== undefined && Number.isFinite(r.ratio) ? `${r.ratio.toFixed(2)}×` : '—'] : []),
    r.target ?? '',
    r.pass === undefined ? (r.target ? (withCaddy || !r.target.includes('Caddy') ? 'n/a' : 'no Caddy') : '') : r.pass ? 'PASS' : 'FAIL',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const numeric = new Set(['certgate', 'caddy', 'ratio']);
  const line = (cells: string[]): string => cells.map((c, i) => (numeric.has(head[i]!) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ');
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('-|-')];
  let section = '';
  const notes: string[] = [];
  rows.forEach((r, i) => {
    if (r.section !== section) {
      section = r.section;
      out.push(`[${section}]`);
    }
    out.push(line(body[i]!));
    if (r.note) notes.push(`  - ${r.metric}: ${r.note}`);
  });
  if (notes.length) out.push('', 'notes:', ...notes);
  out.push('', 'ratio = certgate / caddy. Lower is better for ms, s, MiB; higher for /s and req/s.');
  return out.join('\n');
}
