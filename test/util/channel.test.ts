// The typed bus channel (src/util/channel.ts) on the in-process bus: JSON out, parsed and checked
// in; malformed or rejected messages never reach a handler; with dropOwn a channel object does not
// hear its own messages but every other one does.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalBus } from '../../src/storage/bus.ts';
import { channel, withStringField } from '../../src/util/channel.ts';

interface Ping {
  name: string;
}
const parsePing = (value: unknown): Ping | undefined => withStringField(value, 'name');

test('messages that do not parse, or that parse rejects, never reach the handler', async () => {
  const bus = new LocalBus();
  const heard: Ping[] = [];
  const stop = await channel(bus, 'pings', parsePing).subscribe((m) => heard.push(m));
  for (const raw of ['{not json', 'null', '42', '{"name":7}', '{"other":"x"}', '{"name":"ok"}']) await bus.publish('pings', raw);
  await sleep(10);
  await stop();
  assert.deepEqual(heard, [{ name: 'ok' }]);
});

test('with dropOwn, a channel object does not hear itself; another on the same bus does', async () => {
  const bus = new LocalBus();
  const a = channel(bus, 'pings', parsePing, { dropOwn: true });
  const b = channel(bus, 'pings', parsePing, { dropOwn: true });
  const heardByA: string[] = [];
  const heardByB: string[] = [];
  const stops = [await a.subscribe((m) => heardByA.push(m.name)), await b.subscribe((m) => heardByB.push(m.name))];
  await a.publish({ name: 'from-a' });
  await b.publish({ name: 'from-b' });
  await sleep(10);
  for (const stop of stops) await stop();
  assert.deepEqual(heardByA, ['from-b']);
  assert.deepEqual(heardByB, ['from-a']);
});

test('without dropOwn, every subscriber hears every message, the sender included', async () => {
  const bus = new LocalBus();
  const events = channel(bus, 'events', parsePing);
  const heard: string[] = [];
  const stop = await events.subscribe((m) => heard.push(m.name));
  await events.publish({ name: 'mine' });
  await sleep(10);
  await stop();
  assert.deepEqual(heard, ['mine']);
});
