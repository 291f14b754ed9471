// V8's young generation, capped for every gateway process: at a handshake's allocation rate V8
// grows it to 128 MiB per process and keeps it. Workers get the flag from their primary; a
// single process restarts itself with it.
/** Young-generation cap for workers (MiB per semi-space), unless the operator set one. */
const WORKER_SEMI_SPACE_MIB = 16;

/**
 * Node flags for the workers: the primary's, plus a cap on V8's young generation. At a
 * handshake's allocation rate V8 grows it to 128 MiB per process and keeps it; 16 MiB
 * semi-spaces held a worker's RSS after 20k new names at ~226 MiB instead of ~302 MiB.
 * An explicit --max-semi-space-size (command line or NODE_OPTIONS) wins.
 */
export function workerExecArgv(execArgv = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const set = [...execArgv, nodeOptions].some((arg) => arg.includes('--max-semi-space-size'));
  return set ? [...execArgv] : [...execArgv, `--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`];
}

type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

/**
 * For a single gateway process (`workers: 1`, the default on ≤ 2 CPUs): the workers' cap above,
 * which V8 takes only at start-up, so the process replaces itself with the same command plus the
 * flag (process.execve: same PID, same stdio; nothing is left behind). Costs one more Node
 * start (measured +0.3-0.4 s to "listening" at load 11 on 2 cores, where a bare `node -e 0`
 * took 0.2-0.3 s; less on a quiet machine). Returns when nothing is to be
 * done: the flag is already set (command line or NODE_OPTIONS), or this Node has no execve.
 */
export function restartWithYoungGenerationCap(
  execArgv = process.execArgv,
  nodeOptions = process.env.NODE_OPTIONS ?? '',
  execve: Execve | undefined = (process as { execve?: Execve }).execve?.bind(process),
): void {
  const wanted = workerExecArgv(execArgv, nodeOptions);
  if (wanted.length === execArgv.length || !execve) return;
  execve(process.execPath, [process.execPath, ...wanted, ...process.argv.slice(1)], process.env);
}
