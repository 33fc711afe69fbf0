// Unit tests of the sse-ticket browser client, with fake fetch, EventSource,
// timers, Web Locks and BroadcastChannel. Run: node --test test/unit/
import test from 'node:test';
import assert from 'node:assert/strict';

import {
  connect,
  nextDelay,
  parseRetryAfter,
  classifyTicketStatus,
  listenedTypes,
  streamUrl,
  shareName,
  createDeduper,
  DEFAULT_RETRY_BASE,
  DEFAULT_MAX_DELAY,
} from '../../sse-ticket.js';

// ---------------------------------------------------------------- test doubles

/** Lets pending promise chains (fetch → json → EventSource) run to completion. */
async function settle() {
  for (let i = 0; i < 10; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

const uuid = (n) => `0193a000-0000-7000-8000-${String(n).padStart(12, '0')}`;

/** A fake EventSource class; every instance is recorded in `instances` (per class). */
function fakeEventSourceClass() {
  return class FakeEventSource {
    static instances = [];
    constructor(url) {
      this.url = url;
      this.closed = false;
      this.listeners = new Map();
      FakeEventSource.instances.push(this);
    }
    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, []);
      this.listeners.get(type).push(fn);
    }
    close() { this.closed = true; }
    /** Dispatches a frame: `data` is serialized unless already a string. */
    emit(type, data, id = '') {
      const event = { type, data: typeof data === 'string' ? data : JSON.stringify(data), lastEventId: id };
      for (const fn of this.listeners.get(type) ?? []) fn(event);
    }
    ready(sub = 'alice', topics = ['orders/*']) { this.emit('ready', { sub, topics }); }
    /** A native `error` Event: no data. */
    fail() { for (const fn of this.listeners.get('error') ?? []) fn({ type: 'error' }); }
  };
}

/** Manual timers: nothing runs until the test says so. */
function fakeTimers() {
  let next = 1;
  const pending = new Map();
  return {
    pending,
    setTimeout: (fn, ms) => { const id = next++; pending.set(id, { fn, ms }); return id; },
    clearTimeout: (id) => { pending.delete(id); },
    /** The delays of the scheduled timers. */
    delays: () => [...pending.values()].map((t) => t.ms),
    /** Runs every scheduled timer (once). */
    async runAll() {
      const due = [...pending.entries()];
      pending.clear();
      for (const [, t] of due) t.fn();
      await settle();
    },
  };
}

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });

const ticketResponse = (n = 1, topics = ['orders/*']) => json(200, {
  ticket: `ticket-${n}`,
  expires_in: 60,
  expires_at: '2030-01-01T00:00:00Z',
  stream_url: `/stream?token=ticket-${n}`,
  topics,
});

/**
 * A fake fetch answering from `script` (functions or Responses, in order); when
 * the script runs out, it issues ticket after ticket. Records every call.
 */
function fakeFetch(script = []) {
  const calls = [];
  let issued = 0;
  const fetch = async (url, init) => {
    calls.push({ url, init, body: init?.body ? JSON.parse(init.body) : undefined });
    const step = script.shift();
    if (typeof step === 'function') return step(url, init);
    if (step) return step;
    issued += 1;
    return ticketResponse(issued);
  };
  return { fetch, calls };
}

/** An in-process Web Locks manager: exclusive locks only, with abortable waiting. */
function fakeLocks() {
  const held = new Set();
  const waiting = new Map(); // name -> [{grant, reject}]
  function tryGrant(name) {
    if (held.has(name)) return;
    const queue = waiting.get(name) ?? [];
    const first = queue.shift();
    if (first) first.grant();
  }
  return {
    held,
    request(name, options, callback) {
      return new Promise((resolve, reject) => {
        const entry = {
          grant: () => {
            held.add(name);
            options.signal?.removeEventListener('abort', onAbort);
            Promise.resolve()
              .then(() => callback({ name, mode: 'exclusive' }))
              .then(resolve, reject)
              .finally(() => { held.delete(name); tryGrant(name); });
          },
          reject,
        };
        const onAbort = () => {
          const queue = waiting.get(name) ?? [];
          const i = queue.indexOf(entry);
          if (i >= 0) queue.splice(i, 1);
          reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
        };
        if (options.signal?.aborted) return onAbort();
        options.signal?.addEventListener('abort', onAbort);
        if (!waiting.has(name)) waiting.set(name, []);
        waiting.get(name).push(entry);
        tryGrant(name);
      });
    },
  };
}

