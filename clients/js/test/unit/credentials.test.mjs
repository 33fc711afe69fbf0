// Unit tests of the cookie-session mode: `credentials: 'include'`, with or
// without getToken. Run: node --test test/unit/
import test from 'node:test';
import assert from 'node:assert/strict';

import { connect } from '../../sse-ticket.js';
import { settle, setup, browser, json, of } from './fakes.mjs';

test("credentials: 'include' without getToken sends the cookies, JSON, and no Authorization", async () => {
  const { handle, ES, net } = setup({ getToken: undefined, credentials: 'include' });
  await settle();
  assert.equal(net.calls.length, 1);
  const { init } = net.calls[0];
  assert.equal(init.method, 'POST');
  assert.equal(init.credentials, 'include');
  assert.equal(init.headers['Content-Type'], 'application/json');
  assert.ok(!('Authorization' in init.headers), JSON.stringify(init.headers));
  assert.deepEqual(net.calls[0].body, { topics: ['orders/*'] });
  assert.equal(ES.instances[0].url, 'https://events.example.com/stream?token=ticket-1');
  handle.close();
});

test('every reconnect asks for a ticket with the cookies again', async () => {
  const { handle, ES, net, timers } = setup({ getToken: undefined, credentials: 'include' });
  await settle();
  ES.instances[0].ready();
  ES.instances[0].fail();
  await timers.runAll();
  assert.equal(net.calls.length, 2);
  assert.equal(net.calls[1].init.credentials, 'include');
  assert.ok(!('Authorization' in net.calls[1].init.headers));
  handle.close();
});

test("credentials: 'include' with getToken sends both the cookies and the bearer token", async () => {
  const { handle, net } = setup({ credentials: 'include' });
  await settle();
  assert.equal(net.calls[0].init.credentials, 'include');
  assert.equal(net.calls[0].init.headers.Authorization, 'Bearer jwt-1');
  handle.close();
});

test('a getToken that gives no token in cookie mode sends no Authorization', async () => {
  for (const none of [null, undefined, '']) {
    const { handle, net } = setup({ credentials: 'include', getToken: () => none });
    await settle();
    assert.equal(net.calls.length, 1, String(none));
    assert.ok(!('Authorization' in net.calls[0].init.headers), String(none));
    handle.close();
  }
});

test('without the option, the fetch leaves credentials to the browser default', async () => {
  const { handle, net } = setup();
  await settle();
  assert.ok(!('credentials' in net.calls[0].init), JSON.stringify(net.calls[0].init));
  handle.close();
});

test('a refused session (401) stops for good, like a refused token', async () => {
  const refused = json(401, { error: 'invalid_token', message: 'the auth webhook refused the credential' });
  const { handle, log, timers } = setup({ getToken: undefined, credentials: 'include' }, [refused]);
  await settle();
  assert.equal(handle.state, 'stopped');
  assert.equal(of(log, 'error')[0].fatal, true);
  assert.equal(of(log, 'error')[0].error, 'invalid_token');
  assert.equal(timers.pending.size, 0);
  handle.close();
});

test("getToken stays required unless credentials is 'include'", () => {
  const base = { fetch: async () => json(500, {}), EventSource: class {} };
  for (const credentials of [undefined, 'same-origin', 'omit']) {
    assert.throws(() => connect({ ...base, credentials }), /getToken must be a function/, String(credentials));
  }
  assert.throws(() => connect({ ...base, credentials: 'include', getToken: 'jwt' }), /getToken must be a function when given/);
  assert.throws(() => connect({ ...base, credentials: 'cookies', getToken: () => 'jwt' }), /credentials must be/);
});

test('tabs sharing one stream fetch its tickets with the cookies', async () => {
  const { net, tab } = browser();
  const first = tab({ getToken: undefined, credentials: 'include' });
  const second = tab({ getToken: undefined, credentials: 'include' });
  await settle();
  assert.equal(net.calls.length, 1, 'one stream for both tabs');
  assert.equal(net.calls[0].init.credentials, 'include');
  assert.ok(!('Authorization' in net.calls[0].init.headers));
  first.handle.close();
  second.handle.close();
});
