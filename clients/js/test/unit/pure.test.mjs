// Unit tests of the browser client's pure functions. Run: node --test test/unit/
import test from 'node:test';
import assert from 'node:assert/strict';

import { nextDelay, parseRetryAfter, classifyTicketStatus, listenedTypes, streamUrl, shareName, createDeduper, DEFAULT_RETRY_BASE, DEFAULT_MAX_DELAY } from '../../sse-ticket.js';
import { uuid, of } from './fakes.mjs';

// ---------------------------------------------------------------- pure functions

test('nextDelay grows exponentially from the base and is capped', () => {
  const top = { base: 3000, maxDelay: 30000, random: () => 0.999999 };
  assert.deepEqual([0, 1, 2, 3, 4, 5, 20, 2000].map((f) => nextDelay(f, top)),
    [3000, 6000, 12000, 24000, 30000, 30000, 30000, 30000]);
  // defaults: base 3000 (the server's retry:), cap 30000
  assert.equal(nextDelay(0, { random: () => 0 }), DEFAULT_RETRY_BASE / 2);
  assert.equal(nextDelay(10, { random: () => 0 }), DEFAULT_MAX_DELAY / 2);
});

test('nextDelay jitter stays within half and all of the step', () => {
  for (const failures of [0, 1, 2, 3, 6]) {
    const step = Math.min(30000, 3000 * 2 ** failures);
    assert.equal(nextDelay(failures, { random: () => 0 }), step / 2);
    for (let i = 0; i < 200; i += 1) {
      const d = nextDelay(failures);
      assert.ok(d >= step / 2 && d <= step, `${d} outside [${step / 2}, ${step}]`);
    }
  }
  assert.equal(nextDelay(0, { base: 1000, random: () => 0.5 }), 750);
});

test('parseRetryAfter reads seconds and HTTP dates', () => {
  assert.equal(parseRetryAfter('7'), 7000);
  assert.equal(parseRetryAfter(' 0 '), 0);
  assert.equal(parseRetryAfter(null), undefined);
  assert.equal(parseRetryAfter('soon'), undefined);
  const now = Date.parse('2030-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('Tue, 01 Jan 2030 00:00:10 GMT', now), 10000);
  assert.equal(parseRetryAfter('Mon, 31 Dec 2029 00:00:00 GMT', now), 0);
});

test('classifyTicketStatus: 401/403 stop, 429 waits, 5xx backs off', () => {
  assert.equal(classifyTicketStatus(401), 'stop');
  assert.equal(classifyTicketStatus(403), 'stop');
  assert.equal(classifyTicketStatus(400), 'stop');
  assert.equal(classifyTicketStatus(429), 'retry-after');
  assert.equal(classifyTicketStatus(503), 'backoff');
  assert.equal(classifyTicketStatus(500), 'backoff');
  assert.equal(classifyTicketStatus(408), 'backoff');
});

test('listenedTypes adds message and drops reserved types', () => {
  assert.deepEqual(listenedTypes(), ['message']);
  assert.deepEqual(listenedTypes(['order.updated', 'message', 'ready', 'close', 'reset', 'error', 'open', 'order.updated']),
    ['message', 'order.updated']);
});

test('streamUrl appends an encoded lastEventId only when there is one', () => {
  assert.equal(streamUrl('', '/stream?token=t', ''), '/stream?token=t');
  assert.equal(streamUrl('https://e.x', '/stream?token=t', uuid(1)), `https://e.x/stream?token=t&lastEventId=${uuid(1)}`);
  assert.equal(streamUrl('', '/stream?token=t', 'a b&c'), '/stream?token=t&lastEventId=a%20b%26c');
});

test('shareName separates base URL, topic set, event types and share key, ignoring topic order', () => {
  const a = shareName({ baseUrl: 'https://e.x/', topics: ['b', 'a'], shareKey: 'alice' });
  assert.equal(a, shareName({ baseUrl: 'https://e.x', topics: ['a', 'b', 'a'], shareKey: 'alice' }));
  assert.ok(a.startsWith('sse-ticket:'));
  assert.ok(a.includes('https://e.x') && a.includes('alice'));
  assert.notEqual(a, shareName({ baseUrl: 'https://e.x', topics: ['a', 'b'], shareKey: 'bob' }));
  assert.notEqual(a, shareName({ baseUrl: 'https://e.x', topics: ['a'], shareKey: 'alice' }));
  assert.notEqual(a, shareName({ baseUrl: 'https://other', topics: ['a', 'b'], shareKey: 'alice' }));
  assert.notEqual(a, shareName({ baseUrl: 'https://e.x', topics: ['a', 'b'], eventTypes: ['x'], shareKey: 'alice' }));
  assert.equal(shareName({ topics: ['a'] }), shareName({ topics: ['a'], shareKey: undefined }));
});

test('createDeduper drops repeated ids, forgets the oldest beyond capacity, passes empty ids', () => {
  const seen = createDeduper(3);
  assert.equal(seen.check(uuid(1)), true);
  assert.equal(seen.check(uuid(1)), false);
  assert.equal(seen.check(''), true);
  assert.equal(seen.check(''), true);
  seen.check(uuid(2));
  seen.check(uuid(3));
  assert.equal(seen.check(uuid(2)), false);
  seen.check(uuid(4)); // evicts uuid(1)
  assert.equal(seen.size, 3);
  assert.equal(seen.has(uuid(1)), false);
  assert.equal(seen.check(uuid(1)), true);
});