/** In-process BroadcastChannel: delivers a structured clone to every other open instance. */
function fakeBroadcastChannelClass() {
  const open = new Set();
  return class FakeBroadcastChannel {
    static open = open;
    constructor(name) { this.name = name; this.onmessage = null; open.add(this); }
    postMessage(data) {
      if (!open.has(this)) throw new Error('InvalidStateError: channel closed');
      const copy = structuredClone(data);
      for (const other of open) {
        if (other !== this && other.name === this.name) {
          setImmediate(() => { if (open.has(other)) other.onmessage?.({ data: copy }); });
        }
      }
    }
    close() { open.delete(this); }
  };
}

/** A connect() wired to fresh fakes; `log` records every callback in order. */
function setup(overrides = {}, script = []) {
  const ES = fakeEventSourceClass();
  const timers = fakeTimers();
  const net = fakeFetch(script);
  const log = [];
  let tokenCalls = 0;
  const handle = connect({
    baseUrl: 'https://events.example.com',
    getToken: async () => { tokenCalls += 1; return `jwt-${tokenCalls}`; },
    topics: ['orders/*'],
    eventTypes: ['order.updated'],
    onEvent: (e) => log.push(['event', e]),
    onOpen: (info) => log.push(['open', info]),
    onClose: (info) => log.push(['close', info]),
    onError: (err) => log.push(['error', err]),
    onStateChange: (s) => log.push(['state', s]),
    fetch: net.fetch,
    EventSource: ES,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    random: () => 0.5,
    ...overrides,
  });
  return { handle, ES, timers, net, log, tokenCalls: () => tokenCalls };
}

const of = (log, kind) => log.filter(([k]) => k === kind).map(([, v]) => v);

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

// ---------------------------------------------------------------- one tab

test('fetches a ticket with the bearer token and topics, then opens the stream', async () => {
  const { handle, ES, net } = setup();
  assert.equal(handle.state, 'connecting');
  await settle();
  assert.equal(net.calls.length, 1);
  const [call] = net.calls;
  assert.equal(call.url, 'https://events.example.com/sse-token');
  assert.equal(call.init.method, 'POST');
  assert.equal(call.init.headers.Authorization, 'Bearer jwt-1');
  assert.equal(call.init.headers['Content-Type'], 'application/json');
  assert.deepEqual(call.body, { topics: ['orders/*'] });
  assert.equal(ES.instances.length, 1);
  assert.equal(ES.instances[0].url, 'https://events.example.com/stream?token=ticket-1');
  handle.close();
});

test('dispatches ready, message, custom types and reset; remembers lastEventId', async () => {
  const { handle, ES, log } = setup();
  await settle();
  const es = ES.instances[0];
  es.ready('alice', ['orders/*']);
  assert.equal(handle.state, 'open');
  assert.deepEqual(of(log, 'open'), [{ sub: 'alice', topics: ['orders/*'] }]);
  es.emit('reset', { reason: 'history_gap' });
  es.emit('order.updated', { id: 42, status: 'shipped' }, uuid(1));
  es.emit('message', { hello: true }, uuid(2));
  es.emit('not.listened', { x: 1 }, uuid(3)); // a type the app did not ask for
  const events = of(log, 'event');
  assert.deepEqual(events.map((e) => [e.type, e.id]), [['reset', ''], ['order.updated', uuid(1)], ['message', uuid(2)]]);
  assert.deepEqual(events[0].data, { reason: 'history_gap' });
  assert.deepEqual(events[1].data, { id: 42, status: 'shipped' });
  assert.equal(events[1].raw, '{"id":42,"status":"shipped"}');
  assert.equal(handle.lastEventId, uuid(2));
  handle.close();
});

