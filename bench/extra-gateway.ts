// A further certgate beside a section's set, on its own ports, so that a variant (access log on,
// `tls.denied: fallback`) takes its turns in the same rounds as the others rather than minutes
// later on a machine whose load has changed. It shares certgate's rig (Pebble, ACME proxy): fine
// for sections that order nothing, or only names of their own.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../test/support/ports.ts';
import type { Ctx } from './context.ts';
import { startGateway, waitUntilServing, type GatewaySpec, type RunningGateway } from './gateways.ts';
import { log } from './util.ts';

/** A running extra certgate: its HTTPS port, the process, and stop() (which keeps its log). */
export interface ExtraGateway {
  port: number;
  gw: RunningGateway;
  stop(): Promise<void>;
}

/**
 * Starts certgate with `spec` over the bench's usual certgate config, `prepare` filling its
 * storage first; resolves once it answers TLS.
 */
export async function startExtraCertgate(ctx: Ctx, label: string, spec: Partial<GatewaySpec>, prepare?: (storageDir: string) => Promise<void>): Promise<ExtraGateway> {
  const rig = ctx.rigs.get('certgate')!;
  const dir = join(ctx.workRoot, `${label}-certgate`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'storage'), { recursive: true, mode: 0o700 });
  await prepare?.(join(dir, 'storage'));
  const httpsPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === httpsPort) httpPort = await freePort();
  const gw = await startGateway({
    kind: 'certgate',
    httpsPort,
    httpPort,
    storageDir: join(dir, 'storage'),
    workDir: dir,
    acmeDirectory: rig.acme.directoryUrl,
    acmeRootPath: rig.pebble.listenerCaPath,
    allow: ['**.bench.test'],
    ask: ctx.ask.url,
    upstreamPort: ctx.upstream.port,
    certgateEntry: ctx.certgate.entry,
    ...spec,
  });
  const stop = async (): Promise<void> => {
    await gw.stop();
    await copyFile(join(dir, 'certgate.log'), join(ctx.logsRoot, `${label}-certgate.log`)).catch(() => undefined);
  };
  try {
    await waitUntilServing(gw, 'localhost', { timeoutMs: 60_000, anyCertificate: true, intervalMs: 5 });
  } catch (err) {
    await stop();
    throw err;
  }
  log(`${label}: extra certgate up on 127.0.0.1:${httpsPort} (pid ${gw.pid})`);
  return { port: httpsPort, gw, stop };
}
