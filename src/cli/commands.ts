// `certgate domains add|rm|ls|status` and `certgate certs status|renew`: the admin API from the
// command line. Each command:
//   1. parses its arguments (commander; a usage error exits 2, not commander's 1)
//   2. finds the admin API and its token (admin-client.ts resolveAdminTarget)
//   3. makes its call(s): one, or for `ls` one per page until --limit or, with --all, the end
//   4. prints a table, or with --json the API's JSON as it came (`ls`: the pages' items joined)
//   5. exits with the code that says what happened (exit-codes.ts); errors go to stderr, naming
//      the domain and the step, and with --json the API's error answer also goes to stdout
import type { Command } from 'commander';
import type { AdminClient } from './admin-client.ts';
import { CliError, EXIT, EXIT_HELP } from './exit-codes.ts';
import type { CertificateView, HostnameView } from './format.ts';

type Commander = typeof import('commander');

/** Options every admin command takes. */
interface CommonOptions {
  admin?: string;
  config?: string;
  json?: boolean;
}

/** The lifecycle statuses `ls --status` filters on (the admin API's hostname statuses). */
const STATUSES = ['pending', 'active', 'failed', 'blocked', 'disabled'];
/** The admin API's largest page. */
const MAX_PAGE = 1000;
/** A renewal orders at the CA now (validation, finalisation, download). */
const RENEW_TIMEOUT_MS = 10 * 60_000;

/** Adds the `domains` and `certs` command groups to `program` (commander passed in: it is loaded lazily). */
export function addAdminCommands(program: Command, commander: Commander): void {
  const group = (name: string, description: string): Command =>
    program
      .command(name)
      .description(description)
      .addHelpText('after', `\n${EXIT_HELP}\n`)
      // Inherited by the subcommands added below: their usage errors exit 2 as well.
      .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.usage));
  addDomainCommands(group('domains', 'bind, unbind, list and inspect custom domains through the admin API'), commander);
  addCertCommands(group('certs', 'inspect and renew certificates through the admin API'), commander);
}

/** --admin, --config, --json, and the exit codes in --help. */
function leaf(parent: Command, commander: Commander, usage: string, description: string): Command {
  return parent
    .command(usage)
    .description(description)
    .addOption(new commander.Option('--admin <url>', 'admin API URL (default: listen.admin of --config, else http://127.0.0.1:2019); token from CERTGATE_ADMIN_TOKEN'))
    .addOption(new commander.Option('-c, --config <file>', 'config file to read listen.admin and admin.token from').env('CERTGATE_CONFIG'))
    .option('--json', "print the admin API's JSON answer as it is, for scripts")
    .addHelpText('after', `\n${EXIT_HELP}\n`);
}

function addDomainCommands(domains: Command, commander: Commander): void {
  leaf(domains, commander, 'add <name>', 'bind NAME (or replace its binding): PUT /v1/domains/NAME')
    .option('--upstream <url>', 'origin this host is proxied to, like http://10.0.0.7:8080 (default: the configured routes)')
    .option('--tenant <tenant>', 'tenant the binding belongs to')
    .option('--label <label>', 'free-form label')
    .option('--disabled', 'bind it switched off: no certificate issued or served until enabled')
    .action((name: string, opts: CommonOptions & { upstream?: string; tenant?: string; label?: string; disabled?: boolean }) =>
      runAdmin(opts, async (client) => {
        // `status: disabled` is the switch's spelling every admin API version accepts (newer ones map it to enabled: false).
        const body = { ...pick(opts, ['upstream', 'tenant', 'label']), ...(opts.disabled ? { status: 'disabled' } : {}) };
        const { status, json } = await client.call('PUT', `/v1/domains/${encodeURIComponent(name)}`, { name, step: 'bind', body, expect: [200, 201] });
        if (opts.json) return printJson(json);
        const { hostnameDetails } = await import('./format.ts');
        process.stdout.write(`${status === 201 ? 'bound' : 'binding replaced'}: ${name}\n${hostnameDetails(json as HostnameView)}`);
      }),
    );

  leaf(domains, commander, 'rm <name>', "unbind NAME everywhere and delete its certificate: DELETE /v1/domains/NAME")
    .action((name: string, opts: CommonOptions) =>
      runAdmin(opts, async (client) => {
        await client.call('DELETE', `/v1/domains/${encodeURIComponent(name)}`, { name, step: 'unbind', expect: [204] });
        // The API answers 204 without a body; --json still prints one object a script can parse.
        if (opts.json) return printJson({ name, unbound: true });
        process.stdout.write(`unbound: ${name}\n`);
      }),
    );

  leaf(domains, commander, 'ls', 'list bound domains with their status: GET /v1/domains, following its pages')
    .addOption(new commander.Option('--status <status>', 'only domains with this status').choices(STATUSES))
    .addOption(new commander.Option('--limit <n>', 'at most this many domains').argParser(positiveInt(commander)).default(100))
    .option('--all', 'every domain (all pages)')
    .action((opts: CommonOptions & { status?: string; limit: number; all?: boolean }) =>
      runAdmin(opts, async (client) => {
        const { items, nextCursor } = await listHostnames(client, opts.status, opts.all ? Infinity : opts.limit);
        if (opts.json) return printJson({ items, nextCursor });
        const { hostnameTable } = await import('./format.ts');
        process.stdout.write(hostnameTable(items));
        if (nextCursor !== null) process.stderr.write(`(more domains after ${items.at(-1)?.name ?? 'these'}: --limit N or --all to see them)\n`);
      }),
    );

  leaf(domains, commander, 'status <name>', "NAME's binding, status, DNS/CAA/ownership checks and what to fix: GET /v1/domains/NAME")
    .option('--check', 're-run the DNS, CAA and ownership checks now (?check=true)')
    .action((name: string, opts: CommonOptions & { check?: boolean }) =>
      runAdmin(opts, async (client) => {
        const { json } = await client.call('GET', `/v1/domains/${encodeURIComponent(name)}${opts.check ? '?check=true' : ''}`, { name, step: opts.check ? 'check' : 'read status' });
        if (opts.json) return printJson(json);
        const { hostnameDetails } = await import('./format.ts');
        process.stdout.write(hostnameDetails(json as HostnameView));
      }),
    );
}

