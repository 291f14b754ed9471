// The trivial upstream both gateways proxy to, run as its own process so it never shares an
// event loop with the bench: 200 "ok\n" to every request, keep-alive. Prints its port as one
// JSON line on stdout, exits when stdin closes (its parent went away) or on SIGTERM.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const body = Buffer.from('ok\n');
const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  // Drain any request body, then answer.
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.maxRequestsPerSocket = 0;
server.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0) }, () => {
  process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n');
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
