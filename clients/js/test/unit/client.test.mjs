// Unit tests of one tab's client: tickets, streams, reconnects, errors, close(). Run: node --test test/unit/
import test from 'node:test';
import assert from 'node:assert/strict';

import { settle, uuid, json, ticketResponse, setup, of } from './fakes.mjs';

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