function addCertCommands(certs: Command, commander: Commander): void {
  leaf(certs, commander, 'status <name>', "NAME's certificate: issuer, validity, next renewal, failures: GET /v1/certificates/NAME").action((name: string, opts: CommonOptions) =>
    runAdmin(opts, async (client) => {
      const { json } = await client.call('GET', `/v1/certificates/${encodeURIComponent(name)}`, { name, step: 'read certificate' });
      if (opts.json) return printJson(json);
      const { certificateDetails } = await import('./format.ts');
      process.stdout.write(certificateDetails(json as CertificateView));
    }),
  );

  leaf(certs, commander, 'renew <name>', "renew NAME's certificate now, at the CA: POST /v1/certificates/NAME/renew").action((name: string, opts: CommonOptions) =>
    runAdmin(opts, async (client) => {
      const { json } = await client.call('POST', `/v1/certificates/${encodeURIComponent(name)}/renew`, { name, step: 'renew', timeoutMs: RENEW_TIMEOUT_MS });
      if (opts.json) return printJson(json);
      const { certificateDetails } = await import('./format.ts');
      process.stdout.write(`renewed: ${name}\n${certificateDetails(json as CertificateView)}`);
    }),
  );
}

/**
 * Step 3 of `ls`: pages in name order until `max` items or the last page. The API filters on
 * ?status= (a filtered page may hold fewer items, even none, and still have a next cursor); the
 * items are filtered here again, which changes nothing then, so that an older admin API, which
 * ignores ?status=, lists only what was asked for too.
 */
async function listHostnames(client: AdminClient, status: string | undefined, max: number): Promise<{ items: HostnameView[]; nextCursor: string | null }> {
  const items: HostnameView[] = [];
  let cursor: string | null = '';
  while (cursor !== null && items.length < max) {
    const query = new URLSearchParams({ limit: String(Math.min(max - items.length, MAX_PAGE)) });
    if (cursor) query.set('cursor', cursor);
    if (status) query.set('status', status);
    const { json } = await client.call('GET', `/v1/domains?${query}`, { step: 'list domains' });
    const page = json as { items: HostnameView[]; nextCursor: string | null };
    items.push(...page.items.filter((h) => status === undefined || h.status === status));
    cursor = page.nextCursor;
  }
  return { items, nextCursor: cursor };
}

/** Steps 2 and 5 around a command's calls: the client, then the exit code and error output. */
async function runAdmin(opts: CommonOptions, work: (client: AdminClient) => Promise<void>): Promise<void> {
  try {
    const { AdminClient, resolveAdminTarget } = await import('./admin-client.ts');
    await work(new AdminClient(await resolveAdminTarget(opts)));
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.exitCode = err.exitCode;
    if (opts.json && err.body !== undefined) printJson(err.body);
    process.stderr.write(`certgate: ${err.message}\n`);
    const { failureLines } = await import('./format.ts');
    // A "no certificate" answer says why: the failures since the last success.
    if (!opts.json && err.body) for (const line of failureLines(err.body as CertificateView)) process.stderr.write(`  ${line}\n`);
  }
}

function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** The given keys of `opts` that are set. */
function pick<T extends object, K extends keyof T>(opts: T, names: K[]): Partial<Pick<T, K>> {
  return Object.fromEntries(names.filter((k) => opts[k] !== undefined).map((k) => [k, opts[k]])) as Partial<Pick<T, K>>;
}

function positiveInt(commander: Commander): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new commander.InvalidArgumentError('must be a whole number of 1 or more');
    return n;
  };
}