test('a stream error closes the EventSource at once, then reconnects with a fresh ticket and lastEventId', async () => {
  const { handle, ES, net, timers, log, tokenCalls } = setup();
  await settle();
  const first = ES.instances[0];
  first.ready();
  first.emit('order.updated', { n: 1 }, uuid(7));
  first.fail();
  assert.equal(first.closed, true, 'closed before any reconnect');
  assert.equal(ES.instances.length, 1, 'no new EventSource before the backoff');
  assert.equal(net.calls.length, 1);
  assert.equal(handle.state, 'reconnecting');
  assert.equal(of(log, 'error')[0].error, 'stream_error');
  assert.equal(of(log, 'error')[0].fatal, false);
  assert.deepEqual(timers.delays(), [2250]); // base 3000, failures 0, random 0.5

  await timers.runAll();
  assert.equal(tokenCalls(), 2, 'getToken asked again');
  assert.equal(net.calls[1].init.headers.Authorization, 'Bearer jwt-2');
  assert.equal(ES.instances.length, 2);
  assert.equal(ES.instances[1].url, `https://events.example.com/stream?token=ticket-2&lastEventId=${uuid(7)}`);
  first.emit('order.updated', { stale: true }, uuid(8)); // the old source is ignored
  assert.equal(of(log, 'event').length, 1);
  handle.close();
});

test('a close frame calls onClose, closes the EventSource and reconnects after a short delay', async () => {
  const { handle, ES, timers, log } = setup({ random: () => 0 });
  await settle();
  const es = ES.instances[0];
  es.ready();
  es.emit('close', { reason: 'token_expired' });
  assert.deepEqual(of(log, 'close'), [{ reason: 'token_expired' }]);
  assert.equal(es.closed, true);
  assert.equal(handle.state, 'reconnecting');
  assert.deepEqual(timers.delays(), [1500]); // base * 0.5
  await timers.runAll();
  assert.equal(ES.instances.length, 2);
  ES.instances[1].ready();
  assert.equal(handle.state, 'open');
  assert.deepEqual(log.filter(([k]) => k === 'state').map(([, s]) => s), ['open', 'reconnecting', 'open']);
  handle.close();
});

test('backoff grows over consecutive failures, is capped, and resets after ready', async () => {
  const unavailable = () => json(503, { error: 'unavailable', message: 'down' });
  const { handle, ES, timers, log } = setup({ random: () => 0.999999, maxDelay: 20000 },
    [unavailable, unavailable, unavailable, unavailable, unavailable]);
  const seen = [];
  for (let i = 0; i < 5; i += 1) {
    await settle();
    seen.push(...timers.delays());
    await timers.runAll();
  }
  assert.deepEqual(seen, [3000, 6000, 12000, 20000, 20000]);
  assert.equal(of(log, 'error').length, 5);
  assert.ok(of(log, 'error').every((e) => e.status === 503 && e.error === 'unavailable' && !e.fatal));
  await settle();
  assert.equal(ES.instances.length, 1);
  ES.instances[0].ready(); // success resets the count
  ES.instances[0].fail();
  assert.deepEqual(timers.delays(), [3000]);
  handle.close();
});

test('a network error backs off and reports a non-fatal error', async () => {
  const { handle, timers, log } = setup({}, [() => { throw new TypeError('Failed to fetch'); }]);
  await settle();
  assert.equal(handle.state, 'reconnecting');
  assert.deepEqual(of(log, 'error')[0], { status: 0, error: 'network_error', message: 'Failed to fetch', fatal: false });
  assert.equal(timers.pending.size, 1);
  handle.close();
});

test('429 waits Retry-After seconds instead of the backoff', async () => {
  const { handle, ES, timers, net, log } = setup({}, [
    json(429, { error: 'too_many_tickets', message: 'slow down' }, { 'Retry-After': '7' }),
  ]);
  await settle();
  assert.deepEqual(timers.delays(), [7000]);
  assert.equal(of(log, 'error')[0].error, 'too_many_tickets');
  assert.equal(ES.instances.length, 0);
  await timers.runAll();
  assert.equal(net.calls.length, 2);
  assert.equal(ES.instances.length, 1);
  handle.close();
});

test('429 without Retry-After falls back to the backoff', async () => {
  const { handle, timers } = setup({}, [json(429, { error: 'too_many_tickets', message: 'slow down' })]);
  await settle();
  assert.deepEqual(timers.delays(), [2250]);
  handle.close();
});

for (const [status, error] of [[401, 'token_expired'], [403, 'forbidden_topic']]) {
  test(`${status} from /sse-token stops for good with onError and no further request`, async () => {
    const { handle, ES, timers, net, log } = setup({}, [json(status, { error, message: 'no' })]);
    await settle();
    assert.equal(handle.state, 'stopped');
    assert.deepEqual(of(log, 'error'), [{ status, error, message: 'no', fatal: true }]);
    assert.equal(timers.pending.size, 0);
    await timers.runAll();
    await settle();
    assert.equal(net.calls.length, 1);
    assert.equal(ES.instances.length, 0);
  });
}

