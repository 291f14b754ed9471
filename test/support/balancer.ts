// A TCP load balancer for cluster tests, like an L4 NLB in front of gateway instances: it
// listens on one port (the one Pebble validates against) and spreads connections over the
// instances' ports round-robin. `hold` makes it accept and stall connections instead, which
// freezes a validation (and so an issuance) half-way.
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface Balancer {
  port: number;
  backends: number[];
  /** Connections forwarded to each backend port. */
  readonly forwarded: Map<number, number>;
  hold: boolean;
  close(): Promise<void>;
}

export async function startBalancer(port: number, backends: number[]): Promise<Balancer> {
  const sockets = new Set<Socket>();
  let next = 0;
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const balancer: Balancer = {
    port,
    backends,
    forwarded: new Map(),
    hold: false,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((client) => {
    track(client);
    if (balancer.hold || balancer.backends.length === 0) return; // stall: never forwarded
    const target = balancer.backends[next++ % balancer.backends.length]!;
    balancer.forwarded.set(target, (balancer.forwarded.get(target) ?? 0) + 1);
    const upstream = connect({ host: '127.0.0.1', port: target });
    track(upstream);
    client.pipe(upstream).pipe(client);
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return balancer;
}
