// Runs `certgate` as a separate process, the way an operator does: bin/certgate.js with a
// config file. Output is kept for assertions and for debugging a failed test.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { trackChild } from './cleanup.ts';

export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const NODE = process.execPath;
export const CERTGATE_BIN = fileURLToPath(new URL('../../bin/certgate.js', import.meta.url));

export interface RunningProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves when the output matches, rejects on exit or after timeoutMs. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function runProcess(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): RunningProcess {
  const child = spawn(NODE, args, { cwd: opts.cwd ?? PROJECT_ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    out += chunk.toString('utf8');
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    for (const l of listeners) l();
    resolve();
  }));
  return {
    child,
    output: () => out,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(out);
          if (m) return finish(() => resolve(m));
          if (child.exitCode !== null || child.signalCode !== null) finish(() => reject(new Error(`process exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${out}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}:\n${out}`))), timeoutMs);
        const finish = (f: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          f();
        };
        listeners.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(kill);
    },
  };
}

/** Runs a command to completion: its exit code, stdout and stderr together (`output`), and stdout alone. */
export function runToEnd(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<{ code: number | null; output: string; stdout: string }> {
  const p = runProcess(args, opts.env ? { env: opts.env } : {});
  let stdout = '';
  p.child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      p.stop('SIGKILL');
      reject(new Error(`timed out: ${args.join(' ')}\n${p.output()}`));
    }, opts.timeoutMs ?? 30_000);
    p.child.once('exit', (code) => {
      clearTimeout(timer);
      // Let the stdio streams drain.
      setImmediate(() => resolve({ code, output: p.output(), stdout }));
    });
  });
}
