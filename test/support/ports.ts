// Ports for test servers. A port the kernel hands out for `listen(0)` comes from the ephemeral
// range, the same range every outgoing connection and every other test's `listen(0)` draws from,
// so a port a test closes between two gateways (Pebble validates against fixed ports) can be
// handed to another test file at once. Ports are therefore picked at random below the ephemeral
// range, where nothing is assigned automatically, and checked by binding them.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const LOWEST = 10_000;

function ephemeralStart(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low !== undefined && Number.isInteger(low) && low > LOWEST + 1000) return low;
  } catch {
    // Not Linux: fall through.
  }
  return 32_768;
}

const highest = ephemeralStart() - 1;

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const address = server.address();
      const bound = address !== null && typeof address !== 'string' ? address.port : undefined;
      server.close(() => resolve(bound));
    });
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago, outside the kernel's ephemeral range. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await tryListen(LOWEST + Math.floor(Math.random() * (highest - LOWEST + 1)));
    if (port !== undefined) return port;
  }
  const port = await tryListen(0);
  if (port === undefined) throw new Error('freePort: no free port on 127.0.0.1');
  return port;
}
