// Summarises V8 .cpuprofile files (node --cpu-prof): self time per function, summed over every
// profile in a directory (certgate's primary and its workers each write one).
// Usage as a script: node --import tsx bench/profile.ts <dir-or-file> [top]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROJECT_ROOT } from './services.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileFrame {
  frame: string;
  selfMs: number;
  percent: number;
}

export interface ProfileSummary {
  files: number;
  totalMs: number;
  /** Excluding (idle) and (program)/(garbage collector) bookkeeping nodes. */
  busyMs: number;
  top: ProfileFrame[];
  /** Self time grouped by where the code lives (certgate src/, node: internals, packages). */
  byArea: ProfileFrame[];
}

function frameName(cf: ProfileNode['callFrame']): string {
  const url = cf.url.startsWith('file://') ? relative(PROJECT_ROOT, fileURLToPath(cf.url)) : cf.url;
  return `${cf.functionName || '(anonymous)'} ${url ? `${url}:${cf.lineNumber + 1}` : ''}`.trim();
}

function areaOf(cf: ProfileNode['callFrame']): string {
  const url = cf.url;
  if (!url) return cf.functionName.startsWith('(') ? cf.functionName : '(native)';
  if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:').split('/').slice(0, 2).join('/');
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return `pkg:${m[1]}`;
  const src = /\/(src\/[^/]+)/.exec(url);
  return src ? src[1]! : url;
}

export function summariseProfiles(path: string, top = 25): ProfileSummary | null {
  const files = statSync(path).isDirectory()
    ? readdirSync(path)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(path, f))
    : [path];
  if (files.length === 0) return null;
  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const file of files) {
    const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < prof.samples.length; i++) {
      const node = byId.get(prof.samples[i]!);
      const dt = prof.timeDeltas[i] ?? 0;
      if (!node || dt <= 0) continue;
      totalUs += dt;
      const fn = node.callFrame.functionName;
      if (fn === '(idle)' || fn === '(program)') {
        idleUs += dt;
        continue;
      }
      const name = frameName(node.callFrame);
      self.set(name, (self.get(name) ?? 0) + dt);
      const area = areaOf(node.callFrame);
      areas.set(area, (areas.get(area) ?? 0) + dt);
    }
  }
  const busyUs = totalUs - idleUs;
  const list = (m: Map<string, number>, n: number): ProfileFrame[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([frame, us]) => ({ frame, selfMs: Math.round(us / 100) / 10, percent: busyUs > 0 ? Math.round((us / busyUs) * 1000) / 10 : 0 }));
  return { files: files.length, totalMs: Math.round(totalUs / 1000), busyMs: Math.round(busyUs / 1000), top: list(self, top), byArea: list(areas, 12) };
}

export function formatProfile(title: string, s: ProfileSummary): string {
  const lines = [`${title}: ${s.files} profile(s), ${s.busyMs} ms busy of ${s.totalMs} ms sampled (% of busy)`];
  lines.push('  by area:');
  for (const f of s.byArea) lines.push(`    ${f.percent.toFixed(1).padStart(5)}%  ${String(f.selfMs).padStart(8)} ms  ${f.frame}`);
  lines.push('  top self-time frames:');
  for (const f of s.top) lines.push(`    ${f.percent.toFixed(1).padStart(5)}%  ${String(f.selfMs).padStart(8)} ms  ${f.frame}`);
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const target = process.argv[2];
  if (!target) {
    process.stderr.write('usage: node --import tsx bench/profile.ts <dir-or-.cpuprofile> [top]\n');
    process.exit(2);
  }
  const s = summariseProfiles(target, Number(process.argv[3] ?? 25));
  process.stdout.write(s ? formatProfile(target, s) + '\n' : 'no .cpuprofile files found\n');
}
