// Child process for the storage tests (contract.ts, file.test.ts); not a test itself. It opens
// the storage a parent described (ChildStorageSpec, as JSON) and runs one workload:
//   counter <spec> <iterations> <lock|nolock>   print "ready", wait for "go" on stdin, then loop
//                                               [lock →] read counter → sleep → write counter+1 [→ unlock]
//                                               and print "done"
//   hold <spec> <lockName> <ttlMs>              take the lock, print "locked", then keep refreshing
//                                               it (every ttl/6) until killed
//   write <spec> <key> <bytes>                  put ever-changing uniform values forever, print
//                                               "writing" after the first put
//   bundle <spec> <prefix> <bytes>              putMany key.pem, meta.json, cert.pem forever (a new
//                                               <prefix>/d<i>/ and the same <prefix>/same/ each
//                                               round, values "<i>:" padded to <bytes>), print
//                                               "writing" after the first round
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import { silentLogger } from '../../src/util/log.ts';
import { FileStorage } from '../../src/storage/file/store.ts';
import { RedisStorage } from '../../src/storage/redis/store.ts';
import type { LockOptions, Storage } from '../../src/storage/storage.ts';

/** How a child process opens the same data as the parent's storage. */
export type ChildStorageSpec = { file: string } | { redis: { url: string; prefix: string } };

async function openSpec(spec: ChildStorageSpec): Promise<Storage> {
  if ('file' in spec) return new FileStorage(spec.file);
  return RedisStorage.connect({ ...spec.redis, logger: silentLogger() });
}

/**
 * File waiters poll (default every 100 ms: poll often so the workload stays short); Redis
 * waiters are woken by the release notification, so they keep the default slow poll.
 */
function waitOptions(spec: ChildStorageSpec): Pick<LockOptions, 'pollMs'> {
  return 'file' in spec ? { pollMs: 5 } : {};
}

async function waitForGo(): Promise<void> {
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim() === 'go') break;
  }
  rl.close();
}

const [mode, specArg, arg1, arg2] = process.argv.slice(2);
if (mode === undefined || specArg === undefined || arg1 === undefined || arg2 === undefined) {
  throw new Error('usage: storage-child.ts <counter|hold|write|bundle> <spec json> <arg> <arg>');
}
const spec = JSON.parse(specArg) as ChildStorageSpec;
const storage = await openSpec(spec);

if (mode === 'counter') {
  const iterations = Number(arg1);
  const useLock = arg2 === 'lock';
  process.stdout.write('ready\n');
  await waitForGo();
  for (let i = 0; i < iterations; i++) {
    const lock = useLock ? await storage.lock('counter', { ttlMs: 5_000, waitMs: 60_000, ...waitOptions(spec) }) : null;
    const value = Number((await storage.get('counter'))?.toString() ?? '0');
    await sleep(3);
    await storage.put('counter', String(value + 1));
    await lock?.release();
  }
  process.stdout.write('done\n');
  await storage.close();
  process.exit(0);
} else if (mode === 'hold') {
  const ttlMs = Number(arg2);
  const lock = await storage.lock(arg1, { ttlMs, waitMs: 30_000, ...waitOptions(spec) });
  process.stdout.write('locked\n');
  // A live holder refreshes its lease, so only its death lets the lock expire.
  for (;;) {
    await sleep(ttlMs / 6);
    await lock.refresh();
  }
} else if (mode === 'write') {
  const size = Number(arg2);
  for (let i = 1; ; i++) {
    await storage.put(arg1, Buffer.alloc(size, i % 256));
    if (i === 1) process.stdout.write('writing\n');
  }
} else if (mode === 'bundle') {
  const size = Number(arg2);
  const value = (i: number): string => `${i}:`.padEnd(size, 'x');
  const bundle = (dir: string, i: number) => [
    { key: `${dir}/key.pem`, value: value(i), opts: { private: true } },
    { key: `${dir}/meta.json`, value: value(i) },
    { key: `${dir}/cert.pem`, value: value(i) },
  ];
  for (let i = 1; ; i++) {
    await storage.putMany!([...bundle(`${arg1}/d${i}`, i), ...bundle(`${arg1}/same`, i)]);
    if (i === 1) process.stdout.write('writing\n');
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}
