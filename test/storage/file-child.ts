// Child process for test/storage/file.test.ts (not a test itself). Usage:
//   counter <root> <iterations> <lock|nolock>   print "ready", wait for "go" on stdin, then loop
//                                               lock → read counter → sleep → write counter+1 → unlock
//   hold <root> <lockName> <ttlMs>              take the lock, print "locked", then idle forever
//   write <root> <key> <bytes>                  put ever-changing uniform values forever, print
//                                               "writing" after the first put
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import { FileStorage } from '../../src/storage/file.ts';

const [mode, root, arg1, arg2] = process.argv.slice(2);
if (mode === undefined || root === undefined || arg1 === undefined || arg2 === undefined) {
  throw new Error('usage: file-child.ts <counter|hold|write> <root> <arg> <arg>');
}
const storage = new FileStorage(root);

async function waitForGo(): Promise<void> {
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim() === 'go') break;
  }
  rl.close();
}

if (mode === 'counter') {
  const iterations = Number(arg1);
  const useLock = arg2 === 'lock';
  process.stdout.write('ready\n');
  await waitForGo();
  for (let i = 0; i < iterations; i++) {
    const lock = useLock ? await storage.lock('counter', { ttlMs: 5_000, waitMs: 15_000, pollMs: 5 }) : null;
    const value = Number((await storage.get('counter'))?.toString() ?? '0');
    await sleep(3);
    await storage.put('counter', String(value + 1));
    await lock?.release();
  }
  process.stdout.write('done\n');
} else if (mode === 'hold') {
  await storage.lock(arg1, { ttlMs: Number(arg2), waitMs: 5_000, pollMs: 10 });
  process.stdout.write('locked\n');
  setInterval(() => {}, 1_000_000);
} else if (mode === 'write') {
  const size = Number(arg2);
  for (let i = 1; ; i++) {
    await storage.put(arg1, Buffer.alloc(size, i % 256));
    if (i === 1) process.stdout.write('writing\n');
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}
