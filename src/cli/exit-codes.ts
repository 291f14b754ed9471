// The exit codes of the admin commands (`certgate domains ...`, `certgate certs ...`), one per
// kind of outcome, so a script can tell "fix the request" from "fix the connection" without
// reading messages. `--help` and docs/cli.md list them; keep the three in step.

/**
 * Exit codes: 0 done; 1 the admin API answered with an error (refused or failed the request);
 * 2 bad usage or config; 3 the admin API cannot be reached (refused, timed out, not an admin
 * API); 4 unauthorized (no or wrong CERTGATE_ADMIN_TOKEN); 5 not found (name not bound, no
 * certificate).
 */
export const EXIT = {
  ok: 0,
  apiError: 1,
  usage: 2,
  unreachable: 3,
  unauthorized: 4,
  notFound: 5,
} as const;

/** The exit codes as `--help` prints them. */
export const EXIT_HELP = `Exit codes:
  0  done
  1  the admin API answered with an error (request refused or failed, e.g. issuance failed)
  2  bad usage or config (unknown option, missing NAME, unreadable --config)
  3  the admin API cannot be reached (connection refused, timed out, not a certgate admin API)
  4  unauthorized: CERTGATE_ADMIN_TOKEN missing or wrong
  5  not found: the name is not bound, or has no certificate`;

/**
 * A command that cannot finish: `message` names the domain (when there is one) and the step,
 * `exitCode` is one of EXIT; `body` is the admin API's JSON answer when it gave one.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