test('a 401 after a token_expired close stops the loop', async () => {
  const { handle, ES, timers, net, log } = setup({}, [
    undefined, // first ticket
    json(401, { error: 'token_expired', message: 'expired' }),
  ]);
  await settle();
  ES.instances[0].ready();
  ES.instances[0].emit('close', { reason: 'token_expired' });
  await timers.runAll();
  assert.equal(handle.state, 'stopped');
  assert.equal(of(log, 'error').at(-1).fatal, true);
  await timers.runAll();
  assert.equal(net.calls.length, 2);
});

test('close() stops timers, closes the EventSource, and makes no more requests', async () => {
  const { handle, ES, timers, net } = setup();
  await settle();
  const es = ES.instances[0];
  es.ready();
  handle.close();
  assert.equal(handle.state, 'closed');
  assert.equal(es.closed, true);
  es.fail(); // a late error from the closed source does nothing
  assert.equal(timers.pending.size, 0);
  await settle();
  assert.equal(net.calls.length, 1);
  assert.equal(ES.instances.length, 1);
});

test('close() while waiting to reconnect cancels the timer', async () => {
  const { handle, ES, timers, net } = setup();
  await settle();
  ES.instances[0].fail();
  assert.equal(timers.pending.size, 1);
  handle.close();
  assert.equal(timers.pending.size, 0);
  assert.equal(handle.state, 'closed');
  await settle();
  assert.equal(net.calls.length, 1);
});

test('close() during the ticket request opens no stream', async () => {
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const { handle, ES, timers } = setup({}, [async () => { await gate; return ticketResponse(1); }]);
  await settle();
  handle.close();
  release();
  await settle();
  assert.equal(ES.instances.length, 0);
  assert.equal(timers.pending.size, 0);
  assert.equal(handle.state, 'closed');
});

test('a synchronous getToken works, and a throwing one backs off', async () => {
  let n = 0;
  const { handle, net, log, timers } = setup({ getToken: () => { n += 1; if (n === 1) throw new Error('no token yet'); return 'sync-jwt'; } });
  await settle();
  assert.equal(net.calls.length, 0);
  assert.equal(of(log, 'error')[0].error, 'token_unavailable');
  await timers.runAll();
  assert.equal(net.calls[0].init.headers.Authorization, 'Bearer sync-jwt');
  handle.close();
});

test('a published frame named "error" is not mistaken for a failure', async () => {
  const { handle, ES } = setup();
  await settle();
  ES.instances[0].ready();
  ES.instances[0].emit('error', { oops: true }, uuid(1));
  assert.equal(handle.state, 'open');
  assert.equal(ES.instances[0].closed, false);
  handle.close();
});

test('an initial lastEventId resumes the first stream', async () => {
  const { handle, ES } = setup({ lastEventId: uuid(9) });
  await settle();
  assert.ok(ES.instances[0].url.endsWith(`&lastEventId=${uuid(9)}`));
  handle.close();
});

// ---------------------------------------------------------------- several tabs

/** Tabs of one browser: shared locks and channels, one fake network per browser. */
function browser(script = []) {
  const locks = fakeLocks();
  const BC = fakeBroadcastChannelClass();
  const ES = fakeEventSourceClass();
  const timers = fakeTimers();
  const net = fakeFetch(script);
  const tab = (extra = {}) => {
    const log = [];
    const handle = connect({
      getToken: () => 'jwt',
      topics: ['orders/*'],
      eventTypes: ['order.updated'],
      shareAcrossTabs: true,
      shareKey: 'alice',
      onEvent: (e) => log.push(['event', e]),
      onOpen: (info) => log.push(['open', info]),
      onClose: (info) => log.push(['close', info]),
      onError: (err) => log.push(['error', err]),
      onStateChange: (s) => log.push(['state', s]),
      fetch: net.fetch,
      EventSource: ES,
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout,
      random: () => 0.5,
      locks,
      BroadcastChannel: BC,
      ...extra,
    });
    return { handle, log, ids: () => of(log, 'event').map((e) => e.id) };
  };
  return { locks, BC, ES, timers, net, tab };
}

