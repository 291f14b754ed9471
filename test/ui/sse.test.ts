// The dashboard's Server-Sent Events parser (src/ui/sse.ts): the dashboard reads GET /v1/events
// with fetch() so it can send the token in a header, and so parses the stream itself. Chunks
// arrive split anywhere (even inside a \r\n), which must not change the messages.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SseParser, type SseMessage } from '../../src/ui/sse.ts';

const parseAll = (chunks: string[]): SseMessage[] => {
  const parser = new SseParser();
  return chunks.flatMap((chunk) => parser.push(chunk));
};

test('the admin API stream: comments skipped, named events with JSON data and ids', () => {
  const stream = ': certgate events\n\nid: 1\nevent: domain-bound\ndata: {"name":"a.example.com"}\n\n: keep-alive\n\nid: 2\nevent: issuance-failed\ndata: {"domain":"b.example.com"}\n\n';
  assert.deepEqual(parseAll([stream]), [
    { event: 'domain-bound', data: '{"name":"a.example.com"}', id: '1' },
    { event: 'issuance-failed', data: '{"domain":"b.example.com"}', id: '2' },
  ]);
});

test('CRLF and CR line ends, multi-line data, no space after the colon, an unfinished message', () => {
  assert.deepEqual(parseAll(['data:a\r\ndata: b\r\rdata: c\n\ndata: open']), [
    { event: 'message', data: 'a\nb' },
    { event: 'message', data: 'c' },
  ]);
});

test('any split of a stream into chunks gives the same messages (property)', () => {
  const message = fc.record({
    event: fc.constantFrom('domain-bound', 'renewed', 'issuance-failed'),
    data: fc.array(fc.string({ unit: fc.constantFrom('a', 'b', ' ', ':', '{', '"', 'é') }), { minLength: 1, maxLength: 3 }),
    eol: fc.constantFrom('\n', '\r\n', '\r'),
  });
  fc.assert(
    fc.property(fc.array(message, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 8 }), (messages, cuts) => {
      const text = messages.map((m) => `: c${m.eol}event: ${m.event}${m.eol}${m.data.map((d) => `data: ${d}${m.eol}`).join('')}${m.eol}`).join('');
      const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
      const chunks = [0, ...points].map((p, i, all) => text.slice(p, all[i + 1] ?? text.length));
      const expected = messages.map((m) => ({ event: m.event, data: m.data.join('\n') }));
      assert.deepEqual(parseAll(chunks), expected);
      assert.deepEqual(parseAll([text]), expected);
    }),
    { seed: 42, numRuns: 300 },
  );
});
