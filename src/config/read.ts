// Reads a config file into a plain value (YAML, or JSON when the name ends in .json), without
// validating it: the command line reads the file first, so that a primary can fork its workers
// before it loads the schema (zod) and validates (src/config/load.ts).
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { commonJsExports } from '../util/commonjs.ts';

/** A config that cannot be used: `message` names the file and every problem (key: what to fix). */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly file: string | undefined,
    readonly problems: string[],
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** A config file as read from disk, before validation. */
export interface ConfigFile {
  /** Absolute path of the file. */
  path: string;
  /** Its parsed, not yet validated, content. */
  raw: unknown;
}

/** Reads and parses a config file (YAML, or JSON when its name ends in .json); throws ConfigError. */
export async function readConfigFile(file: string): Promise<ConfigFile> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new ConfigError(`cannot read config file ${path}: ${reason}`, path, [reason]);
  }
  return { path, raw: await parseConfigText(text, path) };
}

/**
 * The not yet validated content of config text, YAML or (when `path` ends in .json) JSON; empty
 * text is `{}`. Throws ConfigError, never anything else, whatever the text.
 */
export async function parseConfigText(text: string, path: string): Promise<unknown> {
  const json = path.endsWith('.json');
  try {
    // yaml is loaded only for YAML files (~50 ms of start-up).
    const raw: unknown = json ? JSON.parse(text) : commonJsExports(await import('yaml')).parse(text, { prettyErrors: true });
    return raw ?? {};
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0] ?? 'syntax error';
    throw new ConfigError(`config file ${path} is not valid ${json ? 'JSON' : 'YAML'}: ${reason}`, path, [reason]);
  }
}