test('shared: one stream per browser; followers get every event, open and close', async () => {
  const b = browser();
  const a = b.tab();
  await settle();
  const c = b.tab();
  await settle();
  assert.equal(a.handle.isLeader, true);
  assert.equal(c.handle.isLeader, false);
  assert.equal(b.net.calls.length, 1);
  assert.equal(b.ES.instances.length, 1);

  const es = b.ES.instances[0];
  es.ready();
  es.emit('order.updated', { n: 1 }, uuid(1));
  es.emit('message', { n: 2 }, uuid(2));
  await settle();
  assert.deepEqual(a.ids(), [uuid(1), uuid(2)]);
  assert.deepEqual(c.ids(), [uuid(1), uuid(2)]);
  assert.deepEqual(of(c.log, 'event')[0].data, { n: 1 });
  assert.deepEqual(of(c.log, 'open'), [{ sub: 'alice', topics: ['orders/*'] }]);
  assert.equal(c.handle.state, 'open');
  assert.equal(c.handle.lastEventId, uuid(2));

  es.emit('close', { reason: 'shutdown' });
  await settle();
  assert.deepEqual(of(c.log, 'close'), [{ reason: 'shutdown' }]);
  assert.equal(c.handle.state, 'reconnecting');
  a.handle.close();
  c.handle.close();
});

test('shared: a late tab learns the open state from the leader', async () => {
  const b = browser();
  const a = b.tab();
  await settle();
  b.ES.instances[0].ready();
  b.ES.instances[0].emit('order.updated', {}, uuid(5));
  const late = b.tab();
  await settle();
  assert.equal(late.handle.state, 'open');
  assert.equal(of(late.log, 'open').length, 1);
  assert.equal(late.handle.lastEventId, uuid(5));
  a.handle.close();
  late.handle.close();
});

test('shared: when the leader closes, a follower takes over, resumes, and drops replayed duplicates', async () => {
  const b = browser();
  const a = b.tab();
  await settle();
  const c = b.tab();
  await settle();
  const first = b.ES.instances[0];
  first.ready();
  first.emit('order.updated', { n: 1 }, uuid(1));
  first.emit('order.updated', { n: 2 }, uuid(2));
  await settle();

  a.handle.close();
  assert.equal(first.closed, true);
  await settle();
  assert.equal(a.handle.state, 'closed');
  assert.equal(c.handle.isLeader, true);
  assert.equal(b.net.calls.length, 2);
  const second = b.ES.instances[1];
  assert.equal(second.url, `/stream?token=ticket-2&lastEventId=${uuid(2)}`);
  assert.equal(c.handle.state, 'reconnecting');

  second.ready();
  second.emit('order.updated', { n: 2 }, uuid(2)); // replayed, already delivered
  second.emit('order.updated', { n: 3 }, uuid(3));
  await settle();
  assert.deepEqual(c.ids(), [uuid(1), uuid(2), uuid(3)]);
  assert.equal(c.handle.state, 'open');
  assert.equal(of(c.log, 'open').length, 2);
  c.handle.close();
  assert.equal(second.closed, true);
  await settle();
  assert.equal(b.locks.held.size, 0, 'the lock is released');
});

test('shared: a 401 stops every tab, and no tab requests again', async () => {
  const b = browser([json(401, { error: 'token_revoked', message: 'revoked' })]);
  const a = b.tab();
  const c = b.tab();
  await settle();
  await b.timers.runAll();
  await settle();
  assert.equal(a.handle.state, 'stopped');
  assert.equal(c.handle.state, 'stopped');
  assert.deepEqual(of(c.log, 'error'), [{ status: 401, error: 'token_revoked', message: 'revoked', fatal: true }]);
  const late = b.tab();
  await settle();
  assert.equal(late.handle.state, 'stopped');
  assert.equal(b.net.calls.length, 1);
  a.handle.close();
  c.handle.close();
  late.handle.close();
});

test('shared: without Web Locks or BroadcastChannel each tab runs its own stream', async () => {
  const b = browser();
  const a = b.tab({ locks: null, BroadcastChannel: null });
  const c = b.tab({ locks: null, BroadcastChannel: null });
  await settle();
  assert.equal(b.ES.instances.length, 2);
  assert.equal(a.handle.isLeader, true);
  assert.equal(c.handle.isLeader, true);
  a.handle.close();
  c.handle.close();
});
