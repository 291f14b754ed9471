// The Lua scripts of the Redis backend. Redis runs a script atomically, so each of these is one
// indivisible step: a value and its index entry change together (a concurrent list() sees the
// key with its value or neither; a crash is all-or-nothing), and a lock is refreshed or
// released only by the holder whose value is still in it (release also publishes the
// notification, atomically with the delete). In Redis Cluster every key a script touches must
// be in one hash slot, which is why the key prefix carries a hash tag there (options.ts).
import { createHash } from 'node:crypto';

import { ErrorReply, type RedisArgument } from 'redis';

import type { Driver } from './drivers.ts';

/** A Lua script and its SHA1 (EVALSHA saves sending the source each time). */
export class Script {
  /** SHA1 of the source, the EVALSHA handle. */
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

/** Sets a value and indexes it. KEYS[1] value key, KEYS[2] index, KEYS[3] private set; ARGV[1] value, ARGV[2] storage key, ARGV[3] '1' when private. */
export const PUT = new Script(`
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
if ARGV[3] == '1' then redis.call('SADD', KEYS[3], ARGV[2]) else redis.call('SREM', KEYS[3], ARGV[2]) end
return 1
`);


/** Deletes a value and its index entries. KEYS as for PUT; ARGV[1] storage key. */
export const DELETE = new Script(`
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`);


/** Extends a lock if it is still ours. KEYS[1] lock key; ARGV[1] our value, ARGV[2] ttl in ms. Returns 1 if extended. */
export const REFRESH = new Script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`);


/** Deletes a lock if it is still ours and publishes a notification. KEYS[1] lock key; ARGV[1] our value, ARGV[2] channel, ARGV[3] message. */
export const RELEASE = new Script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
`);

/**
 * Runs `script` by EVALSHA, falling back to EVAL when the server does not have it cached yet
 * (after a restart or a failover). Routed by the first key (Cluster).
 */
export async function evalScript(driver: Driver, script: Script, keys: string[], args: RedisArgument[]): Promise<unknown> {
  const tail: RedisArgument[] = [String(keys.length), ...keys, ...args];
  const route = keys[0];
  try {
    return await driver.send(['EVALSHA', script.sha, ...tail], route, false);
  } catch (err) {
    if (!(err instanceof ErrorReply) || !err.message.startsWith('NOSCRIPT')) throw err;
    return await driver.send(['EVAL', script.source, ...tail], route, false);
  }
}
