// `npm run demo`: a local Pebble CA, a demo upstream and certgate, wired together. Prints
// commands to try, then runs until Ctrl-C. Ports are free random ones unless DEMO_HTTPS_PORT /
// DEMO_HTTP_PORT are set; everything lives in a temp dir removed on exit.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startPebble } from '../test/support/pebble.ts';
import { freePort } from '../test/support/ports.ts';
import { CERTGATE_BIN, runProcess } from '../test/support/process.ts';

const dir = await mkdtemp(join(tmpdir(), 'certgate-demo-'));
const httpsPort = Number(process.env.DEMO_HTTPS_PORT) || (await freePort());
const httpPort = Number(process.env.DEMO_HTTP_PORT) || (await freePort());
const adminPort = Number(process.env.DEMO_ADMIN_PORT) || (await freePort());
const adminToken = randomBytes(24).toString('hex');

const pebble = await startPebble({ httpPort, tlsPort: httpsPort });
const rootFile = join(dir, 'pebble-root.pem');
await writeFile(rootFile, await pebble.rootPem());

// The demo upstream: what a customer's site would be.
const upstream = createServer((req, res) => {
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end(`Hello from the demo upstream!\nhost: ${req.headers.host}\npath: ${req.url}\nx-forwarded-for: ${req.headers['x-forwarded-for']}\nx-forwarded-proto: ${req.headers['x-forwarded-proto']}\n`);
});
await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

const configFile = join(dir, 'certgate.yaml');
await writeFile(
  configFile,
  stringify({
    listen: { https: `127.0.0.1:${httpsPort}`, http: `127.0.0.1:${httpPort}`, admin: `127.0.0.1:${adminPort}` },
    admin: { token: adminToken },
    storage: { file: { path: join(dir, 'data') } },
    acme: { directory: pebble.directoryUrl, trustedRoots: [pebble.listenerCaPath], email: 'demo@example.com' },
    // *.demo.test by pattern; any other name once the platform binds it through the admin API.
    onDemand: { allow: ['*.demo.test'], registry: true },
    proxy: { upstream: upstreamUrl },
  }),
);

const gateway = runProcess([CERTGATE_BIN, 'run', '--config', configFile], {});
gateway.child.stdout!.pipe(process.stderr);
gateway.child.stderr!.pipe(process.stderr);

let stopping = false;
async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await gateway.stop();
  upstream.close();
  await pebble.stop();
  await rm(dir, { recursive: true, force: true });
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

try {
  await gateway.waitFor(/certgate listening/, 30_000);
} catch (err) {
  process.stderr.write(`demo: certgate did not start: ${(err as Error).message}\n`);
  await stop(1);
}

const admin = (method: string, path: string, body?: string) =>
  `curl -X ${method} -H 'authorization: Bearer ${adminToken}'${body ? ` -H 'content-type: application/json' -d '${body}'` : ''} http://127.0.0.1:${adminPort}${path}`;
const curl = (name: string) => `curl --cacert ${rootFile} --resolve ${name}:${httpsPort}:127.0.0.1 https://${name}:${httpsPort}/`;
process.stdout.write(`
certgate demo is running.
  gateway   https://127.0.0.1:${httpsPort} (HTTPS), http://127.0.0.1:${httpPort} (http-01 + redirects)
  CA        Pebble at ${pebble.directoryUrl}; its root is in ${rootFile}
  policy    any name under *.demo.test gets a certificate on its first request
  admin API http://127.0.0.1:${adminPort} (bearer token ${adminToken}; description at /openapi.json)
  dashboard http://127.0.0.1:${adminPort}/ui/ (sign in with that token)
  config    ${configFile}

Try (the first request to a name obtains its certificate during the handshake):
  ${curl('hello.demo.test')}
  ${curl('another.demo.test')}
A name outside the policy is refused in the handshake (an unrecognized_name alert; 'tls: { denied: fallback }' serves the fallback certificate instead):
  ${curl('not-allowed.example.com')}
Bind a customer's domain through the admin API, then it works too:
  ${admin('PUT', '/v1/domains/blog.alice.example', '{"tenant": "alice"}')}
  ${curl('blog.alice.example')}
  ${admin('GET', '/v1/certificates/blog.alice.example')}
  ${admin('GET', '/metrics')}

Gateway logs (JSON) follow on stderr. Ctrl-C stops everything.
DEMO READY
`);
