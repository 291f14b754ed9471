// Small helpers shared by the bench scripts: timing, statistics, /proc readings, child commands.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function now(): number {
  return performance.now();
}

/** Percentile by nearest rank on a copy (p in 0..100); NaN for an empty list. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const median = (values: number[]): number => percentile(values, 50);

export function round(value: number, digits = 1): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Bench names: fixed width, so every seeded certificate has the same size. */
export function seededName(index: number): string {
  return `s${String(index).padStart(7, '0')}.bench.test`;
}

export async function tempDir(parent: string, prefix: string): Promise<string> {
  return mkdtemp(join(parent, prefix));
}

export const BENCH_TMP = tmpdir();

/** Runs a command to completion with a hard time limit; resolves with its output, never rejects. */
export function run(cmd: string, args: string[], opts: { timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv }): Promise<{ code: number | null; stdout: string; stderr: string; error?: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, cwd: opts.cwd, env: opts.env ?? process.env }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), ...(err ? { error: err.message } : {}) });
    });
  });
}

export function haveCommand(cmd: string): boolean {
  return ['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].some((d) => existsSync(join(d, cmd)));
}

// ---------------------------------------------------------------------------------------------
// /proc readings (Linux). A gateway may be several processes (certgate `workers`): memory and CPU
// are summed over the process and all its descendants.

function readStat(pid: number): { ppid: number; cpuTicks: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces; everything after the last ')' is space separated.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(rest[1]), cpuTicks: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return null;
  }
}

/** `pid` and every live descendant. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = readStat(Number(entry));
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(Number(entry));
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

function statusKb(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function pssKb(pid: number): number | null {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export interface MemoryReading {
  /** Sum of VmRSS over the process tree, MiB. */
  rssMiB: number;
  /** Sum of Pss over the process tree (shared pages split), MiB; null where the kernel has no smaps_rollup. */
  pssMiB: number | null;
  processes: number;
}

export function memoryOf(pid: number): MemoryReading {
  const pids = processTree(pid);
  let rss = 0;
  let pss: number | null = 0;
  for (const p of pids) {
    rss += statusKb(p, 'VmRSS');
    const v = pssKb(p);
    pss = v === null || pss === null ? null : pss + v;
  }
  return { rssMiB: round(rss / 1024, 1), pssMiB: pss === null ? null : round(pss / 1024, 1), processes: pids.length };
}

const CLK_TCK = 100;

/** CPU time (user + system) of the process tree, milliseconds. */
export function cpuMsOf(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) ticks += readStat(p)?.cpuTicks ?? 0;
  return (ticks * 1000) / CLK_TCK;
}

/**
 * CPU time of `pid` and its live descendants in ms, to the nanosecond (the sum of every live
 * thread's /proc/<pid>/task/<tid>/schedstat run time): for windows too short for cpuMsOf's 10 ms
 * ticks. Threads that exited inside the window are not counted. `descendants: false`: `pid` alone.
 */
export function cpuPreciseMsOf(pid: number, opts: { descendants?: boolean } = {}): number {
  let ns = 0;
  for (const p of opts.descendants === false ? [pid] : processTree(pid)) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // exited
    }
    for (const tid of tids) {
      try {
        ns += Number(readFileSync(`/proc/${p}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // the thread exited
      }
    }
  }
  return ns / 1e6;
}

export function machineInfo(): { cpuModel: string; cpus: number; memTotalMiB: number; kernel: string } {
  let cpuModel = 'unknown';
  let cpus = 0;
  let memTotalMiB = 0;
  try {
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpuModel;
    cpus = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
    memTotalMiB = Math.round(Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1024);
  } catch {
    // not Linux
  }
  let kernel = 'unknown';
  try {
    kernel = readFileSync('/proc/version', 'utf8').trim();
  } catch {
    // not Linux
  }
  return { cpuModel, cpus, memTotalMiB, kernel };
}

export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}
