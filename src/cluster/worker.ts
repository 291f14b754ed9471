// A cluster worker's start: it takes the config the primary already read and validated (over
// the IPC channel) instead of parsing the command line and the config file again, so it never
// loads commander, yaml or zod; it loads the gateway's modules while the config is on its way.
import { createLogger } from '../util/log.ts';
import { runGateway } from './run.ts';
import { requestConfig } from './workers.ts';

/** A cluster worker's main: asks the primary for the config, then runs the gateway (never returns). */
export async function runWorker(): Promise<void> {
  const server = import('../gateway/index.ts');
  server.catch(() => {}); // reported where it is awaited
  const config = await requestConfig();
  const logger = createLogger({ level: config.log.level });
  await runGateway(config, logger, { inWorker: true, server });
}
