// The exec DNS provider, for every DNS host certgate has no provider for: runs the configured
// command (`acme.dns.exec.command`, argv, no shell) with `present|cleanup <fqdn> <value>` appended.
//
//   1. execFile(command[0], [...command.slice(1), action, fqdn, value]): no shell, so names and
//      values are never interpreted; the environment is certgate's own.
//   2. bounded by `timeoutMs`: a hook that hangs is killed (SIGKILL) and the step fails.
//   3. exit 0 = done. Any other exit (or a kill, or a command that cannot be started) becomes a
//      DnsProviderError naming the step, the name, the exit code and the hook's stderr (cut to
//      STDERR_MAX characters: enough to say why, not a log flood).
// The hook must treat present of a value already there and cleanup of one already gone as success
// (the DnsProvider contract), and keep other TXT values at the name.
import { execFile } from 'node:child_process';
import { DnsProviderError, type DnsProvider } from './provider.ts';

/** `acme.dns.exec` as the config gives it. */
export interface ExecOptions {
  /** argv of the hook: program (absolute path advised) and leading arguments. */
  command: string[];
}

/** What the exec provider takes besides its config. */
export interface ExecDeps {
  /** Bound on one run of the hook, ms. Default 60 s (hooks often call a slow HTTP API). */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const STDERR_MAX = 500;
const OUTPUT_MAX = 64 * 1024;

/** The hook-running provider (see the header). */
export class ExecProvider implements DnsProvider {
  readonly name = 'exec';
  readonly #command: string[];
  readonly #timeoutMs: number;

  constructor(options: ExecOptions, deps: ExecDeps = {}) {
    if (options.command.length === 0) throw new DnsProviderError('exec: command is empty', 'config', 'exec');
    this.#command = [...options.command];
    this.#timeoutMs = deps.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Runs `<command> present <fqdn> <value>`. */
  present(fqdn: string, value: string): Promise<void> {
    return this.#run('present', fqdn, value);
  }

  /** Runs `<command> cleanup <fqdn> <value>`. */
  cleanup(fqdn: string, value: string): Promise<void> {
    return this.#run('cleanup', fqdn, value);
  }

  #run(action: 'present' | 'cleanup', fqdn: string, value: string): Promise<void> {
    const [program, ...lead] = this.#command as [string, ...string[]];
    return new Promise((resolve, reject) => {
      const options = { timeout: this.#timeoutMs, killSignal: 'SIGKILL' as const, maxBuffer: OUTPUT_MAX, windowsHide: true };
      execFile(program, [...lead, action, fqdn, value], options, (err, _stdout, stderr) => {
        if (!err) return resolve();
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: number | string };
        let why: string;
        if (e.killed && e.signal === 'SIGKILL') why = `did not finish within ${this.#timeoutMs} ms (killed)`;
        else if (typeof e.code === 'number') why = `exited with ${e.code}`;
        else if (e.signal) why = `was killed by ${e.signal}`;
        else why = `could not run: ${e.message}`;
        const text = String(stderr).trim();
        const cut = text.length > STDERR_MAX ? `${text.slice(0, STDERR_MAX)}…` : text;
        const message = `exec ${action} ${fqdn}: ${program} ${why}${cut ? `; stderr: ${cut}` : ''}`;
        reject(new DnsProviderError(message, action, 'exec', { cause: err }));
      });
    });
  }
}
