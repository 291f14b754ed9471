// A further certgate beside a section's set, on its own ports, so that a variant (access log on,
// `tls.denied: fallback`) takes its turns in the same rounds as the others rather than minutes
// later on a machine whose load has changed. It shares certgate's rig (Pebble, ACME proxy): fine
// for sections that order nothing, or only names of their own.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../test/support/ports.ts';
import type { Ctx } from './context.ts';
import { startGateway, waitUntilServing, type GatewayKind, type GatewaySpec, type RunningGateway } from './gateways.ts';
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
  const extra = await startExtraGateway(ctx, 'certgate', label, { allow: ['**.bench.test'], ...spec }, { prepare, readyName: 'localhost', anyCertificate: true, timeoutMs: 60_000 });
  log(`${label}: extra certgate up on 127.0.0.1:${extra.port} (pid ${extra.gw.pid})`);
  return extra;
}

/**
 * Starts a gateway of `kind` beside the section's set: its own directory (under `label`) and
 * ports, `prepare` filling its storage first, the rig's Pebble and the bench's ask and upstream;
 * resolves once it serves `readyName` (any certificate with `anyCertificate`). stop() keeps its log.
 */
export async function startExtraGateway(
  ctx: Ctx,
  kind: GatewayKind,
  label: string,
  spec: Partial<GatewaySpec>,
  ready: { prepare?: ((storageDir: string) => Promise<void>) | undefined; readyName: string; anyCertificate?: boolean; timeoutMs: number },
): Promise<ExtraGateway> {
  const rig = ctx.rigs.get(kind)!;
  const dir = join(ctx.workRoot, `${label}-${kind}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'storage'), { recursive: true, mode: 0o700 });
  await ready.prepare?.(join(dir, 'storage'));
  const httpsPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === httpsPort) httpPort = await freePort();
  const gw = await startGateway({
    kind,
    httpsPort,
    httpPort,
    storageDir: join(dir, 'storage'),
    workDir: dir,
    acmeDirectory: rig.acme.directoryUrl,
    acmeRootPath: rig.pebble.listenerCaPath,
    ask: ctx.ask.url,
    upstreamPort: ctx.upstream.port,
    certgateEntry: ctx.certgate.entry,
    ...spec,
  });
  const stop = async (): Promise<void> => {
    await gw.stop();
    await copyFile(join(dir, `${kind}.log`), join(ctx.logsRoot, `${label}-${kind}.log`)).catch(() => undefined);
  };
  try {
    await waitUntilServing(gw, ready.readyName, { timeoutMs: ready.timeoutMs, ...(ready.anyCertificate ? { anyCertificate: true, intervalMs: 5 } : {}) });
  } catch (err) {
    await stop();
    throw err;
  }
  return { port: httpsPort, gw, stop };
}
